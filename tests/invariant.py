"""The run invariant: once Temporal has closed a run, its rows and its `status` query agree.

However a run ends (completion, a node failure, a refused bookkeeping write,
invalid input, cancellation, termination, a timeout), its `workflow_runs` row
is terminal with the matching status (no `current_step`, its `execution_time_ms`, and an
`error_code` if it failed or was cancelled), every node row is terminal, no review
task of it is left open or has a pending escalation, and the `status` query
(where workflow code could run) answers within five seconds and says the same.
The `flow_worker` fixture checks this after every test for every run on its
task queue; tests call `assert_run_tells_the_truth` where they need it at a
given moment. A row a retry reused (`reused_from`) is completed and holds exactly the
output of the completed row it names, of the same task in the run it retries.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError

from workers.client import STATUS_QUERY

RUN_TERMINAL = {"completed", "failed", "cancelled"}
TASK_TERMINAL = {"completed", "failed", "skipped", "cancelled"}
HITL_OPEN = {"pending", "assigned", "in_progress", "escalated"}

#: How Temporal's end of a run reads in its row.
EXPECTED_ROW_STATUS = {
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "cancelled",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
}
#: Ends that run no workflow code: the reconciler writes their rows, and their `status`
#: query (a replay of the history) cannot know how they ended.
RECONCILED = {WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT}
#: Longest wait for rows written after the close (reconciled ends, a child's cancellation).
SETTLE_SECONDS = 40.0


async def closed_status(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus:
    """Temporal's status of the latest execution of the run's workflow ID, once closed."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        status = (await handle.describe()).status
        if status not in (None, WorkflowExecutionStatus.RUNNING):
            if status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
                await asyncio.sleep(0.2)  # the next run of the same ID is about to start
                continue
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"run {handle.id} is still {status} after {SETTLE_SECONDS}s")
        await asyncio.sleep(0.2)


async def _refused_as_reused(
    handle: WorkflowHandle[Any, Any], sessions: async_sessionmaker[AsyncSession]
) -> bool:
    """Whether the run was refused at its start under a workflow ID whose row records an
    earlier run, which it must leave as it is.
    """
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        kind = getattr(exc.cause, "type", None)
        if kind == "RunIdReused":
            return True
        if kind == "InvalidRunArgument":
            run, _, _ = await _rows(sessions, handle.id)
            started = (await handle.describe()).start_time
            return run is not None and run["started_at"] < started
    return False


async def _rows(
    sessions: async_sessionmaker[AsyncSession], orchestrator_run_id: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    async with sessions() as s:
        run = (
            (
                await s.execute(
                    text("SELECT * FROM workflow_runs WHERE orchestrator_run_id = :o"),
                    {"o": orchestrator_run_id},
                )
            )
            .mappings()
            .one_or_none()
        )
        if run is None:
            return None, [], []
        tasks = (
            await s.execute(
                text(
                    "SELECT t.orchestrator_task_id, t.status, t.reused_from,"
                    " (t.reused_from IS NOT NULL AND (o.id IS NULL OR o.status <> 'completed'"
                    "  OR t.status <> 'completed' OR o.outputs IS DISTINCT FROM t.outputs"
                    "  OR o.orchestrator_task_id <> t.orchestrator_task_id"
                    "  OR o.workflow_run_id IS DISTINCT FROM r.retry_of_run_id))"
                    " AS reuse_lies"
                    " FROM task_instances t JOIN workflow_runs r ON r.id = t.workflow_run_id"
                    " LEFT JOIN task_instances o ON o.id = t.reused_from"
                    " WHERE t.workflow_run_id = :r"
                ),
                {"r": run["id"]},
            )
        ).mappings()
        hitl = (
            await s.execute(
                text(
                    "SELECT t.id, t.status, count(e.id) FILTER (WHERE e.status = 'pending')"
                    " AS pending_escalations FROM hitl_tasks t"
                    " LEFT JOIN hitl_escalations e ON e.hitl_task_id = t.id"
                    " WHERE t.workflow_run_id = :r GROUP BY t.id, t.status"
                ),
                {"r": run["id"]},
            )
        ).mappings()
        return dict(run), [dict(t) for t in tasks], [dict(h) for h in hitl]


def _row_problems(
    expected: str,
    run: dict[str, Any] | None,
    tasks: list[dict[str, Any]],
    hitl: list[dict[str, Any]],
) -> list[str]:
    if run is None:
        return ["no workflow_runs row"]
    problems = []
    if run["status"] != expected:
        problems.append(f"row status {run['status']!r}, expected {expected!r}")
    if run["completed_at"] is None:
        problems.append("row has no completed_at")
    if expected == "failed" and not run["error"]:
        problems.append("failed row says nothing in `error`")
    problems += _progress_problems(run)
    problems += [
        f"node row {t['orchestrator_task_id']!r} is {t['status']!r}"
        for t in tasks
        if t["status"] not in TASK_TERMINAL
    ]
    problems += [
        f"node row {t['orchestrator_task_id']!r} says it reused row {t['reused_from']},"
        " which does not hold that output"
        for t in tasks
        if t["reuse_lies"]
    ]
    problems += [
        f"hitl task {h['id']} is {h['status']!r}" for h in hitl if h["status"] in HITL_OPEN
    ]
    problems += [
        f"hitl task {h['id']} ({h['status']}) has {h['pending_escalations']} pending escalations"
        for h in hitl
        if h["pending_escalations"]
    ]
    return problems


async def _status_view(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The `status` query's answer; a query that fails on replay names the history it
    replayed, so a rare failure can be traced from the test's report alone.
    """
    try:
        view: dict[str, Any] = await asyncio.wait_for(handle.query(STATUS_QUERY), timeout=5)
    except WorkflowQueryFailedError as exc:
        history = await handle.fetch_history()
        events = "\n".join(_event_line(e) for e in history.events[:HISTORY_LINES])
        raise AssertionError(
            f"run {handle.id}: status query failed: {exc}\nits history:\n{events}"
        ) from exc
    return view


#: How many of a run's history events a failed query's report lists.
HISTORY_LINES = 200


def _event_line(event: HistoryEvent) -> str:
    """One event: its id, type and, for a command's event, what the command was."""
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    if event.HasField("marker_recorded_event_attributes"):
        marker = event.marker_recorded_event_attributes
        if "patch-data" not in marker.details:
            return f"{event.event_id} {kind} {marker.marker_name}"
        patch = marker.details["patch-data"].payloads
        return f"{event.event_id} {kind} {[p.data.decode(errors='replace') for p in patch]}"
    if event.HasField("upsert_workflow_search_attributes_event_attributes"):
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        return f"{event.event_id} {kind} {sorted(fields.indexed_fields)}"
    if event.HasField("activity_task_scheduled_event_attributes"):
        activity = event.activity_task_scheduled_event_attributes.activity_type.name
        return f"{event.event_id} {kind} {activity}"
    if event.HasField("workflow_task_completed_event_attributes"):
        sdk = event.workflow_task_completed_event_attributes.sdk_metadata
        flags = f"core flags {list(sdk.core_used_flags)}, lang flags {list(sdk.lang_used_flags)}"
        return f"{event.event_id} {kind} ({flags})"
    return f"{event.event_id} {kind}"


async def assert_run_tells_the_truth(
    client: Client, sessions: async_sessionmaker[AsyncSession], workflow_id: str
) -> str:
    """Checks one closed run (and its sub-flows); returns its row status."""
    handle = client.get_workflow_handle(workflow_id)
    status = await closed_status(handle)
    expected = EXPECTED_ROW_STATUS[status]
    if status == WorkflowExecutionStatus.FAILED and await _refused_as_reused(handle, sessions):
        # A second run under a used id is refused and writes nothing: the row is the first's.
        run, tasks, hitl = await _rows(sessions, workflow_id)
        assert run is not None
        assert not _row_problems(run["status"], run, tasks, hitl), f"run {workflow_id}"
        return str(run["status"])
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        problems = _row_problems(expected, *await _rows(sessions, workflow_id))
        # Rows of a closed run are final when it closes, except where the reconciler
        # writes them (terminate, timeout) within its stated bound.
        if not problems or status not in RECONCILED or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert not problems, f"run {workflow_id} ({status.name}): " + "; ".join(problems)
    if status not in RECONCILED:
        view = await _status_view(handle)
        assert view["status"] == expected, f"run {workflow_id}: status query says {view['status']}"
        live = {
            k: v["status"] for k, v in view["nodes"].items() if v["status"] not in TASK_TERMINAL
        }
        assert not live, f"run {workflow_id}: status query has live nodes {live}"
        assert not view["open_hitl_tasks"], f"run {workflow_id}: query lists open review tasks"
    async with sessions() as s:
        children = (
            await s.execute(
                text(
                    "SELECT orchestrator_run_id FROM workflow_runs"
                    " WHERE orchestrator_run_id LIKE :p"
                ),
                {"p": workflow_id.replace("%", r"\%").replace("_", r"\_") + "/%"},
            )
        ).scalars()
        child_ids = [c for c in children if c.count("/") == workflow_id.count("/") + 1]
    for child in child_ids:
        await assert_run_tells_the_truth(client, sessions, child)
    return expected


async def assert_queue_tells_the_truth(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    task_queue: str,
    started: list[str],
) -> int:
    """Ends what is still running on a test's queue (by cancelling it), then checks every run:
    those the test started through FlowWorker and any other the queue's visibility lists.

    Returns how many runs were checked.
    """
    try:
        listed = [w.id async for w in client.list_workflows(f'TaskQueue="{task_queue}"')]
    except RPCError:  # a server without visibility (the time-skipping test server)
        listed = []
    # sub-flows are checked through their parents
    ids = sorted({i for i in [*started, *listed] if "/" not in i})
    for workflow_id in ids:
        handle = client.get_workflow_handle(workflow_id)
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.cancel()
        except RPCError:
            pass  # closed meanwhile
    for workflow_id in ids:
        await assert_run_tells_the_truth(client, sessions, workflow_id)
    return len(ids)


def _progress_problems(run: dict[str, Any]) -> list[str]:
    """An ended row names no current step, says how long the run took, and classes how a
    failed or cancelled run ended (`error_code`).
    """
    problems = []
    if run["status"] in RUN_TERMINAL and run["current_step"] is not None:
        problems.append(f"ended row still has current_step {run['current_step']!r}")
    if run["status"] in ("failed", "cancelled") and not run["error_code"]:
        problems.append(f"{run['status']} row has no error_code")
    if run["started_at"] and run["completed_at"] and run["status"] in RUN_TERMINAL:
        took = (run["completed_at"] - run["started_at"]).total_seconds() * 1000
        if run["execution_time_ms"] is None or abs(run["execution_time_ms"] - max(took, 0)) > 1:
            problems.append(
                f"execution_time_ms {run['execution_time_ms']}, but the run took {took:.0f} ms"
            )
    return problems
