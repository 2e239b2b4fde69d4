"""Workflows, their versions, runs and task instances (reference doc section 3).

`workflow_runs.orchestrator_run_id` is the Temporal workflow ID and
`(workflow_run_id, orchestrator_task_id)` the Temporal activity ID within it:
both are unique so write-back can be an idempotent upsert.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base, CreatedAt, Timestamps, UUIDPrimaryKey, gin_index, status_check
from persistence.statuses import (
    RUN_STATUSES,
    TASK_STATUSES,
    TRIGGER_TYPES,
    WORKFLOW_STATUSES,
    WORKFLOW_VERSION_STATUSES,
)
from persistence.storable import StorableText


class Workflow(UUIDPrimaryKey, Timestamps, Base):
    """A stored flow: its current definition and version, and whom it belongs to."""

    __tablename__ = "workflows"
    __table_args__ = (
        Index(None, "created_at"),
        Index(None, "name", "tenant_id"),
        gin_index("workflows", "tags"),
        gin_index("workflows", "triggers"),
        CheckConstraint(status_check("status", WORKFLOW_STATUSES), name="status"),
    )

    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    definition: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(server_default="1")
    status: Mapped[str] = mapped_column(String(50), server_default="draft", index=True)
    creator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    tags: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    is_template: Mapped[bool] = mapped_column(server_default="false")
    orchestrator_id: Mapped[str | None] = mapped_column(String(255))
    # From the platform's reference (migration 0007): how the flow starts runs by itself
    # (`[{type, config}]`, type schedule / webhook / event / manual) and whether it may run.
    # A run of a flow that is inactive, paused or archived is refused before any node.
    triggers: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    schedule_cron: Mapped[str | None] = mapped_column(String(100))
    schedule_timezone: Mapped[str | None] = mapped_column(String(50), server_default="UTC")
    is_active: Mapped[bool] = mapped_column(server_default="true")
    is_paused: Mapped[bool] = mapped_column(server_default="false")
    #: when the latest run of the flow started (set by `prepare_flow`)
    last_run_at: Mapped[datetime | None]

    __mapper_args__ = {"eager_defaults": True}


class WorkflowVersion(UUIDPrimaryKey, CreatedAt, Base):
    """A flow's definition at one version, which runs naming that version load."""

    __tablename__ = "workflow_versions"
    __table_args__ = (
        Index(None, "created_at"),
        UniqueConstraint("workflow_id", "version"),
        CheckConstraint(status_check("status", WORKFLOW_VERSION_STATUSES), name="status"),
    )

    workflow_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflows.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int]
    definition: Mapped[dict[str, Any]]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    comment: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(50), server_default="published")


class WorkflowRun(UUIDPrimaryKey, Base):
    """One flow run, keyed by its Temporal workflow ID; written back by the run as it goes."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        gin_index("workflow_runs", "tags"),
        CheckConstraint(status_check("status", RUN_STATUSES), name="status"),
        CheckConstraint(status_check("trigger_type", TRIGGER_TYPES), name="trigger_type"),
    )

    # NULL for runs of an inline (draft) definition.
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflows.id", ondelete="SET NULL"), index=True
    )
    workflow_version: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(50), server_default="queued", index=True)
    started_at: Mapped[datetime | None] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]
    inputs: Mapped[dict[str, Any] | None]
    outputs: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(StorableText)
    triggered_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    orchestrator_run_id: Mapped[str] = mapped_column(String(255), unique=True)
    tags: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="SET NULL"), index=True
    )
    # Not in the reference table: the run this one retries (`meta-agent runs retry`).
    retry_of_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="SET NULL"), index=True
    )
    # Not in the reference table: model usage summed over the run's task_instances
    # (the figures the second seed keeps per agent execution).
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    total_tokens: Mapped[int | None]
    # From the platform's reference (migration 0007): what started the run (the reference's
    # `triggered_by` kind; ours stays the user), and its progress as the write-back keeps it:
    # the node started last and still running, the node ids completed so far (first completion,
    # no duplicates), and at the end its duration and where and how it failed.
    trigger_type: Mapped[str | None] = mapped_column(String(50), server_default="manual")
    trigger_metadata: Mapped[dict[str, Any] | None] = mapped_column(
        server_default=text("'{}'::jsonb")
    )
    current_step: Mapped[str | None] = mapped_column(String(255))
    completed_steps: Mapped[list[Any] | None] = mapped_column(server_default=text("'[]'::jsonb"))
    error_step: Mapped[str | None] = mapped_column(String(255))
    execution_time_ms: Mapped[int | None]
    error_code: Mapped[str | None] = mapped_column(String(50))


class TaskInstance(UUIDPrimaryKey, Base):
    """One node execution of a run (a loop's iterations each have their own), keyed by its
    task ID.
    """

    __tablename__ = "task_instances"
    __table_args__ = (
        UniqueConstraint("workflow_run_id", "orchestrator_task_id"),
        Index(None, "workflow_run_id", "node_id"),
        CheckConstraint(status_check("status", TASK_STATUSES), name="status"),
    )

    workflow_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(50), server_default="queued", index=True)
    started_at: Mapped[datetime | None] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]
    inputs: Mapped[dict[str, Any] | None]
    outputs: Mapped[Any] = mapped_column(JSONB, nullable=True)
    error: Mapped[str | None] = mapped_column(StorableText)
    retry_count: Mapped[int] = mapped_column(server_default="0")
    orchestrator_task_id: Mapped[str] = mapped_column(String(255))
    # The data model's agent types, or the node type for control nodes (condition, hitl, ...).
    agent_type: Mapped[str | None] = mapped_column(String(100), index=True)
    agent_config: Mapped[dict[str, Any] | None]
    # Not in the reference table: carried from the run so row-level security needs no join.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    # Not in the reference table: what a model node used, as the seed's agent_executions keeps.
    model_used: Mapped[str | None] = mapped_column(String(100))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    total_tokens: Mapped[int | None]
    first_token_time_ms: Mapped[int | None]
    # Not in the reference table: the retried run's row whose output this execution reused
    # instead of running. No foreign key: the mark outlives the deletion of the old run.
    reused_from: Mapped[uuid.UUID | None]
