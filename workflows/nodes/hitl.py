"""`hitl` nodes: a review task for a person, waited for as long as it takes.

Opening the task is an activity (it writes the `hitl_tasks` row the reviewers'
inbox reads); the decision arrives through `workflows/decisions.py`; here the
node waits for it, escalates on schedule, and expires at the deadline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import patches
from workflows.bookkeeping import bookkeeping
from workflows.failures import NodeError, check_payload
from workflows.nodes.lasting import sleep_or_drain

with workflow.unsafe.imports_passed_through():
    from flow_language import rendered_config
    from flow_language.definition import Node
    from flow_language.review_rules import HitlTaskState, option_values
    from workflows.contract import (
        HITL_CLOSE,
        HITL_ESCALATE,
        HITL_OPEN,
        MAX_WRITE_BYTES,
        EscalationRecord,
        HitlClose,
        HitlOpen,
    )
    from workflows.contract import error_codes as codes

if TYPE_CHECKING:
    from workflows.scheduler import Scope

#: What a review node returns: the outcome, leaving by its handle (and the error-less None).
Review = tuple[Any, list[str | None]]


async def run_hitl(scope: Scope, node: Node, task_id: str) -> Review:
    """Open the review task (once: a continued run finds it already open) and wait for its outcome,
    escalating on schedule and expiring at the deadline; leaves by the outcome's handle.
    """
    run = scope.run
    task = next((t for t in run.reviews.values() if t.task_id == task_id), None)
    if task is None:  # first visit (after continue-as-new the task already exists)
        task = await _open(scope, node, task_id)
    run.view(task_id, node.id, status="running", hitl_task_id=task.id)
    run.set_status("waiting_hitl")
    run.maybe_flush()
    run.refresh_details()
    try:
        while task.outcome is None:
            escalation = _next_escalation(task)
            due = [at for at in (escalation, task.deadline) if at is not None]
            remaining = (min(due) - workflow.now()).total_seconds() if due else None
            if remaining is None or remaining > 0:
                await sleep_or_drain(
                    scope,
                    remaining,
                    wake=lambda: task.outcome is not None,
                    summary=f"{node.label}: "
                    + ("escalation" if due and escalation == min(due) else "review deadline"),
                )
                continue
            if escalation is not None and (task.deadline is None or escalation < task.deadline):
                await _escalate(scope, task)
                continue
            if patches.patched(patches.DEADLINE_FIRST):
                return await _expire(scope, node, task)
            await workflow.wait_condition(workflow.all_handlers_finished)
            if task.outcome is not None:  # a decision landed just before the deadline
                break
            return await _expire(scope, node, task, legacy=True)
    except ActivityError:
        # The task cannot go on (say, an escalation to a user who does not exist): close
        # it, so the inbox does not offer a decision nobody will wait for.
        if run.records_every_end and task.status == "open":
            task.status = "cancelled"
            await bookkeeping(
                HITL_CLOSE, _closing(scope, node, task, "cancelled"), f"Cancel {task.title[:40]}"
            )
        raise
    finally:
        if not any(t.status == "open" for t in run.reviews.values()):
            run.set_status("running")
    return task.outcome, [task.outcome["handle"], None]


def review_handles(scope: Scope, node: Node, output: Any) -> list[str | None]:
    """A reused review leaves by its recorded outcome (approved, rejected, a choice, expired)."""
    handle = output.get("handle") if isinstance(output, dict) else None
    if not isinstance(handle, str):
        raise ValueError(f"no outcome handle in {output!r:.100}")
    return [handle, None]


def _next_escalation(task: HitlTaskState) -> datetime | None:
    """When the next escalation step is due (None: no step left)."""
    if task.escalated >= len(task.escalation):
        return None
    after = float(task.escalation[task.escalated]["afterSeconds"])
    return task.created_at + timedelta(seconds=after)


async def _open(scope: Scope, node: Node, task_id: str) -> HitlTaskState:
    run = scope.run
    cfg = scope.render(node, node.data.config, "config")
    if run.records_every_end:
        rendered_config.check_review(cfg)
    now = workflow.now()
    deadline = (
        now + timedelta(seconds=float(cfg["deadlineSeconds"]))
        if cfg.get("deadlineSeconds")
        else None
    )
    task = HitlTaskState(
        id=str(workflow.uuid4()),
        task_id=task_id,
        node_id=node.id,
        title=str(cfg["title"]),
        decision_type=cfg["decisionType"],
        options=option_values(cfg.get("options")),
        form_schema=cfg.get("formSchema"),
        assignee_id=cfg.get("assigneeId"),
        assignee_role=cfg.get("assigneeRole"),
        required_approvals=int(cfg.get("requiredApprovals", 1)),
        allow_self_approval=bool(cfg.get("allowSelfApproval", True)),
        created_at=now,
        deadline=deadline,
        escalation=list(cfg.get("escalation") or []),
    )
    visible = scope.scope_vars()["nodes"]
    refs = run.references(node)
    context = cfg.get("context") or {
        "input": run.params.inputs,
        "nodes": {k: v for k, v in visible.items() if k in refs.nodes},
    }
    opening = HitlOpen(
        hitl_task_id=task.id,
        run_row_id=run.run_row_id or "",
        tenant_id=run.tenant_id,
        workspace_id=run.params.workspace_id,
        task_id=task_id,
        node_id=node.id,
        title=task.title,
        description=cfg.get("description"),
        context=context,
        decision_type=task.decision_type,
        decision_options=cfg.get("options")
        if task.decision_type == "choice"
        else cfg.get("formSchema"),
        assignee_id=task.assignee_id,
        assignee_role=task.assignee_role,
        priority=cfg.get("priority"),
        deadline=deadline,
        escalation_path=task.escalation or None,
        started_at=now,
    )
    room = MAX_WRITE_BYTES
    if run.records_every_end:
        room -= check_payload(opening, "the review task (title, context, options)")
    if patches.patched(patches.HITL_OPEN_BOOKKEEPING):
        # Opening the task also writes the run's new status and the buffered rows.
        run.set_status("waiting_hitl")
        opening.run_update = await run.write_back.take_bookkeeping(room)
    # The row is written inside the activity, before Temporal hears that it was: a reviewer
    # may decide from the inbox meanwhile (for as long as a fault delays the answer).
    run.opening_reviews.add(task.id)
    try:
        await bookkeeping(HITL_OPEN, opening, f"Open review: {task.title[:60]}")
        run.reviews[task.id] = task
    finally:
        run.opening_reviews.discard(task.id)
    return task


async def _escalate(scope: Scope, task: HitlTaskState) -> None:
    step = task.escalation[task.escalated]
    reassigned = await bookkeeping(
        HITL_ESCALATE,
        EscalationRecord(
            escalation_id=str(workflow.uuid4()),
            hitl_task_id=task.id,
            tenant_id=scope.run.tenant_id,
            to_user=step.get("toUser"),
            to_role=step.get("toRole"),
            reason=f"no decision within {step['afterSeconds']} seconds",
            node_id=task.node_id,
            step=task.escalated,
        ),
        f"Escalate {task.title[:40]} to {step.get('toRole') or step.get('toUser')}",
    )
    if reassigned is not False:  # False: a decision closed the task first (None: older)
        # Exactly the step's target may decide from now on; the earlier assignee no longer.
        task.assignee_id, task.assignee_role = step.get("toUser"), step.get("toRole")
    task.escalated += 1


async def _expire(scope: Scope, node: Node, task: HitlTaskState, legacy: bool = False) -> Review:
    task.status = "expired"  # from here on, validators refuse new decisions
    closing = _closing(scope, node, task, "expired")
    if legacy:
        await bookkeeping(HITL_CLOSE, closing, f"Expire {task.title[:40]}")
    else:
        after = await bookkeeping(HITL_CLOSE, closing, f"Expire {task.title[:40]}")
        if after == "completed":
            # A decision was stored just before the deadline; its handler is finishing
            # and sets the outcome the rows already show.
            await workflow.wait_condition(
                lambda: task.outcome is not None or workflow.all_handlers_finished()
            )
            if task.outcome is not None:
                return task.outcome, [task.outcome["handle"], None]
    if "expired" in scope.defn.out_handles(node.id):
        expired = {"decision": None, "decided_by": None, "comments": None, "handle": "expired"}
        return expired, ["expired", None]
    deadline = task.deadline.isoformat() if task.deadline else "none"
    raise NodeError(f"no decision before the deadline ({deadline})", codes.TIMEOUT)


def _closing(scope: Scope, node: Node, task: HitlTaskState, status: Any) -> HitlClose:
    return HitlClose(
        hitl_task_id=task.id,
        status=status,
        task_id=task.task_id,
        run_row_id=scope.run.run_row_id or "",
        tenant_id=scope.run.tenant_id,
        node_id=node.id,
    )
