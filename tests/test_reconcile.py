"""Runs that Temporal ends without running workflow code (terminate, execution timeout) still
get terminal rows, from the reconciler the worker runs in the background (every second in
tests; the bound is about two intervals, so each wait below allows well over that).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from flow_language.drawing import edge, node
from persistence import queries, reconcile_queries
from persistence.engine import create_engine
from tests.flows import FlowWorker
from tests.hitl_support import People, inbox, open_task, review_flow
from workers.client import STATUS_QUERY, start_run
from workers.processes import free_port
from workers.reconciler import (
    TIME_LIMIT_ERROR,
    Reconciler,
    reconciler_plugins,
    visibility_query,
)
from workers.settings import Settings
from workflows.contract import FlowRunInput

T = TypeVar("T")

#: Longest wait for the reconciler (interval 1 s): generous, since the machine is shared.
BOUND_SECONDS = 15.0
TASK_TERMINAL = {"completed", "failed", "skipped", "cancelled"}


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """The first non-None answer of `probe`, polled until the bound."""
    deadline = time.monotonic() + BOUND_SECONDS
    while True:
        answer = await probe()
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {BOUND_SECONDS}s")
        await asyncio.sleep(0.2)


def parked_flow() -> dict[str, Any]:
    """A run that waits an hour on its `nap` node."""
    return {
        "nodes": [node("start", "start"), node("nap", "wait", {"seconds": 3600})],
        "edges": [edge("start", "nap")],
    }


async def parked(flow_worker: FlowWorker, workflow_id: str, node_id: str) -> None:
    """Returns once the run's row is written and alive and `node_id` is running.

    The node's own row may still be buffered in the workflow (rows of control nodes are
    written in the background), so the `status` query says when the node is running.
    """
    handle = flow_worker.client.get_workflow_handle(workflow_id)

    async def probe() -> bool | None:
        try:
            view = await handle.query(STATUS_QUERY)
        except RPCError:
            return None  # a sub-flow its parent has not started yet
        if view["nodes"].get(node_id, {}).get("status") != "running":
            return None
        try:
            row = await flow_worker.run_row(workflow_id)
        except NoResultFound:
            return None
        return True if row["status"] in reconcile_queries.RUN_OPEN else None

    await eventually(probe, f"run {workflow_id} parked on {node_id}")


async def settled(flow_worker: FlowWorker, workflow_id: str) -> dict[str, Any]:
    """The run's row once it is terminal."""

    async def probe() -> dict[str, Any] | None:
        row = await flow_worker.run_row(workflow_id)
        return None if row["status"] in reconcile_queries.RUN_OPEN else row

    return await eventually(probe, f"terminal row of run {workflow_id}")


async def test_a_terminated_run_is_cancelled_with_the_operators_reason(
    flow_worker: FlowWorker,
) -> None:
    handle = await flow_worker.start(parked_flow())
    await parked(flow_worker, handle.id, "nap")
    await handle.terminate(reason="stuck upstream, ticket 42")

    row = await settled(flow_worker, handle.id)
    assert row["status"] == "cancelled"
    assert row["error"] == "terminated by an operator: stuck upstream, ticket 42"
    assert row["completed_at"] is not None
    assert (row["error_code"], row["current_step"]) == ("terminated", None)
    tasks = await flow_worker.task_rows(handle.id)
    assert tasks["start"]["status"] == "completed"
    assert {t: r["status"] for t, r in tasks.items() if r["status"] not in TASK_TERMINAL} == {}
    assert all(r["completed_at"] is not None for r in tasks.values())


async def test_a_terminated_review_leaves_no_open_task_in_the_inbox(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(review_flow(), {"what": "invoice 7"}, tenant_id=people.tenant)
    (task,) = await open_task(handle)
    await parked(flow_worker, handle.id, "review")

    async def waiting() -> bool | None:
        row = await flow_worker.run_row(handle.id)
        return True if row["status"] == "waiting_hitl" else None

    await eventually(waiting, "run waiting on its reviewer")

    async def review_row() -> str | None:
        return (await flow_worker.task_rows(handle.id)).get("review", {}).get("status")

    assert await eventually(review_row, "the review node's row") == "running"
    assert (await inbox(flow_worker, task["id"]))["status"] == "assigned"
    await handle.terminate(reason="reviewer left")

    row = await settled(flow_worker, handle.id)
    assert (row["status"], row["error"]) == (
        "cancelled",
        "terminated by an operator: reviewer left",
    )
    assert (await flow_worker.task_rows(handle.id))["review"]["status"] == "cancelled"
    assert (await inbox(flow_worker, task["id"]))["status"] == "cancelled"


async def test_a_terminated_sub_flow_is_reconciled_like_any_run(flow_worker: FlowWorker) -> None:
    """A `workflow` node's child is a FlowRun of the same queue, so the same sweep sees it."""
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"napper-{uuid.uuid4().hex[:6]}", definition=parked_flow()
        )
    parent_flow = {
        "nodes": [
            node("start", "start"),
            node("sub", "workflow", {"workflowId": str(stored.workflow_id)}),
        ],
        "edges": [edge("start", "sub")],
    }
    parent = await flow_worker.start(parent_flow)
    child_id = f"{parent.id}/sub"
    await parked(flow_worker, child_id, "nap")
    await flow_worker.client.get_workflow_handle(child_id).terminate(reason="child stuck")

    child = await settled(flow_worker, child_id)
    assert (child["status"], child["error"]) == (
        "cancelled",
        "terminated by an operator: child stuck",
    )
    # The parent's code did run: it saw its child end and recorded its own failure.
    with pytest.raises(WorkflowFailureError):
        await parent.result()
    assert (await settled(flow_worker, parent.id))["status"] == "failed"


async def test_a_run_past_its_execution_timeout_fails_saying_so(flow_worker: FlowWorker) -> None:
    handle = await start_run(
        flow_worker.client,
        flow_worker.task_queue,
        FlowRunInput(definition=parked_flow()),
        run_id=f"run-{uuid.uuid4().hex[:12]}",
        execution_timeout=timedelta(seconds=2),
    )
    await parked(flow_worker, handle.id, "nap")

    row = await settled(flow_worker, handle.id)
    assert (row["status"], row["error"]) == ("failed", TIME_LIMIT_ERROR)
    assert row["completed_at"] is not None
    tasks = await flow_worker.task_rows(handle.id)
    assert {t: r["status"] for t, r in tasks.items() if r["status"] not in TASK_TERMINAL} == {}


async def _ends(flow_worker: FlowWorker, workflow_id: str) -> tuple[Any, dict[str, Any]]:
    """The run's and its nodes' status, end time and error: what reconciling would write."""
    run = await flow_worker.run_row(workflow_id)
    tasks = await flow_worker.task_rows(workflow_id)
    fields = ("status", "completed_at", "error")
    return (
        tuple(run[f] for f in fields),
        {t: tuple(r[f] for f in fields) for t, r in tasks.items() if t == "nap"},
    )


async def test_running_runs_and_terminal_rows_are_left_alone(flow_worker: FlowWorker) -> None:
    done_flow = {
        "nodes": [
            node("start", "start"),
            node("answer", "transform", {"output": 42}),
            node("end", "end", {"outputs": {"answer": "{{ nodes.answer.output }}"}}),
        ],
        "edges": [edge("start", "answer"), edge("answer", "end")],
    }
    result, done_id = await flow_worker.run(done_flow)
    assert result.outputs == {"answer": 42}
    done_before = await flow_worker.run_row(done_id)
    live = await flow_worker.start(parked_flow())
    await parked(flow_worker, live.id, "nap")
    live_before = await _ends(flow_worker, live.id)

    # The exact query the reconciler sends lists the completed run, not the running one.
    client = flow_worker.client
    query = visibility_query(flow_worker.task_queue, datetime.now(UTC) - timedelta(hours=1))

    async def listed() -> set[str] | None:
        ids = {w.id async for w in client.list_workflows(query)}
        return ids if done_id in ids else None

    assert live.id not in await eventually(listed, "the completed run in visibility")

    # Once a later termination is reconciled, a sweep has also seen the completed run.
    sentinel = await flow_worker.start(parked_flow())
    await parked(flow_worker, sentinel.id, "nap")
    await sentinel.terminate(reason="sentinel")
    assert (await settled(flow_worker, sentinel.id))["status"] == "cancelled"
    assert await flow_worker.run_row(done_id) == done_before
    assert done_before["outputs"] == {"answer": 42}
    assert done_before["error"] is None
    # (The running run's own background writes may land meanwhile: compare what a
    # reconciler would change, not every column.)
    assert await _ends(flow_worker, live.id) == live_before

    # Called directly: a running run is not touched, a terminal row is never overwritten,
    # and a sweep of the queue finds nothing left to do.
    sessions = flow_worker.sessions
    reconciler = Reconciler(
        client,
        sessions,
        task_queue=flow_worker.task_queue,
        interval=timedelta(seconds=1),
        lookback=timedelta(hours=1),
    )
    assert await reconciler.reconcile(live.id) is False
    async with sessions() as s, s.begin():
        closed = await reconcile_queries.close_run(
            s, done_id, status="cancelled", error="overwritten", ended_at=datetime.now(UTC)
        )
    assert closed is None
    assert await flow_worker.run_row(done_id) == done_before

    async def swept() -> list[str] | None:
        # None while the worker's own reconciler holds the sweep lock
        return await reconciler.sweep(datetime.now(UTC) - timedelta(hours=1))

    assert await eventually(swept, "a sweep of the queue") == []
    assert (await flow_worker.run_row(live.id))["status"] == "running"


async def test_a_failing_sweep_is_logged_and_retried_without_stopping(
    flow_worker: FlowWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """Postgres unreachable: every sweep fails, the loop logs it and goes on until stopped."""
    caplog.set_level(logging.WARNING, logger="meta_agent.reconciler")
    engine = create_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none", pool_size=1)
    reconciler = Reconciler(
        flow_worker.client,
        async_sessionmaker(engine),
        task_queue=flow_worker.task_queue,
        interval=timedelta(seconds=0.2),
        lookback=timedelta(hours=1),
    )
    try:
        async with reconciler.running():

            async def failures() -> int | None:
                count = sum("sweep of task queue" in r.getMessage() for r in caplog.records)
                return count if count >= 2 else None

            await eventually(failures, "two failed sweeps logged")
    finally:
        await engine.dispose()


def test_an_interval_of_zero_turns_the_reconciler_off() -> None:
    sessions: Any = None
    client: Any = None
    assert reconciler_plugins(client, Settings(reconcile_interval_seconds=0), sessions) == []
    assert len(reconciler_plugins(client, Settings(), sessions)) == 1


async def test_runs_ended_before_their_first_step_get_a_row_saying_how(
    flow_worker: FlowWorker,
) -> None:
    """Started on a queue no worker polls yet, then terminated or timed out: no line of them
    ran, so the reconciler writes their row (without a tenant: no check of it ran).
    """
    client = flow_worker.client
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    terminated = await start_run(
        client, queue, FlowRunInput(definition=parked_flow()), run_id=f"t-{uuid.uuid4().hex[:8]}"
    )
    timed_out = await start_run(
        client,
        queue,
        FlowRunInput(definition=parked_flow()),
        run_id=f"o-{uuid.uuid4().hex[:8]}",
        execution_timeout=timedelta(seconds=1),
    )
    await terminated.terminate(reason="wrong input")
    with pytest.raises(WorkflowFailureError):
        await timed_out.result()
    reconciler = Reconciler(
        client,
        flow_worker.sessions,
        task_queue=queue,
        interval=timedelta(seconds=1),
        lookback=timedelta(hours=1),
    )

    async def swept() -> list[str] | None:
        found = await reconciler.sweep(datetime.now(UTC) - timedelta(hours=1))
        return found if found else None  # visibility may lag a moment

    assert sorted(await eventually(swept, "a sweep of the idle queue")) == sorted(
        [terminated.id, timed_out.id]
    )
    row = await flow_worker.run_row(terminated.id)
    assert (row["status"], row["tenant_id"], row["workflow_id"]) == ("cancelled", None, None)
    assert "wrong input" in row["error"]
    assert row["error_code"] == "terminated"
    assert row["completed_at"] is not None
    row = await flow_worker.run_row(timed_out.id)
    assert (row["status"], row["error"]) == ("failed", TIME_LIMIT_ERROR)
    assert row["error_code"] == "timeout"
    # Once written, the rows are left as they are.
    assert await reconciler.sweep(datetime.now(UTC) - timedelta(hours=1)) == []
