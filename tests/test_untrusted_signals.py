"""Signals and starts no sender can use to wedge a run: malformed or oddly shaped signals are
recorded or ignored, never a failed workflow task; a checkpoint or a malformed start from outside
is refused before anything runs, keeping any earlier record.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hitl_support import (
    People,
    approval_flow,
    decide,
    inbox,
    open_task,
    quick_status,
    wait_for,
)
from workers.client import (
    EVENT_SIGNAL,
    FLOW_RUN,
    HITL_DECISION_SIGNAL,
    PAUSE_SIGNAL,
    RESUME_SIGNAL,
    SUBMIT_HITL_DECISION_UPDATE,
)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (lambda t, p: {"hitl_task_id": t, "decision": {"approved": True}}, "decided_by: Field"),
        (
            lambda t, p: {"hitl_task_id": t, "decision": "yes", "decided_by": p.finance},
            "decision: Input should be a valid dictionary",
        ),
        (
            lambda t, p: {
                "hitl_task_id": t,
                "decision": {"approved": True},
                "decided_by": p.finance,
                "comment": "typo",
            },
            "comment: is not a field of a decision",
        ),
        (lambda t, p: ["not", "an", "object"], "a decision is a JSON object, not a list"),
        (
            lambda t, p: {"hitl_task_id": t, "decision": {"approved": True}, "decided_by": 7},
            "decided_by: Input should be a valid string",
        ),
        (
            lambda t, p: {
                "hitl_task_id": t,
                "decision": {"approved": True},
                "decided_by": "lead-bob",
            },
            "decided_by: 'lead-bob' is not a user id",
        ),
    ],
)
async def test_a_malformed_signal_is_recorded_and_the_same_update_refused(
    flow_worker: FlowWorker, people: People, payload: Any, reason: str
) -> None:
    handle = await flow_worker.start(
        approval_flow({"assigneeRole": "finance"}), tenant_id=people.tenant
    )
    (task,) = await open_task(handle)
    body = payload(task["id"], people)
    await handle.signal(HITL_DECISION_SIGNAL, body)
    status = await wait_for(lambda: _rejected(handle))
    assert reason in status["rejected_decisions"][-1]["reason"], status["rejected_decisions"]
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(SUBMIT_HITL_DECISION_UPDATE, body)
    assert reason in str(refused.value.cause)
    assert (await inbox(flow_worker, task["id"]))["decisions"] == []
    await decide(handle, task["id"], {"approved": True}, people.finance)
    assert "review" in (await handle.result()).outputs


async def test_a_signal_of_two_values_is_recorded_not_dropped(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(
        approval_flow({"assigneeRole": "finance"}), tenant_id=people.tenant
    )
    await open_task(handle)
    await handle.signal(HITL_DECISION_SIGNAL, args=[{"a": 1}, {"b": 2}])
    status = await wait_for(lambda: _rejected(handle))
    assert "one JSON object, not 2 values" in status["rejected_decisions"][-1]["reason"]
    await handle.cancel()


async def _rejected(handle: WorkflowHandle[Any, Any]) -> dict[str, Any] | None:
    status = await quick_status(handle)
    return status if status["rejected_decisions"] else None


async def test_a_checkpoint_from_outside_is_refused_before_anything_runs(
    flow_worker: FlowWorker, people: People
) -> None:
    """A checkpoint skips prepare_flow, and with it every tenant check."""
    forged = {
        "inputs": {},
        "checkpoint": {
            "run_row_id": str(uuid.uuid4()),
            "definition": approval_flow({"assigneeRole": "finance"}),
            "tenant_id": people.tenant,
        },
    }
    workflow_id = f"forged-{uuid.uuid4().hex[:8]}"
    handle = await flow_worker.client.start_workflow(
        FLOW_RUN, forged, id=workflow_id, task_queue=flow_worker.task_queue
    )
    flow_worker.started.append(workflow_id)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "checkpoint: only FlowRun writes one" in str(failed.value.cause)
    run = await flow_worker.run_row(workflow_id)
    assert (run["status"], run["tenant_id"]) == ("failed", None)
    assert await flow_worker.task_rows(workflow_id) == {}


async def test_a_malformed_start_under_an_ended_runs_id_keeps_that_record(
    flow_worker: FlowWorker, people: People
) -> None:
    _, workflow_id = await flow_worker.run(
        {
            "nodes": [node("start", "start"), node("done", "end", {"outputs": {"x": 1}})],
            "edges": [edge("start", "done")],
        },
        tenant_id=people.tenant,
    )
    before = await flow_worker.run_row(workflow_id)
    handle = await flow_worker.client.start_workflow(
        FLOW_RUN, "garbage", id=workflow_id, task_queue=flow_worker.task_queue
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert await flow_worker.run_row(workflow_id) == before


async def test_signals_with_unexpected_arguments_are_ignored_and_never_wedge_a_run(
    flow_worker: FlowWorker,
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("hold", "wait", {"event": "go"}),
            node("done", "end", {"outputs": {"got": "{{ nodes.hold.output }}"}}),
        ],
        "edges": [edge("start", "hold"), edge("hold", "done")],
    }
    handle = await flow_worker.start(definition)
    await handle.signal(PAUSE_SIGNAL, {"x": 1})
    await handle.signal(RESUME_SIGNAL, args=[1, 2])
    await handle.signal(EVENT_SIGNAL, args=[{"name": "go"}, {"extra": True}])
    await handle.signal(EVENT_SIGNAL, "not an event")
    await handle.signal("no_such_signal", {"a": 1})
    assert (await quick_status(handle))["status"] in ("queued", "running", "paused")
    await handle.signal(RESUME_SIGNAL)
    await handle.signal(EVENT_SIGNAL, {"name": "go", "payload": 7})
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.outputs["got"] is not None
