"""The review (HITL) bookkeeping activities' arguments: open, check, decide, escalate, close."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from flow_language.review_rules import DecisionType
from workflows.contract.records import RunUpdate


class HitlOpen(BaseModel):
    """The `hitl_open` argument: a new review task, as the reviewers' inbox shows it, and the node's
    running row beside it.
    """

    hitl_task_id: str
    run_row_id: str
    tenant_id: str | None = None
    workspace_id: str | None = None
    task_id: str
    node_id: str
    title: str
    description: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    decision_type: DecisionType
    decision_options: Any = None
    assignee_id: str | None = None
    assignee_role: str | None = None
    priority: int | None = None
    deadline: datetime | None = None
    escalation_path: list[dict[str, Any]] | None = None
    started_at: datetime
    #: Bookkeeping that rides along, so parking a run costs one activity and no later wake-up:
    #: the run's new status and the rows buffered by the workflow so far.
    run_update: RunUpdate | None = None


class ReviewerCheck(BaseModel):
    """The `hitl_check_reviewer` argument: the user who would decide a task, and to whom and in
    which tenant the task is assigned.
    """

    user_id: str
    tenant_id: str | None = None
    assignee_id: str | None = None
    assignee_role: str | None = None


class DecisionRecord(BaseModel):
    """The `hitl_decide` (and older `hitl_record_decision`) argument: one reviewer's decision,
    already judged by the workflow.
    """

    decision_id: str
    hitl_task_id: str
    tenant_id: str | None = None
    decision: dict[str, Any]
    decision_type: DecisionType
    decided_by: str
    comments: str | None = None
    #: the task's status after this decision
    task_status: Literal["in_progress", "completed"]
    #: the reviewer `hitl_decide` checks first, in the same transaction
    reviewer: ReviewerCheck | None = None
    #: a decision completing the task also sets the run's row from `waiting_hitl` to
    #: `running`, in the same transaction (the run has nothing else to say meanwhile)
    resumes_run: bool = False


class EscalationRecord(BaseModel):
    """The `hitl_escalate` argument: one step of a task's escalation path, now due."""

    escalation_id: str
    hitl_task_id: str
    tenant_id: str | None = None
    to_user: str | None = None
    to_role: str | None = None
    reason: str
    #: the hitl node and the step's index, for messages (absent in older histories)
    node_id: str = ""
    step: int = 0


class HitlClose(BaseModel):
    """The `hitl_close` argument: a task that ends without a decision (its deadline passed, or its
    run stopped waiting).
    """

    hitl_task_id: str
    status: Literal["expired", "cancelled"]
    task_id: str
    run_row_id: str
    tenant_id: str | None = None
    node_id: str
