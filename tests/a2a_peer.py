"""Real A2A agents built with a2a-sdk, served over JSON-RPC by uvicorn on a loopback port.

- `echo`: works a moment, returns an artifact echoing the text or data it got;
- `asker`: needs input ("Which colour?");
- `failer`: fails ("out of stock");
- `sleeper`: works for a minute unless cancelled, and notes the cancellation.
Each agent has its own card at `/<name>/.well-known/agent-card.json`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn
from a2a.helpers.proto_helpers import get_data_parts, new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
from google.protobuf.struct_pb2 import Value
from starlette.applications import Starlette
from starlette.routing import Mount

from workers.processes import free_port


class _Agent(AgentExecutor):
    async def _begin(self, context: RequestContext, queue: EventQueue) -> TaskUpdater:
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        await queue.enqueue_event(task)
        updater = TaskUpdater(queue, task.id, task.context_id)
        await updater.start_work()
        return updater

    async def cancel(self, context: RequestContext, queue: EventQueue) -> None:
        await TaskUpdater(queue, context.task_id or "", context.context_id or "").cancel()


class Echo(_Agent):
    """Completes after a moment with an `echo` artifact of the text or data it was sent."""

    async def execute(self, context: RequestContext, queue: EventQueue) -> None:
        """The work takes 0.2 s, so a caller sees the task working before it completes."""
        updater = await self._begin(context, queue)
        await asyncio.sleep(0.2)
        assert context.message is not None
        text = context.get_user_input()
        if text:
            parts = [Part(text=f"echo: {text}")]
        else:
            value = Value()
            value.struct_value.update({"echo": get_data_parts(context.message.parts)[0]})
            parts = [Part(data=value)]
        await updater.add_artifact(parts, name="echo")
        await updater.complete(updater.new_agent_message([Part(text="done")]))


class Asker(_Agent):
    """Stops at `input-required` ("Which colour?") and never finishes."""

    async def execute(self, context: RequestContext, queue: EventQueue) -> None:
        """Ask once; the task stays waiting for input."""
        updater = await self._begin(context, queue)
        await updater.requires_input(updater.new_agent_message([Part(text="Which colour?")]))


class Failer(_Agent):
    """Fails every task with "out of stock"."""

    async def execute(self, context: RequestContext, queue: EventQueue) -> None:
        """Fail at once, after the task has started working."""
        updater = await self._begin(context, queue)
        await updater.failed(updater.new_agent_message([Part(text="out of stock")]))


class Sleeper(_Agent):
    """Works for a minute, so tests can cancel it mid-task and see that the peer was told."""

    def __init__(self, peer: A2APeer) -> None:
        self._peer = peer

    async def execute(self, context: RequestContext, queue: EventQueue) -> None:
        """Set the peer's `started` once working, then sleep until cancelled."""
        await self._begin(context, queue)
        self._peer.started.set()
        await asyncio.sleep(60)

    async def cancel(self, context: RequestContext, queue: EventQueue) -> None:
        """Note the task id in the peer's `cancelled`, then cancel it as any agent would."""
        self._peer.cancelled.append(context.task_id or "")
        await super().cancel(context, queue)


class A2APeer:
    """The four agents on one loopback port, in a thread, recording what tests assert on."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.started = threading.Event()
        self.cancelled: list[str] = []
        #: the Authorization header of every request, in order (None when absent)
        self.authorizations: list[str | None] = []
        agents: dict[str, AgentExecutor] = {
            "echo": Echo(),
            "asker": Asker(),
            "failer": Failer(),
            "sleeper": Sleeper(self),
        }
        app = Starlette(
            routes=[Mount(f"/{n}", routes=self._routes(n, a)) for n, a in agents.items()]
        )

        async def noting_authorization(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                value = dict(scope["headers"]).get(b"authorization")
                self.authorizations.append(value.decode() if value else None)
            await app(scope, receive, send)

        self._server = uvicorn.Server(
            uvicorn.Config(
                noting_authorization,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def url(self, agent: str) -> str:
        """Where agent `agent` (echo, asker, failer, sleeper) is reached, as a node writes it."""
        return f"{self.base}/{agent}"

    def _routes(self, name: str, executor: AgentExecutor) -> list[Any]:
        card = AgentCard(
            name=name,
            description=f"test agent {name}",
            version="1.0.0",
            supported_interfaces=[
                AgentInterface(
                    url=f"{self.base}/{name}/", protocol_binding="JSONRPC", protocol_version="1.0"
                )
            ],
            capabilities=AgentCapabilities(streaming=True),
            default_input_modes=["text/plain", "application/json"],
            default_output_modes=["text/plain", "application/json"],
            skills=[AgentSkill(id=name, name=name, description=name, tags=["test"])],
        )
        handler = DefaultRequestHandler(
            agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card
        )
        return [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/")]

    def start(self) -> A2APeer:
        """Serve in a background thread; returns once the server listens (or raises after 20 s)."""
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the A2A test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait (up to 10 s) for its thread."""
        self._server.should_exit = True
        self._thread.join(10)
