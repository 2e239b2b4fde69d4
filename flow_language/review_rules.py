"""Review (HITL) rules: the task state a run keeps, and what a decision must meet.

The rules run in the update validator (which may not do I/O) and again in the
handler, so a decision that raced another is still judged on the latest state.
Whether the reviewer holds the assignee role lives in Postgres and is checked
by an activity in the handler.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flow_language.form_schema import validator_for
from flow_language.sizes import json_size

DecisionType = Literal["approval", "choice", "form_input", "annotation", "free_text"]
#: Handles a hitl node leaves by, besides a choice's option values.
FIXED_HANDLES = {
    "approval": ("approved", "rejected", "expired"),
    "choice": ("expired",),
    "form_input": ("submitted", "expired"),
    "annotation": ("submitted", "expired"),
    "free_text": ("submitted", "expired"),
}


#: The most a decision and its comments may weigh: they travel in the run's history.
MAX_DECISION_BYTES = 256 * 1024


class HitlDecisionRequest(BaseModel):
    """Payload of the `submit_hitl_decision` update and of the `hitl_decision` signal.

    Strict: a number where a text is due, or a key the CONTRACT does not name (a typo
    such as `comment`), is refused rather than coerced or dropped.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    hitl_task_id: str
    decision: dict[str, Any]
    decided_by: str
    comments: str | None = None


class HitlTaskState(BaseModel):
    """One open or finished HITL task of this run (kept across continue-as-new)."""

    id: str
    task_id: str
    node_id: str
    title: str
    decision_type: DecisionType
    options: list[str] = Field(default_factory=list)
    form_schema: dict[str, Any] | None = None
    assignee_id: str | None = None
    assignee_role: str | None = None
    required_approvals: int = 1
    allow_self_approval: bool = True
    created_at: datetime
    deadline: datetime | None = None
    escalation: list[dict[str, Any]] = Field(default_factory=list)
    escalated: int = 0
    approvals: list[str] = Field(default_factory=list)
    decision_ids: list[str] = Field(default_factory=list)
    status: Literal["open", "completed", "expired", "cancelled"] = "open"
    outcome: dict[str, Any] | None = None


def parse_decision(payload: Any) -> HitlDecisionRequest | str:
    """The request a decoded payload holds, or why it holds none (naming each field)."""
    if not isinstance(payload, dict):
        return f"a decision is a JSON object, not {_kind(payload)}"
    try:
        req = HitlDecisionRequest.model_validate(payload)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part)[:60] for part in error["loc"]) or "payload"
            what = (
                "is not a field of a decision"
                if error["type"] == "extra_forbidden"
                else error["msg"]
            )
            problems.append(f"{where}: {what}")
        return "invalid decision: " + "; ".join(problems[:10])
    # One spelling per person: `A2` and `a2` (or braces, a urn) are the same user, so quorum
    # and self-approval compare the canonical form. Not a UUID: decision_problem says so.
    req.decided_by = canonical_id(req.decided_by)
    return req


def canonical_id(value: str) -> str:
    """A user id in its one canonical spelling (lowercase, hyphenated), or as given."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def _kind(value: Any) -> str:
    return {list: "a list", str: "a text", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def decision_problem(
    task: HitlTaskState | None, req: HitlDecisionRequest, triggered_by: str | None
) -> str | None:
    """Why `req` cannot be accepted now, or None when it can."""
    if task is None:
        return f"unknown HITL task {req.hitl_task_id!r} in this run"
    if task.status != "open":
        return f"HITL task {task.id} is already {task.status}"
    if not req.decided_by.strip():
        return "decided_by is required"
    try:
        uuid.UUID(req.decided_by)
    except ValueError:
        return f"decided_by: {req.decided_by[:80]!r} is not a user id (a UUID)"
    size = json_size({"decision": req.decision, "comments": req.comments})
    if size > MAX_DECISION_BYTES:
        return (
            f"the decision and its comments are {size} bytes, over the {MAX_DECISION_BYTES} "
            "a decision may hold"
        )
    if (
        not task.allow_self_approval
        and triggered_by
        and canonical_id(req.decided_by) == canonical_id(triggered_by)
    ):
        return (
            f"{req.decided_by} started this run and may not decide its tasks "
            "(allowSelfApproval is false)"
        )
    d = req.decision
    if task.decision_type == "approval":
        if set(d) != {"approved"} or not isinstance(d["approved"], bool):
            return 'an approval decision is {"approved": true} or {"approved": false}'
        if canonical_id(req.decided_by) in [canonical_id(a) for a in task.approvals]:
            return f"{req.decided_by} has already approved this task; another reviewer must"
    elif task.decision_type == "choice":
        if set(d) != {"choice"} or d["choice"] not in task.options:
            return f'a choice decision is {{"choice": one of {task.options}}}'
    elif task.decision_type == "form_input":
        if set(d) != {"form"} or not isinstance(d["form"], dict):
            return 'a form decision is {"form": {...}}'
        if task.form_schema:
            try:
                errors = sorted(validator_for(task.form_schema).iter_errors(d["form"]), key=str)
            except Exception as exc:
                # Validation refuses such a schema; should one get through, no decision fits.
                return f"the task's formSchema cannot be checked: {str(exc).splitlines()[0]}"
            if errors:
                return "the form does not fit its schema: " + "; ".join(
                    f"{'/'.join(map(str, e.absolute_path))[:100] or 'form'}: {_short(e.message)}"
                    for e in errors[:10]
                )
    elif task.decision_type == "annotation":
        if set(d) != {"annotations"} or not isinstance(d["annotations"], list):
            return 'an annotation decision is {"annotations": [...]}'
    elif task.decision_type == "free_text" and (
        set(d) != {"text"} or not isinstance(d["text"], str) or not d["text"].strip()
    ):
        return 'a free-text decision is {"text": "..."} with some text'
    return None


def _short(message: str, limit: int = 200) -> str:
    """A message quoting the reviewer's value, cut short: the value may be huge."""
    return message if len(message) <= limit else message[:limit] + "…"


def option_values(options: Any) -> list[str]:
    """`options` as the builder writes them (strings or {value, label}) to their values."""
    values = []
    for option in options or []:
        values.append(str(option["value"]) if isinstance(option, dict) else str(option))
    return values


def decision_handle(task: HitlTaskState, req: HitlDecisionRequest) -> tuple[str, bool]:
    """The handle a decision leads to, and whether it closes the task (quorum reached)."""
    d = req.decision
    if task.decision_type == "approval":
        if d["approved"] is False:
            return "rejected", True
        return "approved", len(task.approvals) + 1 >= task.required_approvals
    if task.decision_type == "choice":
        return str(d["choice"]), True
    return "submitted", True
