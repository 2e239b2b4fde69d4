"""Acting on a running run: a reviewer's decision, pause and resume, events, cancel."""

from __future__ import annotations

from typing import Any

from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from flow_language.review_rules import HitlDecisionRequest
from workflows.contract import (
    EVENT_SIGNAL,
    HITL_DECISION_SIGNAL,
    PAUSE_SIGNAL,
    RESUME_SIGNAL,
    SUBMIT_HITL_DECISION_UPDATE,
    EventMessage,
)


class DecisionRefused(Exception):
    """The run did not record the decision, and changed nothing; `reason` says why.

    `kind` is the refusal's type as the run gave it (`DecisionRejected`,
    `ReviewerNotAllowed`), or `RunEnded` when the run no longer takes decisions.
    """

    def __init__(self, reason: str, kind: str | None = None) -> None:
        self.reason = reason
        self.kind = kind
        super().__init__(reason)


def _request(
    hitl_task_id: str, decision: dict[str, Any], decided_by: str, comments: str | None
) -> HitlDecisionRequest:
    return HitlDecisionRequest(
        hitl_task_id=hitl_task_id, decision=decision, decided_by=decided_by, comments=comments
    )


async def decide(
    client: Client,
    run_id: str,
    hitl_task_id: str,
    decision: dict[str, Any],
    decided_by: str,
    comments: str | None = None,
) -> dict[str, Any]:
    """Record a reviewer's decision on the run's open HITL task; returns its decision row.

    Goes through the run's update, so a decision the run refuses (not the assignee, a
    closed task, a value the task does not take, ...) raises DecisionRefused with the
    run's own words, and nothing is recorded.
    """
    handle = client.get_workflow_handle(run_id)
    try:
        row: dict[str, Any] = await handle.execute_update(
            SUBMIT_HITL_DECISION_UPDATE,
            _request(hitl_task_id, decision, decided_by, comments),
            result_type=dict,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        reason = getattr(cause, "message", None) or str(cause)
        raise DecisionRefused(reason, getattr(cause, "type", None)) from exc
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise DecisionRefused(f"run {run_id!r} takes no decisions: {exc}", "RunEnded") from exc
    return row


async def send_decision(
    client: Client,
    run_id: str,
    hitl_task_id: str,
    decision: dict[str, Any],
    decided_by: str,
    comments: str | None = None,
) -> None:
    """The same decision, fire and forget (the `hitl_decision` signal): returns once sent.

    A refused one changes nothing and is listed in the status's `rejected_decisions`.
    """
    await client.get_workflow_handle(run_id).signal(
        HITL_DECISION_SIGNAL, _request(hitl_task_id, decision, decided_by, comments)
    )


async def send_event(
    client: Client,
    run_id: str,
    name: str,
    payload: Any = None,
    *,
    request_id: str | None = None,
) -> None:
    """An event for the run's `wait` nodes with `config.event` equal to `name`.

    With `request_id` (derived from an event's id), Temporal delivers the signal to the run
    once however often it is sent with that id: a redelivered event is the same event, not
    a second one for a run that waits twice. The SDK's `signal` sets no request id, so that
    one is sent through the workflow service itself (the client has no interceptors whose
    headers that would skip).
    """
    message = EventMessage(name=name, payload=payload)
    if request_id is None:
        await client.get_workflow_handle(run_id).signal(EVENT_SIGNAL, message)
        return
    await client.workflow_service.signal_workflow_execution(
        SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=run_id),
            signal_name=EVENT_SIGNAL,
            input=Payloads(payloads=await client.data_converter.encode([message])),
            identity=client.identity,
            request_id=request_id,
        ),
        retry=True,
    )


async def pause(client: Client, run_id: str) -> None:
    """Start no further node until `resume`; nodes already running finish."""
    await client.get_workflow_handle(run_id).signal(PAUSE_SIGNAL)


async def resume(client: Client, run_id: str) -> None:
    """Let a paused run start nodes again."""
    await client.get_workflow_handle(run_id).signal(RESUME_SIGNAL)


async def cancel(client: Client, run_id: str) -> None:
    """Ask the run to stop, without waiting: it cancels its running nodes and records its end."""
    await client.get_workflow_handle(run_id).cancel()
