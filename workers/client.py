"""Starting, watching and cancelling runs from Python (the CLI uses these too)."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from workflows.messages import FlowResult, FlowRunInput


async def start_run(
    client: Client,
    task_queue: str,
    params: FlowRunInput,
    *,
    run_id: str | None = None,
) -> WorkflowHandle[Any, FlowResult]:
    """Start a `FlowRun`; `run_id` becomes the Temporal workflow ID (the orchestrator run ID)."""
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
