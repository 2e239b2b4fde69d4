"""What a retry reads of the run it retries: that run, its completed node rows, the links.

A retry that reuses outputs takes them from the retried run's `task_instances`
rows, not from Temporal: the rows outlive the workflow's history and the worker's
memory, and they are written, final, however a run ends (terminated and timed-out
runs included, whose completed rows were written before the end).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import TaskInstance, WorkflowRun


@dataclass(frozen=True)
class RetriedRun:
    """The row of the run a retry names: whom it belongs to and which flow it ran."""

    id: uuid.UUID
    tenant_id: uuid.UUID | None
    workflow_id: uuid.UUID | None
    workflow_version: int | None


async def retried_run(session: AsyncSession, orchestrator_run_id: str) -> RetriedRun | None:
    """The row of the run with that workflow id, if any (the caller checks its tenant)."""
    row = (
        await session.execute(
            select(
                WorkflowRun.id,
                WorkflowRun.tenant_id,
                WorkflowRun.workflow_id,
                WorkflowRun.workflow_version,
            ).where(WorkflowRun.orchestrator_run_id == orchestrator_run_id)
        )
    ).one_or_none()
    return RetriedRun(*row) if row else None


@dataclass(frozen=True)
class CompletedRow:
    """One completed node execution of a retried run, with the output its row recorded."""

    id: uuid.UUID
    orchestrator_task_id: str
    agent_type: str | None
    outputs: Any


async def completed_rows(
    session: AsyncSession,
    run_row_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    *,
    after: str,
    limit: int,
) -> Sequence[CompletedRow]:
    """Up to `limit` completed rows of the run (of that tenant) after task id `after`, in
    task-id order; rows without a recorded output (SQL or JSON null) are left out.
    """
    tenant = (
        WorkflowRun.tenant_id.is_(None) if tenant_id is None else WorkflowRun.tenant_id == tenant_id
    )
    rows = await session.execute(
        select(
            TaskInstance.id,
            TaskInstance.orchestrator_task_id,
            TaskInstance.agent_type,
            TaskInstance.outputs,
        )
        .join(WorkflowRun, WorkflowRun.id == TaskInstance.workflow_run_id)
        .where(
            TaskInstance.workflow_run_id == run_row_id,
            tenant,
            TaskInstance.status == "completed",
            func.jsonb_typeof(TaskInstance.outputs) != "null",  # SQL NULL is left out too
            TaskInstance.orchestrator_task_id > after,
        )
        .order_by(TaskInstance.orchestrator_task_id)
        .limit(limit)
    )
    return [CompletedRow(*row) for row in rows]


@dataclass(frozen=True)
class RetryLinks:
    """Which run a run retries, and which runs retried it (workflow ids)."""

    retry_of: str | None
    retried_by: list[str]


async def retry_links(session: AsyncSession, run: WorkflowRun) -> RetryLinks:
    """The workflow ids of the run `run` retries and of the retries of `run`, oldest first."""
    retry_of = None
    if run.retry_of_run_id is not None:
        retry_of = (
            await session.execute(
                select(WorkflowRun.orchestrator_run_id).where(WorkflowRun.id == run.retry_of_run_id)
            )
        ).scalar_one_or_none()
    retried_by = (
        await session.execute(
            select(WorkflowRun.orchestrator_run_id)
            .where(WorkflowRun.retry_of_run_id == run.id)
            .order_by(WorkflowRun.started_at.nulls_last())
        )
    ).scalars()
    return RetryLinks(retry_of, list(retried_by))
