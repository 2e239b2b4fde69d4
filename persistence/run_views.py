"""What a person reading runs at a terminal needs: runs with their flow's name, a run with
its node rows, its flow's definition (for graph order) and its open review tasks.

Reads only; `--tenant` narrows each to one tenant, and another tenant's run reads as
one that does not exist (the words of `queries.run_with_tasks`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.hitl_queries import OPEN_STATUSES
from persistence.models import HitlTask, TaskInstance, Workflow, WorkflowRun
from persistence.queries import NotFoundError, load_definition, run_with_tasks


@dataclass(frozen=True)
class ListedRun:
    """A run as `runs list` shows it: its row and its flow's name (None: an inline flow)."""

    run: WorkflowRun
    flow_name: str | None


@dataclass(frozen=True)
class RunDetail:
    """A run as `runs show` shows it; `definition` is None for an inline flow's run."""

    run: WorkflowRun
    tasks: list[TaskInstance]
    flow_name: str | None
    definition: dict[str, Any] | None
    open_reviews: list[HitlTask]


async def list_runs(
    session: AsyncSession,
    *,
    status: str | None = None,
    limit: int = 20,
    tenant_id: uuid.UUID | None = None,
    children: bool = False,
) -> list[ListedRun]:
    """The latest runs (by start) with their flow's name.

    Runs of `workflow` nodes (rows with `parent_run_id`) are left out unless `children`:
    they belong to the run that started them and would crowd the list (a loop of sub-flows
    makes one per item).
    """
    query = (
        select(WorkflowRun, Workflow.name)
        .outerjoin(Workflow, Workflow.id == WorkflowRun.workflow_id)
        .order_by(WorkflowRun.started_at.desc().nulls_last())
        .limit(limit)
    )
    if status:
        query = query.where(WorkflowRun.status == status)
    if tenant_id is not None:
        query = query.where(WorkflowRun.tenant_id == tenant_id)
    if not children:
        query = query.where(WorkflowRun.parent_run_id.is_(None))
    return [ListedRun(run, name) for run, name in (await session.execute(query)).all()]


async def run_detail(
    session: AsyncSession, orchestrator_run_id: str, tenant_id: uuid.UUID | None = None
) -> RunDetail:
    """A run, its node rows, its stored flow (name and definition) and its open review tasks.

    NotFoundError when there is no such run (or it is another tenant's, given `tenant_id`).
    """
    run, tasks = await run_with_tasks(session, orchestrator_run_id, tenant_id)
    name, definition = None, None
    if run.workflow_id is not None:
        try:
            stored = await load_definition(session, run.workflow_id, run.workflow_version)
        except NotFoundError:  # the flow was deleted since: show the rows in start order
            pass
        else:
            name, definition = stored.name, stored.definition
    reviews = (
        await session.execute(
            select(HitlTask)
            .where(HitlTask.workflow_run_id == run.id, HitlTask.status.in_(OPEN_STATUSES))
            .order_by(HitlTask.created_at)
        )
    ).scalars()
    return RunDetail(run, tasks, name, definition, list(reviews))


async def node_rows(session: AsyncSession, orchestrator_run_id: str) -> list[TaskInstance]:
    """The run's node rows as written so far (none before its row exists)."""
    query = (
        select(TaskInstance)
        .join(WorkflowRun, WorkflowRun.id == TaskInstance.workflow_run_id)
        .where(WorkflowRun.orchestrator_run_id == orchestrator_run_id)
    )
    return list((await session.execute(query)).scalars())
