"""Write-back of runs and node executions to Postgres.

Every statement is an upsert keyed by the Temporal identity of what it records
(see persistence.queries), so a retried or replayed activity converges on the
same rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from persistence import hitl_queries, progress_queries, queries
from persistence.ids import require_uuid
from persistence.statuses import RUN_ENDED
from workflows.contract import NODE_ENDED, RECORD_RUN, RunRecord, RunUpdate, TaskRecord

_NEVER = datetime.max.replace(tzinfo=UTC)

_UUID_COLUMNS = (
    "workflow_id",
    "triggered_by",
    "tenant_id",
    "workspace_id",
    "parent_run_id",
    "retry_of_run_id",
)


def run_values(record: RunRecord) -> dict[str, Any]:
    """A run record as `workflow_runs` columns: fields left unset are not written, ids checked to be
    UUIDs.
    """
    values = record.model_dump(exclude_none=True, exclude={"orchestrator_run_id"})
    for key in _UUID_COLUMNS:
        if key in values:
            values[key] = require_uuid(values[key], key)
    return values


def task_values(record: TaskRecord, tenant_id: str | None) -> dict[str, Any]:
    """A node execution's record as `task_instances` columns; a success clears what an earlier
    failed attempt wrote.
    """
    values = record.model_dump(exclude_none=True, exclude={"orchestrator_task_id"})
    if record.status in ("completed", "skipped"):
        # A later success replaces what an earlier failed attempt wrote.
        values.setdefault("outputs", None)
        values.setdefault("error", None)
    if tenant_id:
        values["tenant_id"] = require_uuid(tenant_id, "tenant_id")
    if "reused_from" in values:
        values["reused_from"] = require_uuid(values["reused_from"], "reused_from")
    return values


def progress_of(tasks: list[TaskRecord]) -> progress_queries.Progress:
    """The run's progress a batch of node rows records: the nodes it completed (in completion
    order), the node of its latest running row, the nodes it ended.
    """
    done = sorted(
        (t for t in tasks if t.status == "completed"), key=lambda t: t.completed_at or _NEVER
    )
    running = [t for t in tasks if t.status == "running"]
    latest = max(running, key=lambda t: t.started_at or _NEVER) if running else None
    return progress_queries.Progress(
        completed=tuple(dict.fromkeys(t.node_id for t in done)),
        started=latest.node_id if latest else None,
        ended=tuple(dict.fromkeys(t.node_id for t in tasks if t.status in NODE_ENDED)),
        task_ids=tuple(t.orchestrator_task_id for t in tasks),
    )


async def write_tasks(
    session: AsyncSession, run_row_id: uuid.UUID, tenant_id: str | None, tasks: list[TaskRecord]
) -> None:
    """Upsert node execution rows of one run, keyed by their task IDs so a retry converges on the
    same rows; the last one's statement also records the run's progress (`progress_queries`).
    """
    if not tasks:
        return
    *before, last = tasks
    for task in before:
        await queries.upsert_task_instance(
            session, run_row_id, task.orchestrator_task_id, task_values(task, tenant_id)
        )
    await progress_queries.upsert_task_with_progress(
        session,
        run_row_id,
        last.orchestrator_task_id,
        task_values(last, tenant_id),
        progress_of(tasks),
    )


class WriteBack:
    """The `record_run` activity and the database sessions it needs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name=RECORD_RUN)
    async def record_run(self, update: RunUpdate) -> str:
        """Create or update the run row and the given task rows in one transaction."""
        async with self._sessions() as session, session.begin():
            run_id = await apply_run_update(session, update)
        return str(run_id)


async def apply_run_update(session: AsyncSession, update: RunUpdate) -> uuid.UUID:
    """The run row, the buffered task rows, and (for an ended run) its open HITL tasks closed."""
    if update.refused_start:
        earlier = await queries.run_row_state(session, update.run.orchestrator_run_id)
        if earlier is not None and earlier.status in RUN_ENDED:
            return earlier.id
    run_id = await queries.upsert_run(
        session, update.run.orchestrator_run_id, run_values(update.run)
    )
    await write_tasks(session, run_id, update.tenant_id, update.tasks)
    if update.run.status in ("cancelled", "failed"):
        await hitl_queries.close_open_tasks_of_run(session, run_id, "cancelled")
    if update.run.status in RUN_ENDED and update.run.completed_at is not None:
        await progress_queries.run_ended(session, run_id)
    return run_id
