"""The product's sandbox runner answers every serialization-context lookup as the SDK's does.

`workers.sandbox_runner` reads the context of each payload from the sandboxed workflow
instance directly instead of re-entering the sandbox. Here a worker built as the product
builds it runs real flows (agents, a sub-flow, a failing node, a review) with a runner
that asks both routes for every lookup and keeps what each answered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.converter import (
    ActivitySerializationContext,
    WorkflowSerializationContext,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker.workflow_sandbox import SandboxRestrictions
from temporalio.worker.workflow_sandbox import _runner as sandbox_internals

from activities.registry import Dependencies
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import decide, edge, make_people, node, open_task, review_flow
from tests.http_peer import HttpPeer, Reply
from tests.invariant import assert_queue_tells_the_truth
from workers import worker as worker_module
from workers.sandbox_runner import PASSTHROUGH_MODULES, FlowSandboxRunner, _DirectContextInstance
from workers.settings import Settings

#: (what was asked, the direct answer, the SDK's answer) for every lookup of the test's runs
Answers = list[tuple[str, Any, Any]]


class _BothRoutes(_DirectContextInstance):
    answers: Answers

    def get_serialization_context(self, command_info: Any) -> Any:
        direct = super().get_serialization_context(command_info)
        sdk = sandbox_internals._Instance.get_serialization_context(self, command_info)
        self.answers.append(("serialization", direct, sdk))
        return direct

    def get_external_store_context(self, command_info: Any) -> Any:
        direct = super().get_external_store_context(command_info)
        sdk = sandbox_internals._Instance.get_external_store_context(self, command_info)
        self.answers.append(("external store", direct, sdk))
        return direct


@dataclass(frozen=True)
class _BothRoutesRunner(FlowSandboxRunner):
    answers: Answers | None = None

    def create_instance(self, det: Any) -> Any:
        instance = _BothRoutes(det, self.runner_class, self.restrictions)
        instance.answers = self.answers if self.answers is not None else []
        return instance


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Answers:
    kept: Answers = []
    runner = _BothRoutesRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES),
        answers=kept,
    )
    monkeypatch.setattr(worker_module, "flow_sandbox_runner", lambda: runner)
    return kept


async def test_every_lookup_answers_as_the_sdks_own_route(
    answers: Answers,
    temporal_env: WorkflowEnvironment,
    session_maker: async_sessionmaker[AsyncSession],
    http_peer: HttpPeer,
) -> None:
    http_peer.route("GET", "/ok", Reply(200, {"fine": True}))
    http_peer.route("GET", "/down", Reply(503, {"no": True}))
    async with session_maker() as s, s.begin():
        child = await queries.save_workflow_version(
            s,
            name=f"child-{uuid.uuid4().hex[:6]}",
            definition={
                "nodes": [
                    node("start", "start"),
                    node("call", "api", {"url": f"{http_peer.base}/ok", "method": "GET"}),
                ],
                "edges": [edge("start", "call")],
            },
        )
    parent = {
        "nodes": [
            node("start", "start"),
            node("one", "api", {"url": f"{http_peer.base}/ok", "method": "GET"}),
            node("sub", "workflow", {"workflowId": str(child.workflow_id)}),
            node("two", "api", {"url": f"{http_peer.base}/ok?n={{{{ input.n }}}}"}),
        ],
        "edges": [edge("start", "one"), edge("one", "sub"), edge("sub", "two")],
    }
    failing = {
        "nodes": [
            node("start", "start"),
            node(
                "down",
                "api",
                {"url": f"{http_peer.base}/down", "method": "GET"},
                retry={"maxAttempts": 1},
            ),
        ],
        "edges": [edge("start", "down")],
    }
    queue = f"routes-{uuid.uuid4().hex[:10]}"
    deps = Dependencies(sessions=session_maker)
    settings = Settings(temporal_task_queue=queue, reconcile_interval_seconds=1)
    async with worker_module.build_worker(temporal_env.client, settings, deps):
        flows = FlowWorker(temporal_env.client, queue, session_maker)
        result, _ = await flows.run(parent, {"n": 3})
        assert result.outputs["two"]["json"] == {"fine": True}
        await flows.fail(failing)
        people = await make_people(session_maker)
        handle = await flows.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
        (task,) = await open_task(handle)
        await decide(handle, task["id"], {"approved": True}, people.finance, "fine")
        await handle.result()
        await assert_queue_tells_the_truth(temporal_env.client, session_maker, queue, flows.started)
    await deps.aclose()

    differing = [(what, direct, sdk) for what, direct, sdk in answers if direct != sdk]
    assert differing == []
    contexts = [direct for what, direct, _ in answers if what == "serialization"]
    activity_types = {
        c.activity_type for c in contexts if isinstance(c, ActivitySerializationContext)
    }
    # The agents' commands were looked up, as each activity's own context, ...
    assert {"agent.api", "prepare_flow"} <= activity_types
    # ... and so were the workflow's own payloads (its input, its result, the decision).
    assert any(isinstance(c, WorkflowSerializationContext) for c in contexts)
    assert any(what == "external store" for what, _, _ in answers)
