"""Closing the rows of runs that ended without running workflow code (terminate, timeout).

When Temporal ends a run on its own (an operator's terminate, a workflow execution
timeout), no line of the workflow runs afterwards, so nothing writes the run's end.
The reconciler (`workers/reconciler.py`) finds such runs and closes their rows here.

Every statement moves only rows that are still non-terminal, so it never overwrites
what the run itself recorded, and running it twice changes nothing the second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence import hitl_queries, progress_queries
from persistence.models import TaskInstance, WorkflowRun

#: Run statuses that a living run writes; anything else is its end.
RUN_OPEN = ("queued", "running", "waiting_hitl", "paused")
#: Node statuses that a living run writes.
TASK_OPEN = ("queued", "running", "paused")

#: First key of the sweep's advisory lock (the second is the hashed scope). Two-key locks
#: live apart from the migrations' one-key lock, so the two never block each other.
_SWEEP_LOCK_CLASS = 0x6D657461  # "meta"


@dataclass(frozen=True)
class ClosedRun:
    """What one reconciliation changed, for the log line."""

    run_row_id: uuid.UUID
    previous_status: str
    tasks_cancelled: int
    hitl_tasks_cancelled: int


async def try_sweep_lock(session: AsyncSession, scope: str) -> bool:
    """Take the sweep lock of `scope` for the current transaction, unless another holds it.

    Every worker process of a task queue sweeps it; the lock lets one of them do so at a
    time instead of all of them describing the same runs. It is released with the
    transaction, so a worker that dies mid-sweep never leaves it held.
    """
    taken = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:cls, hashtext(:scope))"),
        {"cls": _SWEEP_LOCK_CLASS, "scope": scope},
    )
    return bool(taken)


async def unfinished_runs(session: AsyncSession, orchestrator_run_ids: Collection[str]) -> set[str]:
    """Those of the given workflow IDs whose run row is still non-terminal.

    One statement per page of closed executions: the common case (the run recorded
    its own end) costs no call to Temporal.
    """
    if not orchestrator_run_ids:
        return set()
    rows = await session.execute(
        select(WorkflowRun.orchestrator_run_id).where(
            WorkflowRun.orchestrator_run_id.in_(list(orchestrator_run_ids)),
            WorkflowRun.status.in_(RUN_OPEN),
        )
    )
    return set(rows.scalars())


async def runs_without_row(
    session: AsyncSession, orchestrator_run_ids: Collection[str]
) -> set[str]:
    """Those of the given workflow IDs with no run row at all: runs Temporal ended before
    their first line ran (terminated or timed out while queued, or while their first write
    waited for the database).
    """
    if not orchestrator_run_ids:
        return set()
    present = await session.scalars(
        select(WorkflowRun.orchestrator_run_id).where(
            WorkflowRun.orchestrator_run_id.in_(list(orchestrator_run_ids))
        )
    )
    return set(orchestrator_run_ids) - set(present)


async def record_closed_run(
    session: AsyncSession,
    orchestrator_run_id: str,
    *,
    status: str,
    error: str,
    started_at: datetime | None,
    ended_at: datetime,
    error_code: str | None = None,
) -> bool:
    """The row of a run that ended before writing one: its end, and nothing it did not
    check (no tenant, flow or inputs: no check of the caller ran). False if a row exists.
    """
    inserted = await session.scalar(
        insert(WorkflowRun)
        .values(
            orchestrator_run_id=orchestrator_run_id,
            status=status,
            error=error,
            started_at=started_at,
            completed_at=ended_at,
            error_code=error_code,
        )
        .on_conflict_do_nothing(index_elements=[WorkflowRun.orchestrator_run_id])
        .returning(WorkflowRun.id)
    )
    if inserted is not None:
        await progress_queries.run_ended(session, inserted)
    return inserted is not None


async def close_run(
    session: AsyncSession,
    orchestrator_run_id: str,
    *,
    status: str,
    error: str,
    ended_at: datetime,
    error_code: str | None = None,
) -> ClosedRun | None:
    """Mark a run that Temporal has closed as ended, with its node rows and review tasks.

    Call inside one transaction, so the run and its rows change together. Returns None
    when the row is already terminal (or missing), and then changes nothing. A row that
    started after `ended_at` belongs to a newer execution reusing the workflow ID and is
    left alone.
    """
    previous = await session.scalar(
        select(WorkflowRun.status)
        .where(WorkflowRun.orchestrator_run_id == orchestrator_run_id)
        .with_for_update()
    )
    run_row_id = await session.scalar(
        update(WorkflowRun)
        .where(
            WorkflowRun.orchestrator_run_id == orchestrator_run_id,
            WorkflowRun.status.in_(RUN_OPEN),
            or_(WorkflowRun.started_at.is_(None), WorkflowRun.started_at <= ended_at),
        )
        .values(status=status, error=error, completed_at=ended_at, error_code=error_code)
        .returning(WorkflowRun.id)
        .execution_options(synchronize_session=False)
    )
    if run_row_id is None or previous is None:
        return None
    await progress_queries.run_ended(session, run_row_id)
    tasks = await session.execute(
        update(TaskInstance)
        .where(TaskInstance.workflow_run_id == run_row_id, TaskInstance.status.in_(TASK_OPEN))
        .values(
            status="cancelled",
            completed_at=func.coalesce(TaskInstance.completed_at, ended_at),
            error=func.coalesce(TaskInstance.error, f"the run ended before this node: {error}"),
        )
        .returning(TaskInstance.id)
        .execution_options(synchronize_session=False)
    )
    hitl = await hitl_queries.close_open_tasks_of_run(session, run_row_id, "cancelled")
    return ClosedRun(
        run_row_id=run_row_id,
        previous_status=previous,
        tasks_cancelled=len(tasks.all()),
        hitl_tasks_cancelled=hitl,
    )
