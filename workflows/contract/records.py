"""What the write-back records: `workflow_runs` and `task_instances` row changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

RunStatus = Literal[
    "queued", "running", "waiting_hitl", "paused", "completed", "failed", "cancelled"
]
TaskStatus = Literal["queued", "running", "completed", "failed", "cancelled", "paused", "skipped"]
#: What started a run (`workflow_runs.trigger_type`; `persistence.statuses.TRIGGER_TYPES`).
TriggerType = Literal["manual", "schedule", "webhook", "event"]
TRIGGER_TYPES: tuple[str, ...] = get_args(TriggerType)


class RunRecord(BaseModel):
    """A change to the `workflow_runs` row of a Temporal workflow ID; None keeps a column."""

    orchestrator_run_id: str
    status: RunStatus
    workflow_id: str | None = None
    workflow_version: int | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    triggered_by: str | None = None
    tenant_id: str | None = None
    workspace_id: str | None = None
    tags: list[str] | None = None
    parent_run_id: str | None = None
    retry_of_run_id: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    trigger_type: TriggerType | None = None
    trigger_metadata: dict[str, Any] | None = None
    #: at its end: the node whose failure failed the run, and the failure's class
    #: (`workflows.contract.error_codes`)
    error_step: str | None = None
    error_code: str | None = None


class TaskRecord(BaseModel):
    """One node execution's `task_instances` row (keyed by the activity-like task ID)."""

    orchestrator_task_id: str
    node_id: str
    status: TaskStatus
    agent_type: str | None = None
    agent_config: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    outputs: Any = None
    error: str | None = None
    retry_count: int | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    #: model usage of llm / vision / audio nodes
    model_used: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    first_token_time_ms: int | None = None
    #: the `task_instances.id` of the retried run's row whose output this one reused
    reused_from: str | None = None


class RunUpdate(BaseModel):
    """A run row change plus the rows of nodes evaluated inside the workflow, in one write."""

    run: RunRecord
    tenant_id: str | None = None
    tasks: list[TaskRecord] = Field(default_factory=list)
    #: The run was refused at its start: an ended row under its workflow ID is an earlier
    #: run's record, kept as it is.
    refused_start: bool = False
