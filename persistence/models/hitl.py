"""Human-in-the-loop tasks, decisions and escalations (reference doc section 4).

These rows are the reviewers' inbox; the workflow is the source of truth for
what a task is waiting for, and writes every change here through activities.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base, Timestamps, UUIDPrimaryKey, status_check
from persistence.statuses import HITL_DECISION_TYPES, HITL_ESCALATION_STATUSES, HITL_TASK_STATUSES
from persistence.storable import StorableString, StorableText


class HitlTask(UUIDPrimaryKey, Timestamps, Base):
    """A review task in the reviewers' inbox, opened by a `hitl` node and closed by its outcome."""

    __tablename__ = "hitl_tasks"
    __table_args__ = (
        Index(None, "created_at"),
        CheckConstraint(status_check("status", HITL_TASK_STATUSES), name="status"),
        CheckConstraint(status_check("decision_type", HITL_DECISION_TYPES), name="decision_type"),
        CheckConstraint("priority IS NULL OR priority BETWEEN 1 AND 5", name="priority"),
    )

    workflow_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    task_instance_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("task_instances.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(StorableString(255))
    description: Mapped[str | None] = mapped_column(StorableText)
    status: Mapped[str] = mapped_column(String(50), server_default="pending", index=True)
    deadline: Mapped[datetime | None] = mapped_column(index=True)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    assignee_role: Mapped[str | None] = mapped_column(StorableString(100), index=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    context: Mapped[dict[str, Any] | None]
    decision_type: Mapped[str] = mapped_column(String(50))
    decision_options: Mapped[Any] = mapped_column(JSONB, nullable=True)
    priority: Mapped[int | None] = mapped_column(index=True)
    escalation_path: Mapped[Any] = mapped_column(JSONB, nullable=True)


class HitlDecision(UUIDPrimaryKey, Base):
    """One reviewer's decision on a review task (a task may need several)."""

    __tablename__ = "hitl_decisions"
    __table_args__ = (
        CheckConstraint(status_check("decision_type", HITL_DECISION_TYPES), name="decision_type"),
    )

    hitl_task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("hitl_tasks.id", ondelete="CASCADE"), index=True
    )
    decision: Mapped[dict[str, Any]]
    decision_type: Mapped[str] = mapped_column(String(50))
    decided_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    comments: Mapped[str | None] = mapped_column(StorableText)
    attachments: Mapped[Any] = mapped_column(JSONB, nullable=True)
    # Not in the reference table: carried from the task for row-level security.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )


class HitlEscalation(UUIDPrimaryKey, Base):
    """One step of a review task's escalation: to whom it was handed, and why."""

    __tablename__ = "hitl_escalations"
    __table_args__ = (
        CheckConstraint(status_check("status", HITL_ESCALATION_STATUSES), name="status"),
    )

    hitl_task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("hitl_tasks.id", ondelete="CASCADE"), index=True
    )
    escalated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # NULL when the engine escalated on a timer rather than a person.
    escalated_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    escalated_to: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    escalated_to_role: Mapped[str | None] = mapped_column(StorableString(100), index=True)
    reason: Mapped[str | None] = mapped_column(StorableText)
    status: Mapped[str] = mapped_column(String(50), server_default="pending", index=True)
    # Not in the reference table: carried from the task for row-level security.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
