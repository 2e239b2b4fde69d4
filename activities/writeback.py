"""Write-back of runs and node executions to Postgres.

Every statement is an upsert keyed by the Temporal identity of what it records
(see persistence.queries), so a retried or replayed activity converges on the
same rows.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from persistence import queries
from workflows.records import RunRecord, TaskBatch, TaskRecord


def _run_values(record: RunRecord) -> dict[str, Any]:
    values = record.model_dump(exclude_none=True, exclude={"orchestrator_run_id"})
    for key in ("workflow_id", "triggered_by", "tenant_id", "workspace_id", "parent_run_id"):
        if key in values:
            values[key] = uuid.UUID(values[key])
    return values


def task_values(record: TaskRecord, tenant_id: str | None) -> dict[str, Any]:
    values = record.model_dump(exclude_none=True, exclude={"orchestrator_task_id"})
    if tenant_id:
        values["tenant_id"] = uuid.UUID(tenant_id)
    return values


class WriteBack:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="record_run")
    async def record_run(self, record: RunRecord) -> str:
        """Create or update the run row; returns its `workflow_runs.id`."""
        async with self._sessions() as session, session.begin():
            run_id = await queries.upsert_run(
                session, record.orchestrator_run_id, _run_values(record)
            )
        return str(run_id)

    @activity.defn(name="record_tasks")
    async def record_tasks(self, batch: TaskBatch) -> None:
        """Record the rows of nodes evaluated inside the workflow, in one transaction."""
        run_id = uuid.UUID(batch.workflow_run_id)
        async with self._sessions() as session, session.begin():
            for task in batch.tasks:
                await queries.upsert_task_instance(
                    session, run_id, task.orchestrator_task_id, task_values(task, batch.tenant_id)
                )
