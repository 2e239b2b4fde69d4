"""Reading a run: its live status, its result, and how it ended in plain words."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError, FailureError, TerminatedError

from persistence.statuses import RUN_ENDED
from workflows.contract import STATUS_QUERY, FlowResult

#: How a run that ended without running workflow code reads (the reconciler writes the same).
#: The same words in the reconciler's rows, `get_status` and `failure_text`.
TIME_LIMIT_ERROR = "the run exceeded its time limit (workflow execution timeout)"


def terminated_text(reason: str | None) -> str:
    """How a run an operator terminated reads, in the status and in the reconciler's rows alike."""
    return f"terminated by an operator: {reason}" if reason else "terminated by an operator"


_CLOSED_FROM_OUTSIDE = {
    WorkflowExecutionStatus.TERMINATED: ("cancelled", terminated_text(None)),
    WorkflowExecutionStatus.TIMED_OUT: ("failed", TIME_LIMIT_ERROR),
}


async def get_status(client: Client, run_id: str) -> dict[str, Any]:
    """The run's live status (the `status` query): run status, every node, open HITL tasks.

    A terminated or timed-out run ran no code at its end, so its query (a replay of its
    history) still reads as it was; Temporal's own word on how it closed is added instead.
    """
    handle = client.get_workflow_handle(run_id)
    status: dict[str, Any] = await handle.query(STATUS_QUERY)
    if status.get("status") in RUN_ENDED:
        return status
    closed = _CLOSED_FROM_OUTSIDE.get((await handle.describe()).status)  # type: ignore[arg-type]
    if closed is None:
        return status
    run_status, why = closed
    return {
        **status,
        "status": run_status,
        "error": why,
        "nodes": {
            task_id: {**node, "status": "cancelled"}
            if node.get("status") not in ("completed", "failed", "skipped", "cancelled")
            else node
            for task_id, node in status.get("nodes", {}).items()
        },
        "open_hitl_tasks": [],
    }


async def result(client: Client, run_id: str) -> FlowResult:
    """Wait for the run's end (across continue-as-new): its outputs when it completed.

    A run that did not complete raises WorkflowFailureError; `failure_text` words it.
    """
    return await client.get_workflow_handle(run_id, result_type=FlowResult).result()


def failure_text(exc: BaseException) -> str:
    """How a run that did not complete ended, in plain words (not 'Activity task failed'):
    'cancelled', 'terminated by an operator: <reason>', or 'failed: <innermost cause>'.
    """
    if isinstance(exc, WorkflowFailureError):
        exc = exc.cause
    if isinstance(exc, CancelledError):
        return "cancelled"
    if isinstance(exc, TerminatedError):
        return terminated_text(exc.message)
    while isinstance(exc, FailureError) and exc.cause is not None:
        exc = exc.cause
    return "failed: " + (getattr(exc, "message", None) or str(exc) or type(exc).__name__)
