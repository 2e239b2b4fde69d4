"""Starting, watching and cancelling runs from Python (the CLI uses these too)."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    CancelledError,
    FailureError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)

from flow_language.refusals import counted
from flow_language.validation import DefinitionError, input_problems, parse_definition
from workflows.contract import FlowResult, FlowRunInput


class InvalidInputs(ValueError):
    """The inputs break the start node's inputSchema; nothing was started."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(counted("invalid inputs", problems))


#: The longest run id a caller may choose: the row is keyed by it in VARCHAR(255), and its
#: sub-flows by `<run id>/<node id>` (node ids up to 128 characters).
MAX_RUN_ID = 120


class RunIdRefused(ValueError):
    """The run id cannot key a run: too long, or already used by another run."""


def check_inputs(definition: Any, inputs: Any) -> list[str]:
    """Problems of `inputs` against the start node's inputSchema of `definition` (raw JSON).

    The same check `prepare_flow` makes, made before a run exists so a caller's typo
    costs no run. A definition that is itself invalid yields none here: the run reports
    it, with all its problems, when it starts.
    """
    try:
        parsed = parse_definition(definition)
    except DefinitionError:
        return []
    return input_problems(parsed, inputs)


async def start_run(
    client: Client,
    task_queue: str,
    params: FlowRunInput,
    *,
    run_id: str | None = None,
) -> WorkflowHandle[Any, FlowResult]:
    """Start a `FlowRun`; `run_id` becomes the Temporal workflow ID (the orchestrator run ID).

    The inputs of an inline definition are checked first: InvalidInputs, and nothing is
    started, when they break its inputSchema. (A stored flow's definition is in the
    database: load it and call `check_inputs`, as `meta-agent run` does.)
    """
    if params.definition is not None:
        problems = check_inputs(params.definition, params.inputs)
        if problems:
            raise InvalidInputs(problems)
    run_id = run_id or f"flow-{uuid.uuid4()}"
    if len(run_id) > MAX_RUN_ID:
        raise RunIdRefused(f"run id of {len(run_id)} characters, over the {MAX_RUN_ID} allowed")
    try:
        return await client.start_workflow(
            "FlowRun",
            params,
            id=run_id,
            task_queue=task_queue,
            result_type=FlowResult,
            # A run's rows are keyed by its id: a second run under it would overwrite them.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise RunIdRefused(f"run id {run_id!r} is already used by another run") from None


#: How a run that ended without running workflow code reads (the reconciler writes the same).
#: The same words in the reconciler's rows, `get_status` and `failure_text`.
TIME_LIMIT_ERROR = "the run exceeded its time limit (workflow execution timeout)"


def terminated_text(reason: str | None) -> str:
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
    status: dict[str, Any] = await handle.query("status")
    if status.get("status") in ("completed", "failed", "cancelled"):
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


def failure_text(exc: BaseException) -> str:
    """How a run that did not complete ended, in plain words (not 'Activity task failed'):
    'cancelled', 'terminated by an operator: <reason>', or 'failed: <innermost cause>'."""
    if isinstance(exc, WorkflowFailureError):
        exc = exc.cause
    if isinstance(exc, CancelledError):
        return "cancelled"
    if isinstance(exc, TerminatedError):
        return terminated_text(exc.message)
    while isinstance(exc, FailureError) and exc.cause is not None:
        exc = exc.cause
    return "failed: " + (getattr(exc, "message", None) or str(exc) or type(exc).__name__)


async def cancel(client: Client, run_id: str) -> None:
    await client.get_workflow_handle(run_id).cancel()
