"""The status vocabularies of the data model's Proposal enums (reference doc, sections 3-5).

Postgres CHECK constraints are generated from these tuples, so the database
refuses a status the platform's UI would not understand.
"""

from __future__ import annotations

RUN_STATUSES = ("queued", "running", "waiting_hitl", "paused", "completed", "failed", "cancelled")
RUN_ENDED = ("completed", "failed", "cancelled")
TASK_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "paused", "skipped")
HITL_TASK_STATUSES = (
    "pending",
    "assigned",
    "in_progress",
    "completed",
    "escalated",
    "expired",
    "cancelled",
)
HITL_DECISION_TYPES = ("approval", "choice", "form_input", "annotation", "free_text")
HITL_ESCALATION_STATUSES = ("pending", "acknowledged", "resolved", "rejected")
AGENT_TYPES = ("docker", "api", "a2a", "llm", "vision", "audio", "sensor", "workflow")
WORKFLOW_STATUSES = ("draft", "published", "archived")
WORKFLOW_VERSION_STATUSES = ("draft", "published")
AGENT_VERSION_STATUSES = ("draft", "published", "deprecated")
AGENT_VISIBILITIES = ("private", "workspace", "tenant", "public")
#: What started a run (`workflow_runs.trigger_type`): a person or a caller by hand, a schedule,
#: a webhook call, a platform event.
TRIGGER_TYPES = ("manual", "schedule", "webhook", "event")
