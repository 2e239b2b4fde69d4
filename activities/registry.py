"""What the worker registers: the activity objects and the dependencies they share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.llm import ModelClients
from activities.secrets import EnvironmentSecrets, SecretProvider


@dataclass
class Dependencies:
    """Long-lived clients shared by every activity of one worker process."""

    sessions: async_sessionmaker[AsyncSession]
    secrets: SecretProvider = field(default_factory=EnvironmentSecrets)
    http: httpx.AsyncClient = field(
        default_factory=lambda: httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
    )

    #: Builds the docker client on first use (reads DOCKER_HOST), so a worker without a
    #: docker engine runs every other node type.
    docker_client: Callable[[], docker.DockerClient] = field(default=lambda: _docker_from_env())

    async def sweep_docker_orphans(self) -> None:
        """Remove containers that workers killed on this host left behind."""
        from activities.docker_agent import sweep_orphans

        try:
            client = await asyncio.to_thread(self.docker_client)
        except docker.errors.DockerException:
            return  # no engine here: nothing can have been left behind
        try:
            await asyncio.to_thread(sweep_orphans, client)
        except docker.errors.DockerException as exc:
            logging.getLogger("meta_agent.docker").warning("orphan sweep failed: %s", exc)
        finally:
            client.close()

    #: OpenAI-compatible clients of the llm, vision and audio agents, one per endpoint
    models: ModelClients = field(default_factory=ModelClients)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.models.aclose()


def _docker_from_env() -> docker.DockerClient:
    # Each running container holds a connection while its exit is awaited: a pool the size
    # of the worker's activity slots, not requests' default of 10.
    return docker.from_env(max_pool_size=200)


def activities_for(deps: Dependencies) -> Sequence[Callable[..., Any]]:
    from activities.a2a_agent import A2AAgent
    from activities.agent_runtime import AgentRuntime
    from activities.api import ApiAgent
    from activities.audio import AudioAgent
    from activities.docker_agent import DockerAgent
    from activities.flows import FlowPreparation
    from activities.hitl import HitlActivities
    from activities.llm import LlmAgent
    from activities.sensor import SensorAgent
    from activities.vision import VisionAgent
    from activities.writeback import WriteBack

    runtime = AgentRuntime(deps.sessions, deps.secrets)
    hitl = HitlActivities(deps.sessions)
    return [
        hitl.hitl_open,
        hitl.hitl_check_reviewer,
        hitl.hitl_record_decision,
        hitl.hitl_escalate,
        hitl.hitl_close,
        WriteBack(deps.sessions).record_run,
        FlowPreparation(deps.sessions).prepare_flow,
        runtime.activity("api", ApiAgent(deps.http)),
        runtime.activity("docker", DockerAgent(deps.docker_client)),
        runtime.activity("llm", LlmAgent(deps.models)),
        runtime.activity("vision", VisionAgent(deps.models, deps.http)),
        runtime.activity("audio", AudioAgent(deps.models, deps.http)),
        runtime.activity("sensor", SensorAgent(deps.http)),
        runtime.activity("a2a", A2AAgent(deps.http)),
    ]
