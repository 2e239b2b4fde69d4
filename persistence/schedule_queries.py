"""The stored flows that start runs by themselves on a clock, as the schedule sync reads them.

The platform writes a flow's schedule into `workflows` (a `schedule` entry of `triggers`,
and/or `schedule_cron` / `schedule_timezone`); the worker's schedule sync
(`workers/schedule_sync.py`) keeps one Temporal Schedule per schedule in step with these
rows. This module only reads: which flows have a schedule, whom they belong to, and
whether they may run now, in the words `flow_lifecycle` gives every refused run, so a
paused Temporal Schedule's note says exactly what a run of the flow would be told.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, cast, func, or_, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from persistence import flow_lifecycle
from persistence.models import Tenant, Workflow, WorkflowVersion
from persistence.queries import StoredDefinition

#: What a `triggers` list holds when it has a schedule entry (jsonb containment, which
#: the GIN index on `triggers` answers).
_HAS_SCHEDULE_TRIGGER = [{"type": "schedule"}]
#: The sync's advisory lock: one worker process (or `meta-agent schedules sync`) at a time.
_SYNC_LOCK_CLASS = 0x73636864  # "schd"


@dataclass(frozen=True)
class ScheduledFlow:
    """A stored flow with a schedule, and what a Temporal Schedule of it needs to know."""

    workflow_id: uuid.UUID
    name: str
    tenant_id: uuid.UUID | None
    #: the tenant's name, for people reading the schedule's note (None: no tenant)
    tenant_name: str | None
    workspace_id: uuid.UUID | None
    triggers: Any
    schedule_cron: str | None
    schedule_timezone: str | None
    #: why a run of the flow would be refused now (archived, inactive, paused, a draft);
    #: None when it would run
    unavailable: str | None


async def scheduled_flows(
    session: AsyncSession, tenant_id: uuid.UUID | None = None
) -> list[ScheduledFlow]:
    """Every flow with a schedule trigger or a `schedule_cron` (only `tenant_id`'s when
    given), oldest first, with whether it may run now judged as a run's start judges it.
    """
    current = and_(
        WorkflowVersion.workflow_id == Workflow.id, WorkflowVersion.version == Workflow.version
    )
    query = (
        select(Workflow, WorkflowVersion.status, Tenant.name)
        .outerjoin(WorkflowVersion, current)
        .outerjoin(Tenant, Tenant.id == Workflow.tenant_id)
        .where(
            or_(
                func.coalesce(func.btrim(Workflow.schedule_cron), "") != "",
                Workflow.triggers.op("@>")(cast(_HAS_SCHEDULE_TRIGGER, JSONB)),
            )
        )
        .order_by(Workflow.created_at, Workflow.id)
    )
    if tenant_id is not None:
        query = query.where(Workflow.tenant_id == tenant_id)
    flows = []
    for workflow, version_status, tenant_name in (await session.execute(query)).all():
        judged = StoredDefinition.of(workflow, workflow.version, {}, version_status)
        flows.append(
            ScheduledFlow(
                workflow_id=workflow.id,
                name=workflow.name,
                tenant_id=workflow.tenant_id,
                tenant_name=tenant_name,
                workspace_id=workflow.workspace_id,
                triggers=workflow.triggers,
                schedule_cron=workflow.schedule_cron,
                schedule_timezone=workflow.schedule_timezone,
                # A scheduled run is never a draft run: it runs the published version.
                unavailable=flow_lifecycle.unavailable(judged, draft=False),
            )
        )
    return flows


async def sync_lock(session: AsyncSession, scope: str, *, wait: bool) -> bool:
    """Take the schedule sync's lock of `scope` for the current transaction.

    Every worker process would otherwise sync the same schedules at the same moment;
    each step is idempotent, so the lock saves work rather than guarding correctness.
    A worker tries it (`wait=False`: another process is syncing, so it skips a turn);
    `meta-agent schedules sync` waits for it, so it reports a sync of its own. Released
    with the transaction, so a process that dies never leaves it held.
    """
    params = {"cls": _SYNC_LOCK_CLASS, "scope": scope}
    if wait:
        await session.execute(text("SELECT pg_advisory_xact_lock(:cls, hashtext(:scope))"), params)
        return True
    taken = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:cls, hashtext(:scope))"), params
    )
    return bool(taken)
