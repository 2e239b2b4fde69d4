"""Every way a run ends leaves terminal rows that agree with Temporal: cancellation, a failing
branch, a refused bookkeeping step, termination, a cancelled sub-flow (the `flow_worker`
fixture also checks the run invariant after each test; these tests assert the specific rows
and messages).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowFailureError

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import People, open_task
from tests.invariant import assert_run_tells_the_truth
from workers import client


async def _hitl_rows(flow_worker: FlowWorker, run_row_id: Any) -> list[str]:
    async with flow_worker.sessions() as s:
        return list(
            (
                await s.execute(
                    text("SELECT status FROM hitl_tasks WHERE workflow_run_id = :r"),
                    {"r": run_row_id},
                )
            ).scalars()
        )


def _parked_flow(
    people: People,
    extra: list[dict[str, Any]] | None = None,
    extra_edges: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("nap", "wait", {"seconds": 3600}),
            node(
                "review",
                "hitl",
                {"title": "Look", "decisionType": "approval", "assigneeId": people.finance},
            ),
            *(extra or []),
        ],
        "edges": [
            edge("start", "nap"),
            edge("start", "review"),
            *(extra_edges or []),
        ],
    }


async def test_cancelling_closes_wait_and_review_rows_and_the_query_agrees(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(_parked_flow(people), tenant_id=people.tenant)
    await open_task(handle)
    await flow_worker.cancel_and_wait(handle)
    rows = await flow_worker.task_rows(handle.id)
    assert rows["nap"]["status"] == "cancelled"
    assert rows["review"]["status"] == "cancelled"
    run = await flow_worker.run_row(handle.id)
    assert run["status"] == "cancelled"
    assert await _hitl_rows(flow_worker, run["id"]) == ["cancelled"]
    status = await handle.query(client.STATUS_QUERY)
    assert status["status"] == "cancelled"
    assert status["open_hitl_tasks"] == []
    assert {v["status"] for v in status["nodes"].values()} <= {"completed", "cancelled"}


async def test_a_failing_branch_closes_the_parked_ones(
    flow_worker: FlowWorker, people: People
) -> None:
    extra = [
        node("soon", "wait", {"seconds": 1}),
        node("boom", "transform", {"output": "{{ input.n // 0 }}"}),
    ]
    handle = await flow_worker.start(
        _parked_flow(people, extra, [edge("start", "soon"), edge("soon", "boom")]),
        {"n": 1},
        tenant_id=people.tenant,
    )
    try:
        await handle.result()
        raise AssertionError("the run was expected to fail")
    except WorkflowFailureError:
        pass
    rows = await flow_worker.task_rows(handle.id)
    assert rows["boom"]["status"] == "failed"
    assert {rows["nap"]["status"], rows["review"]["status"]} == {"cancelled"}
    assert await assert_run_tells_the_truth(
        flow_worker.client, flow_worker.sessions, handle.id
    ) == ("failed")


def _review_by(assignee: str) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node(
                "review",
                "hitl",
                {"title": "Look", "decisionType": "approval", "assigneeId": assignee},
            ),
        ],
        "edges": [edge("start", "review")],
    }


async def test_a_refused_bookkeeping_step_fails_the_node_and_the_run_with_rows_to_show(
    flow_worker: FlowWorker, people: People
) -> None:
    """A reviewer id that only turns out malformed once rendered cannot open the task."""
    definition = _review_by(assignee="{{ input.who }}")
    run_id = await flow_worker.fail(definition, {"who": "lead-bob"}, tenant_id=people.tenant)
    run = await flow_worker.run_row(run_id)
    assert run["status"] == "failed"
    assert "node 'review'" in run["error"]
    assert "lead-bob" in run["error"]
    rows = await flow_worker.task_rows(run_id)
    assert rows["review"]["status"] == "failed"
    assert "lead-bob" in rows["review"]["error"]
    assert await _hitl_rows(flow_worker, run["id"]) in ([], ["cancelled"])


async def _parent_of_a_napping_sub_flow(flow_worker: FlowWorker) -> dict[str, Any]:
    """A flow whose node `sub` runs a stored flow parked on an hour's wait (node `nap`)."""
    child = {
        "nodes": [node("start", "start"), node("nap", "wait", {"seconds": 3600})],
        "edges": [edge("start", "nap")],
    }
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"napper-{uuid.uuid4().hex[:6]}", definition=child
        )
    return {
        "nodes": [
            node("start", "start"),
            node("sub", "workflow", {"workflowId": str(stored.workflow_id)}),
        ],
        "edges": [edge("start", "sub")],
    }


async def test_a_cancelled_sub_flow_leaves_no_live_row(flow_worker: FlowWorker) -> None:
    handle = await flow_worker.start(await _parent_of_a_napping_sub_flow(flow_worker))
    for _ in range(100):
        status = await client.get_status(flow_worker.client, handle.id)
        if status["nodes"].get("sub", {}).get("status") == "running":
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    await flow_worker.cancel_and_wait(handle)
    assert await assert_run_tells_the_truth(
        flow_worker.client, flow_worker.sessions, handle.id
    ) == ("cancelled")
    child_rows = await flow_worker.task_rows(f"{handle.id}/sub")
    assert child_rows["nap"]["status"] == "cancelled"


async def test_a_templated_reviewer_of_no_such_user_fails_the_node_in_plain_words(
    flow_worker: FlowWorker, people: People
) -> None:
    definition = _review_by(assignee="{{ input.who }}")
    nobody = str(uuid.uuid4())
    run_id = await flow_worker.fail(definition, {"who": nobody}, tenant_id=people.tenant)
    run = await flow_worker.run_row(run_id)
    assert (
        f"user {nobody} (hitl `review`, config.assigneeId) does not exist in tenant"
        in (run["error"])
    )
    assert (await flow_worker.task_rows(run_id))["review"]["status"] == "failed"


async def test_an_escalation_to_no_such_user_fails_the_node_before_a_task_opens(
    flow_worker: FlowWorker, people: People
) -> None:
    """The escalation target is known only once rendered: it is checked before the task
    opens, so the inbox never offers a task whose escalation leads nowhere.
    """
    definition = {
        "nodes": [
            node("start", "start"),
            node(
                "review",
                "hitl",
                {
                    "title": "Look",
                    "decisionType": "approval",
                    "assigneeId": people.finance,
                    "escalation": [{"afterSeconds": 1, "toUser": "{{ input.lead }}"}],
                },
                onError="continue",
            ),
            node("after", "end", {"outputs": {"error": "{{ nodes.review.output.error }}"}}),
        ],
        "edges": [edge("start", "review"), edge("review", "after")],
    }
    nobody = str(uuid.uuid4())
    result, run_id = await flow_worker.run(definition, {"lead": nobody}, tenant_id=people.tenant)
    assert (
        "(hitl `review`, config.escalation[0].toUser) does not exist in tenant"
        in (result.outputs["error"])
    )
    run = await flow_worker.run_row(run_id)
    assert run["status"] == "completed"
    assert await _hitl_rows(flow_worker, run["id"]) == []
    rows = await flow_worker.task_rows(run_id)
    assert rows["review"]["status"] == "failed"


async def test_a_terminated_run_reads_as_ended_through_the_client(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(_parked_flow(people), tenant_id=people.tenant)
    await open_task(handle)
    await handle.terminate(reason="operator says stop")
    status = await client.get_status(flow_worker.client, handle.id)
    assert status["status"] == "cancelled"
    assert "terminated" in status["error"]
    assert status["open_hitl_tasks"] == []
    assert {n["status"] for n in status["nodes"].values()} <= {"completed", "cancelled"}
    # ... and the rows agree once the reconciler has been round (within its bound)
    assert await assert_run_tells_the_truth(
        flow_worker.client, flow_worker.sessions, handle.id
    ) == ("cancelled")


async def test_a_failed_run_is_explained_by_its_innermost_cause(flow_worker: FlowWorker) -> None:
    definition = {
        "nodes": [node("start", "start"), node("t", "transform", {"output": "{{ input.x.y }}"})],
        "edges": [edge("start", "t")],
    }
    handle = await flow_worker.start(definition, {"x": {"z": 1}})
    try:
        await handle.result()
        raise AssertionError("expected a failure")
    except WorkflowFailureError as exc:
        text_ = client.failure_text(exc)
    assert text_.startswith("failed: node 't' failed: config.output: '{{ input.x.y }}'")
    assert "`input.x` has no key 'y'; it has 'z'" in text_


async def test_a_sub_flow_cancelled_on_its_own_fails_its_node_not_the_parent_silently(
    flow_worker: FlowWorker,
) -> None:
    handle = await flow_worker.start(await _parent_of_a_napping_sub_flow(flow_worker))
    child_handle = flow_worker.client.get_workflow_handle(f"{handle.id}/sub")
    for _ in range(100):
        if "nap" in (await flow_worker.task_rows(child_handle.id)):
            break
        await asyncio.sleep(0.1)
    await child_handle.cancel()
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "the sub-flow was cancelled" in client.failure_text(failed.value)
    assert await assert_run_tells_the_truth(
        flow_worker.client, flow_worker.sessions, handle.id
    ) == ("failed")


async def test_a_running_loop_has_its_row(flow_worker: FlowWorker) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": "{{ [1, 2] }}"}),
            {**node("nap", "wait", {"seconds": 3600}), "parentId": "each"},
        ],
        "edges": [edge("start", "each")],
    }
    handle = await flow_worker.start(definition)
    for _ in range(100):
        rows = await flow_worker.task_rows(handle.id)
        if "each" in rows:
            break
        await asyncio.sleep(0.1)
    assert rows["each"]["status"] == "running"
    await flow_worker.cancel_and_wait(handle)
    assert (await flow_worker.task_rows(handle.id))["each"]["status"] == "cancelled"


async def test_a_cancelled_or_terminated_run_is_not_called_failed(flow_worker: FlowWorker) -> None:
    nap = {
        "nodes": [node("start", "start"), node("nap", "wait", {"seconds": 3600})],
        "edges": [edge("start", "nap")],
    }
    for end, expected in (("cancel", "cancelled"), ("terminate", "terminated by an operator: x")):
        handle = await flow_worker.start(nap)
        await asyncio.sleep(0.5)
        await (handle.cancel() if end == "cancel" else handle.terminate(reason="x"))
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
        assert client.failure_text(ended.value) == expected


async def test_a_cancellation_arriving_while_the_final_row_is_written_ends_the_run_as_recorded(
    flow_worker: FlowWorker,
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("pause", "wait", {"seconds": 2}),
            node("done", "end", {"outputs": {"ok": True}}),
        ],
        "edges": [edge("start", "pause"), edge("pause", "done")],
    }
    handle = await flow_worker.start(definition)
    for _ in range(100):
        rows = await flow_worker.task_rows(handle.id)
        if rows.get("pause", {}).get("status") == "running":
            break
        await asyncio.sleep(0.05)
    # Hold the run's row: its final write (completed) waits for the lock, and the
    # cancellation arrives meanwhile.
    async with flow_worker.sessions() as s, s.begin():
        await s.execute(
            text("SELECT 1 FROM workflow_runs WHERE orchestrator_run_id = :o FOR UPDATE"),
            {"o": handle.id},
        )
        await asyncio.sleep(3)  # the wait is over: the final write is blocked
        await handle.cancel()
        await asyncio.sleep(1)
    # The row says completed, so the run completes: Temporal and the row agree.
    result = await handle.result()
    assert result.outputs == {"ok": True}
    assert (await flow_worker.run_row(handle.id))["status"] == "completed"
    assert (
        await assert_run_tells_the_truth(flow_worker.client, flow_worker.sessions, handle.id)
        == "completed"
    )
