"""What the worker registers: the activity objects and the dependencies they share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import docker
import docker.errors
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.docker_policy import DockerPolicy
from activities.llm import ModelClients
from activities.outbound import OutboundHttp
from activities.secrets import SecretProvider, TenantSecrets
from persistence.health import DatabaseHealth


@dataclass
class Dependencies:
    """Long-lived clients shared by every activity of one worker process."""

    sessions: async_sessionmaker[AsyncSession]
    #: None: each run's tenant store, keys and env access from SECRETS_KEYS and
    #: SECRETS_ENVIRONMENT_TENANTS (the worker passes one built from its Settings)
    secrets: SecretProvider | None = None
    #: Every agent's HTTP goes through one guarded pool (API_ALLOWED_HOSTS); no cookie jar.
    http: OutboundHttp = field(default_factory=OutboundHttp)
    #: Whether the database answers (the health endpoint reports it); outages are waited out.
    health: DatabaseHealth = field(default_factory=DatabaseHealth)

    #: Builds the docker client on first use (reads DOCKER_HOST), so a worker without a
    #: docker engine runs every other node type.
    docker_client: Callable[[], docker.DockerClient] = field(default=lambda: _docker_from_env())
    #: What `docker` nodes may run and inside which limits (the DOCKER_* settings).
    docker_policy: DockerPolicy = field(default_factory=DockerPolicy.from_environment)

    def __post_init__(self) -> None:
        if self.secrets is None:
            self.secrets = TenantSecrets.from_environ(self.sessions)

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

    @cached_property
    def models(self) -> ModelClients:
        """OpenAI-compatible clients of the llm, vision and audio agents, one per endpoint."""
        return ModelClients(self.http)

    async def aclose(self) -> None:
        """Close the model clients (if any were made) and the shared HTTP pool."""
        if "models" in self.__dict__:
            await self.models.aclose()
        await self.http.aclose()


def _docker_from_env() -> docker.DockerClient:
    # Each running container holds a connection while its exit is awaited: a pool the size
    # of the worker's activity slots, not requests' default of 10.
    return docker.from_env(max_pool_size=200)


def activities_for(deps: Dependencies) -> Sequence[Callable[..., Any]]:
    """Every activity the worker registers, built on `deps`: the flow's bookkeeping and one per
    agent type.
    """
    from activities.a2a_agent import A2AAgent
    from activities.agent_runtime import AgentRuntime
    from activities.api import ApiAgent
    from activities.audio import AudioAgent
    from activities.docker_agent import DockerAgent
    from activities.flows import FlowPreparation
    from activities.hitl import HitlActivities
    from activities.llm import LlmAgent
    from activities.reuse import ReusedOutputs
    from activities.scrubber import install_log_scrubbing
    from activities.sensor import SensorAgent
    from activities.vision import VisionAgent
    from activities.writeback import WriteBack

    install_log_scrubbing()
    assert deps.secrets is not None  # set by __post_init__
    runtime = AgentRuntime(deps.sessions, deps.secrets, deps.health)
    hitl = HitlActivities(deps.sessions)
    return [
        hitl.hitl_open,
        hitl.hitl_check_reviewer,
        hitl.hitl_record_decision,
        hitl.hitl_decide,
        hitl.hitl_decide_resuming,
        hitl.hitl_escalate,
        hitl.hitl_close,
        WriteBack(deps.sessions).record_run,
        FlowPreparation(deps.sessions).prepare_flow,
        ReusedOutputs(deps.sessions).load_reused_outputs,
        runtime.activity("api", ApiAgent(deps.http.shared)),
        runtime.activity("docker", DockerAgent(deps.docker_client, deps.docker_policy)),
        runtime.activity("llm", LlmAgent(deps.models)),
        runtime.activity("vision", VisionAgent(deps.models, deps.http.shared)),
        runtime.activity("audio", AudioAgent(deps.models, deps.http.shared)),
        runtime.activity("sensor", SensorAgent(deps.http)),
        runtime.activity("a2a", A2AAgent(deps.http)),
    ]
