"""Statements for the reviewers' inbox tables, each safe to repeat (activities retry)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import (
    HitlDecision,
    HitlEscalation,
    HitlTask,
    Role,
    User,
    UserRole,
    WorkflowRun,
)

OPEN_STATUSES = ("pending", "assigned", "in_progress", "escalated")


async def create_task(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert the task unless a previous attempt already did (the id is chosen by the workflow)."""
    await session.execute(
        insert(HitlTask).values(**values).on_conflict_do_nothing(index_elements=["id"])
    )


async def reviewer_problem(
    session: AsyncSession,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    assignee_id: uuid.UUID | None,
    assignee_role: str | None,
) -> str | None:
    """Why `user_id` may not decide a task so assigned, or None when they may."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        return f"user {user_id} does not exist or is not active"
    if tenant_id is not None and user.tenant_id != tenant_id:
        return f"user {user_id} does not belong to the run's tenant"
    if assignee_id is None and assignee_role is None:
        return None
    if assignee_id is not None and user_id == assignee_id:
        return None
    if assignee_role is not None:
        has_role = await session.scalar(
            select(
                exists().where(
                    and_(
                        UserRole.user_id == user_id,
                        UserRole.role_id == Role.id,
                        Role.name == assignee_role,
                        Role.tenant_id == tenant_id if tenant_id else Role.tenant_id.is_(None),
                    )
                )
            )
        )
        if has_role:
            return None
    wanted = " or ".join(
        x
        for x in (
            f"user {assignee_id}" if assignee_id else "",
            f"role {assignee_role!r}" if assignee_role else "",
        )
        if x
    )
    return f"user {user_id} is not the assignee of this task (needs {wanted})"


class TaskClosedError(Exception):
    """The task was closed (decided, expired, cancelled) before this decision could be stored."""


async def _lock_task(session: AsyncSession, hitl_task_id: uuid.UUID) -> Any:
    """The task's status and deadline under a row lock, and the database's clock after it.

    Recording a decision, escalating and closing all take this lock first, so they are
    ordered one after the other and each sees what the previous one left. The clock is
    read by a statement of its own: in the locking one it would be read before the wait.
    """
    task = (
        await session.execute(
            select(HitlTask.status, HitlTask.deadline, HitlTask.assignee_id, HitlTask.assignee_role)
            .where(HitlTask.id == hitl_task_id)
            .with_for_update()
        )
    ).first()
    if task is None:
        return None
    return (*task, await session.scalar(select(func.clock_timestamp())))


async def record_decision(
    session: AsyncSession, values: dict[str, Any], task_status: str, resumes_run: bool = False
) -> dict[str, Any]:
    """Store a decision while its task is open and before its deadline, or refuse it.

    The deadline is judged by the database's clock once the row is locked: a decision
    still being written when the deadline passes loses to the deadline, cleanly. With
    `resumes_run`, a decision that completes its task also moves the task's run from
    `waiting_hitl` to `running` (only from there: any other status was written later), and
    the answer's `run_resumed` says whether it did.
    """
    run_resumed = False
    row = await session.get(HitlDecision, values["id"])
    if row is None:  # not an earlier attempt of this same decision
        task = await _lock_task(session, values["hitl_task_id"])
        if task is None:
            raise TaskClosedError(f"HITL task {values['hitl_task_id']} does not exist")
        status, deadline, assignee_id, assignee_role, now = task
        if status not in OPEN_STATUSES:
            raise TaskClosedError(
                f"HITL task {values['hitl_task_id']} is already {status}; "
                "the decision was not recorded"
            )
        if deadline is not None and now >= deadline:
            raise TaskClosedError(
                f"the deadline of HITL task {values['hitl_task_id']} ({deadline.isoformat()}) "
                "passed before the decision was recorded"
            )
        # The reviewer was checked when the decision arrived; an escalation may have
        # reassigned the task since. Whoever holds it now is who may decide.
        problem = await reviewer_problem(
            session, values["decided_by"], values["tenant_id"], assignee_id, assignee_role
        )
        if problem:
            raise TaskClosedError(
                f"the task was reassigned before the decision was recorded: {problem}"
            )
        await session.execute(insert(HitlDecision).values(**values))
        await session.execute(
            update(HitlTask)
            .where(HitlTask.id == values["hitl_task_id"])
            .values(status=task_status, updated_at=func.now())
        )
        if task_status == "completed":
            await _settle_escalations(session, [values["hitl_task_id"]], "resolved")
            if resumes_run:
                run_resumed = await _resume_run(session, values["hitl_task_id"])
        row = await session.get(HitlDecision, values["id"])
    assert row is not None
    return {
        "id": str(row.id),
        "hitl_task_id": str(row.hitl_task_id),
        "decision": row.decision,
        "decision_type": row.decision_type,
        "decided_at": row.decided_at.isoformat(),
        "decided_by": str(row.decided_by) if row.decided_by else None,
        "comments": row.comments,
        **({"run_resumed": run_resumed} if resumes_run else {}),
    }


async def _resume_run(session: AsyncSession, hitl_task_id: uuid.UUID) -> bool:
    run_of_task = select(HitlTask.workflow_run_id).where(HitlTask.id == hitl_task_id)
    moved = await session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run_of_task.scalar_subquery())
        .where(WorkflowRun.status == "waiting_hitl")
        .values(status="running")
        .returning(WorkflowRun.id)
    )
    return moved.first() is not None


async def escalate(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Reassign an open task; False (and nothing written) when it closed meanwhile."""
    task = await _lock_task(session, values["hitl_task_id"])
    if task is None or task[0] not in OPEN_STATUSES:
        return False
    await session.execute(
        insert(HitlEscalation).values(**values).on_conflict_do_nothing(index_elements=["id"])
    )
    await session.execute(
        update(HitlTask)
        .where(HitlTask.id == values["hitl_task_id"])
        .values(
            status="escalated",
            assignee_id=values.get("escalated_to"),
            assignee_role=values.get("escalated_to_role"),
            updated_at=func.now(),
        )
    )
    return True


async def close_task(session: AsyncSession, hitl_task_id: uuid.UUID, status: str) -> str | None:
    """Close an open task as `status`; returns the task's status afterwards.

    A task already decided stays so (its decision was stored first): the caller learns
    it from the answer `completed`.
    """
    task = await _lock_task(session, hitl_task_id)
    if task is None:
        return None
    if task[0] not in OPEN_STATUSES:
        return str(task[0])
    await session.execute(
        update(HitlTask)
        .where(HitlTask.id == hitl_task_id)
        .values(status=status, updated_at=func.now())
    )
    await _settle_escalations(session, [hitl_task_id], "rejected")
    return status


async def close_open_tasks_of_run(session: AsyncSession, run_row_id: uuid.UUID, status: str) -> int:
    """A run that ended (cancelled, failed) leaves no task open in the inbox.

    Returns how many tasks it closed (the reconciler logs it).
    """
    closed = await session.execute(
        update(HitlTask)
        .where(HitlTask.workflow_run_id == run_row_id, HitlTask.status.in_(OPEN_STATUSES))
        .values(status=status, updated_at=func.now())
        .returning(HitlTask.id)
    )
    ids = list(closed.scalars())
    await _settle_escalations(session, ids, "rejected")
    return len(ids)


async def _settle_escalations(
    session: AsyncSession, hitl_task_ids: list[uuid.UUID], status: str
) -> None:
    """An escalation is `pending` while its task waits; when the task ends it is `resolved`
    (decided) or `rejected` (expired or cancelled without a decision).
    """
    if hitl_task_ids:
        await session.execute(
            update(HitlEscalation)
            .where(
                HitlEscalation.hitl_task_id.in_(hitl_task_ids),
                HitlEscalation.status == "pending",
            )
            .values(status=status)
        )


async def list_tasks(
    session: AsyncSession,
    *,
    assignee: uuid.UUID | None = None,
    role: str | None = None,
    status: str | None = None,
    limit: int = 50,
    tenant_id: uuid.UUID | None = None,
) -> list[tuple[HitlTask, str]]:
    """Review tasks with their runs' workflow IDs, by priority (1 first) and then age;
    of one tenant only when `tenant_id` is given.
    """
    query = (
        select(HitlTask, WorkflowRun.orchestrator_run_id)
        .join(WorkflowRun, WorkflowRun.id == HitlTask.workflow_run_id)
        .order_by(HitlTask.priority.asc().nulls_last(), HitlTask.created_at)
        .limit(limit)
    )
    if assignee:
        query = query.where(HitlTask.assignee_id == assignee)
    if role:
        query = query.where(HitlTask.assignee_role == role)
    if status:
        query = query.where(HitlTask.status == status)
    if tenant_id is not None:
        query = query.where(HitlTask.tenant_id == tenant_id)
    elif status is None:
        query = query.where(HitlTask.status.in_(OPEN_STATUSES))
    return [(task, run_id) for task, run_id in (await session.execute(query)).all()]


async def task_with_run(
    session: AsyncSession, hitl_task_id: uuid.UUID, tenant_id: uuid.UUID | None = None
) -> tuple[HitlTask, str] | None:
    """One review task and its run's workflow ID (the workflow a decision is sent to), or None
    (also for another tenant's task, when `tenant_id` is given).
    """
    query = (
        select(HitlTask, WorkflowRun.orchestrator_run_id)
        .join(WorkflowRun, WorkflowRun.id == HitlTask.workflow_run_id)
        .where(HitlTask.id == hitl_task_id)
    )
    if tenant_id is not None:
        query = query.where(HitlTask.tenant_id == tenant_id)
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row else None


#: Review task statuses that still wait for a decision.
HITL_OPEN_STATUSES = ("pending", "assigned", "in_progress", "escalated")


async def open_review_counts(session: AsyncSession) -> dict[str, int]:
    """Open review tasks by tenant id ("" for tasks of no tenant), for the metrics gauge."""
    rows = await session.execute(
        select(HitlTask.tenant_id, func.count())
        .where(HitlTask.status.in_(HITL_OPEN_STATUSES))
        .group_by(HitlTask.tenant_id)
    )
    return {str(tenant) if tenant else "": int(count) for tenant, count in rows.all()}
