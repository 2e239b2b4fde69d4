"""Side effects of `hitl` nodes: the inbox rows, and the reviewer's roles (kept in Postgres)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.references import check_roles, check_users
from activities.writeback import apply_run_update, write_tasks
from flow_language.config_checks import RoleReference, UserReference
from persistence import hitl_queries
from persistence.ids import optional_uuid, parse_uuid, require_uuid
from persistence.models import TaskInstance
from persistence.storable import storable_text
from workflows.contract import (
    HITL_CHECK_REVIEWER,
    HITL_CLOSE,
    HITL_DECIDE,
    HITL_DECIDE_RESUMING,
    HITL_ESCALATE,
    HITL_OPEN,
    HITL_RECORD_DECISION,
    DecisionRecord,
    EscalationRecord,
    HitlClose,
    HitlOpen,
    ReviewerCheck,
    TaskRecord,
)


async def _check_reviewer(session: AsyncSession, req: ReviewerCheck) -> None:
    user_id = _uuid(req.user_id, "decided_by")
    assert user_id is not None
    problem = await hitl_queries.reviewer_problem(
        session,
        user_id,
        _uuid(req.tenant_id, "tenant_id"),
        _uuid(req.assignee_id, "assignee_id"),
        req.assignee_role,
    )
    if problem:
        raise ApplicationError(problem, type="ReviewerNotAllowed", non_retryable=True)


def _uuid(value: str | None, what: str) -> uuid.UUID | None:
    """An id from the flow's config: one that is not a UUID fails the node for good."""
    try:
        return optional_uuid(value, what)
    except ValueError as exc:
        raise ApplicationError(str(exc), type="InvalidId", non_retryable=True) from None


async def _refuse_unknown_reviewers(
    session: AsyncSession,
    tenant: str | None,
    node_id: str,
    users: dict[str, Any],
    roles: dict[str, Any],
) -> None:
    """Users (by config field) that are not active users of the run's tenant, or roles it
    does not have, would make a task nobody can decide: refuse the first, naming its field.
    One query for all the users and one for all the roles.
    """
    tenant_id = parse_uuid(tenant)
    problems = [
        *await check_users(
            session,
            [UserReference(node_id=node_id, field=f, value=str(v)) for f, v in users.items() if v],
            tenant_id,
        ),
        *await check_roles(
            session,
            [RoleReference(node_id=node_id, field=f, value=str(v)) for f, v in roles.items() if v],
            tenant_id,
        ),
    ]
    if problems:
        raise ApplicationError(problems[0], type="UnknownReference", non_retryable=True)


class HitlActivities:
    """The review (HITL) bookkeeping activities: the inbox rows the workflow opens, decides,
    escalates and closes.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name=HITL_OPEN)
    async def hitl_open(self, req: HitlOpen) -> str:
        """The node's task_instances row (running) and its hitl_tasks row; returns the task's id."""
        async with self._sessions() as session, session.begin():
            # Templated ones (written-out ones were checked before the run), and the
            # escalation targets before the task opens: a step to nobody would otherwise
            # surface only when it fires, hours later.
            steps = list(enumerate(req.escalation_path or []))
            await _refuse_unknown_reviewers(
                session,
                req.tenant_id,
                req.node_id,
                users={
                    "config.assigneeId": req.assignee_id,
                    **{f"config.escalation[{i}].toUser": s.get("toUser") for i, s in steps},
                },
                roles={
                    "config.assigneeRole": req.assignee_role,
                    **{f"config.escalation[{i}].toRole": s.get("toRole") for i, s in steps},
                },
            )
            if req.run_update is not None:
                # First: the review's running row, written next, is then the run's
                # `current_step` (a row this update carries would otherwise take its place).
                await apply_run_update(session, req.run_update)
            row = TaskRecord(
                orchestrator_task_id=req.task_id,
                node_id=req.node_id,
                status="running",
                agent_type="hitl",
                inputs={"title": req.title, "description": req.description},
                started_at=req.started_at,
                retry_count=0,
            )
            run_row_id = require_uuid(req.run_row_id, "run_row_id")
            await write_tasks(session, run_row_id, req.tenant_id, [row])
            task_instance_id = await session.scalar(
                select(TaskInstance.id).where(
                    TaskInstance.workflow_run_id == run_row_id,
                    TaskInstance.orchestrator_task_id == req.task_id,
                )
            )
            values: dict[str, Any] = {
                "id": require_uuid(req.hitl_task_id, "hitl_task_id"),
                "workflow_run_id": run_row_id,
                "task_instance_id": task_instance_id,
                "title": storable_text(req.title)[:255],
                "description": req.description,
                "status": "assigned" if (req.assignee_id or req.assignee_role) else "pending",
                "deadline": req.deadline,
                "assignee_id": _uuid(req.assignee_id, "assigneeId"),
                "assignee_role": req.assignee_role,
                "tenant_id": _uuid(req.tenant_id, "tenant_id"),
                "workspace_id": _uuid(req.workspace_id, "workspace_id"),
                "context": req.context,
                "decision_type": req.decision_type,
                "decision_options": req.decision_options,
                "priority": req.priority,
                "escalation_path": req.escalation_path,
            }
            await hitl_queries.create_task(session, values)
        return req.hitl_task_id

    @activity.defn(name=HITL_CHECK_REVIEWER)
    async def hitl_check_reviewer(self, req: ReviewerCheck) -> None:
        """Refuse (for good) a reviewer who may not decide the task: unknown or inactive, of another
        tenant, or neither its assignee nor of its role.
        """
        async with self._sessions() as session:
            await _check_reviewer(session, req)

    @activity.defn(name=HITL_DECIDE)
    async def hitl_decide(self, req: DecisionRecord) -> dict[str, Any]:
        """Check the reviewer and store the decision in one transaction: a reviewer who may not
        decide leaves nothing behind.
        """
        if req.reviewer is None:
            raise ApplicationError(
                "a decision needs the reviewer to check", type="InvalidDecision", non_retryable=True
            )
        return await self._record(req, req.reviewer)

    @activity.defn(name=HITL_DECIDE_RESUMING)
    async def hitl_decide_resuming(self, req: DecisionRecord) -> dict[str, Any]:
        """`hitl_decide`, and with a decision that completes the task, the run's row from
        `waiting_hitl` to `running`; the answer's `run_resumed` says whether it moved.
        """
        if not req.resumes_run:
            raise ApplicationError(
                "a resuming decision needs resumes_run", type="InvalidDecision", non_retryable=True
            )
        return await self.hitl_decide(req)

    @activity.defn(name=HITL_RECORD_DECISION)
    async def hitl_record_decision(self, req: DecisionRecord) -> dict[str, Any]:
        """Store a decision whose reviewer `hitl_check_reviewer` checked (runs started before
        `hitl_decide`).
        """
        return await self._record(req, req.reviewer)

    async def _record(self, req: DecisionRecord, reviewer: ReviewerCheck | None) -> dict[str, Any]:
        """Store the decision and the task's status after it, once `reviewer` (if any) is found
        allowed; a task already closed (its deadline came first) refuses it for good.
        """
        async with self._sessions() as session, session.begin():
            if reviewer is not None:
                await _check_reviewer(session, reviewer)
            try:
                return await hitl_queries.record_decision(
                    session,
                    {
                        "id": require_uuid(req.decision_id, "decision_id"),
                        "hitl_task_id": require_uuid(req.hitl_task_id, "hitl_task_id"),
                        "decision": req.decision,
                        "decision_type": req.decision_type,
                        "decided_by": _uuid(req.decided_by, "decided_by"),
                        "comments": req.comments,
                        "tenant_id": _uuid(req.tenant_id, "tenant_id"),
                    },
                    req.task_status,
                    resumes_run=req.resumes_run,
                )
            except hitl_queries.TaskClosedError as exc:
                raise ApplicationError(str(exc), type="TaskClosed", non_retryable=True) from None

    @activity.defn(name=HITL_ESCALATE)
    async def hitl_escalate(self, req: EscalationRecord) -> bool:
        """Whether the task was still open and is now reassigned."""
        async with self._sessions() as session, session.begin():
            where = f"config.escalation[{req.step}]"
            await _refuse_unknown_reviewers(
                session,
                req.tenant_id,
                req.node_id,
                users={f"{where}.toUser": req.to_user},
                roles={f"{where}.toRole": req.to_role},
            )
            return await hitl_queries.escalate(
                session,
                {
                    "id": require_uuid(req.escalation_id, "escalation_id"),
                    "hitl_task_id": require_uuid(req.hitl_task_id, "hitl_task_id"),
                    "escalated_to": _uuid(req.to_user, "toUser"),
                    "escalated_to_role": req.to_role,
                    "reason": req.reason,
                    "status": "pending",
                    "tenant_id": _uuid(req.tenant_id, "tenant_id"),
                },
            )

    @activity.defn(name=HITL_CLOSE)
    async def hitl_close(self, req: HitlClose) -> str | None:
        """The task's status afterwards: `req.status`, or `completed` when a decision was
        stored first (the workflow then follows that decision).
        """
        async with self._sessions() as session, session.begin():
            task_id = require_uuid(req.hitl_task_id, "hitl_task_id")
            return await hitl_queries.close_task(session, task_id, req.status)
