"""Starting, watching and cancelling runs from Python (the CLI uses these too)."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from workflows.messages import FlowResult, FlowRunInput
from workflows.refusals import counted
from workflows.validation import DefinitionError, input_problems, parse_definition


class InvalidInputs(ValueError):
    """The inputs break the start node's inputSchema; nothing was started."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(counted("invalid inputs", problems))


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
    return await client.start_workflow(
        "FlowRun",
        params,
        id=run_id or f"flow-{uuid.uuid4()}",
        task_queue=task_queue,
        result_type=FlowResult,
    )


async def get_status(client: Client, run_id: str) -> dict[str, Any]:
    """The run's live status (the `status` query): run status, every node, open HITL tasks."""
    status: dict[str, Any] = await client.get_workflow_handle(run_id).query("status")
    return status


async def cancel(client: Client, run_id: str) -> None:
    await client.get_workflow_handle(run_id).cancel()
