"""The flows a webhook or an event starts, and the runs a caller of the API may read.

`workflows.triggers` is a JSONB list of `{type, config}` (GIN-indexed, `jsonb_path_ops`):
every lookup here is a containment (`@>`), which that index answers without reading each
flow. A webhook trigger carries an `id` beside its type, the last part of its URL
(`POST /hooks/<id>`); an event trigger names its event in `config.event`.

An id is a capability: only ids of at least 22 characters (those `meta-agent hooks add`
makes carry 192 random bits) are looked up, so no short, guessable id ever starts a flow.
Ids are the platform's to keep unique; one that more than one flow carries starts nothing
(`AmbiguousHook`), so copying another tenant's id can never divert its deliveries to a
flow of one's own.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Workflow, WorkflowRun

#: What a webhook trigger id may be: URL-safe, long enough not to be guessed.
HOOK_ID = re.compile(r"^[A-Za-z0-9_-]{22,128}$")
#: A trigger's replay window when its config names none (seconds).
DEFAULT_TOLERANCE_SECONDS = 300
MAX_TOLERANCE_SECONDS = 86_400


class AmbiguousHook(LookupError):
    """More than one flow carries the webhook id: none is started, and the operator is told."""

    def __init__(self, trigger_id: str, flows: list[uuid.UUID]) -> None:
        self.flows = flows
        super().__init__(
            f"webhook id {trigger_id!r} is on more than one flow ({', '.join(map(str, flows))})"
        )


@dataclass(frozen=True)
class Hook:
    """A webhook trigger and the flow it starts."""

    trigger_id: str
    workflow_id: uuid.UUID
    flow_name: str
    tenant_id: uuid.UUID | None
    #: the name of the tenant's stored secret that signs its deliveries (None: none named)
    secret_name: str | None
    tolerance_seconds: int


@dataclass(frozen=True)
class Subscriber:
    """A flow with an `event` trigger on one name, and that trigger's config."""

    workflow_id: uuid.UUID
    flow_name: str
    config: dict[str, Any]


def _contains(value: list[dict[str, Any]]) -> Any:
    """`workflows.triggers @> value`, the form the GIN index serves."""
    return Workflow.triggers.op("@>")(literal(value, JSONB))


def tolerance(config: dict[str, Any]) -> int:
    """`config.toleranceSeconds` when it is a whole number from 1 to a day, else the default."""
    value = config.get("toleranceSeconds")
    if isinstance(value, bool) or not isinstance(value, int):
        return DEFAULT_TOLERANCE_SECONDS
    if 1 <= value <= MAX_TOLERANCE_SECONDS:
        return value
    return DEFAULT_TOLERANCE_SECONDS


async def find_hook(session: AsyncSession, trigger_id: str) -> Hook | None:
    """The flow whose `webhook` trigger has this id; None for no flow (or an id that could
    not be one), AmbiguousHook when several flows carry it.
    """
    if not HOOK_ID.match(trigger_id):
        return None
    rows = (
        await session.execute(
            select(Workflow.id, Workflow.name, Workflow.tenant_id, Workflow.triggers)
            .where(_contains([{"type": "webhook", "id": trigger_id}]))
            .order_by(Workflow.id)
            .limit(5)
        )
    ).all()
    if not rows:
        return None
    if len(rows) > 1:
        raise AmbiguousHook(trigger_id, [row.id for row in rows])
    row = rows[0]
    trigger = next(
        t
        for t in row.triggers
        if isinstance(t, dict) and t.get("type") == "webhook" and t.get("id") == trigger_id
    )
    found = trigger.get("config")
    config: dict[str, Any] = found if isinstance(found, dict) else {}
    name = config.get("secretName")
    return Hook(
        trigger_id=trigger_id,
        workflow_id=row.id,
        flow_name=row.name,
        tenant_id=row.tenant_id,
        secret_name=name if isinstance(name, str) else None,
        tolerance_seconds=tolerance(config),
    )


async def hook_id_used(session: AsyncSession, trigger_id: str) -> bool:
    """Whether any flow already carries this webhook id."""
    found = await session.scalar(
        select(Workflow.id).where(_contains([{"type": "webhook", "id": trigger_id}])).limit(1)
    )
    return found is not None


async def add_trigger(
    session: AsyncSession, workflow_id: uuid.UUID, trigger: dict[str, Any]
) -> None:
    """Append `trigger` to the flow's triggers (not an edit of its definition: no new version)."""
    await session.execute(
        update(Workflow)
        .where(Workflow.id == workflow_id)
        .values(triggers=Workflow.triggers.op("||")(literal([trigger], JSONB)))
        .execution_options(synchronize_session=False)
    )


async def event_subscribers(
    session: AsyncSession, tenant_id: uuid.UUID, event: str
) -> list[Subscriber]:
    """The tenant's own flows with an `event` trigger on `event` that may run now as far as
    their row says (not archived, active, not paused); whether their version is published is
    the starter's check (`workers.client.stored_flow`), which words the refusal.
    """
    rows = (
        await session.execute(
            select(Workflow.id, Workflow.name, Workflow.triggers)
            .where(
                Workflow.tenant_id == tenant_id,
                Workflow.status != "archived",
                Workflow.is_active.is_(True),
                Workflow.is_paused.is_(False),
                _contains([{"type": "event", "config": {"event": event}}]),
            )
            .order_by(Workflow.name, Workflow.id)
        )
    ).all()
    found = []
    for row in rows:
        config = next(
            t["config"]
            for t in row.triggers
            if isinstance(t, dict)
            and t.get("type") == "event"
            and isinstance(t.get("config"), dict)
            and t["config"].get("event") == event
        )
        found.append(Subscriber(row.id, row.name, config))
    return found


async def run_for_caller(
    session: AsyncSession,
    orchestrator_run_id: str,
    *,
    tenant_id: uuid.UUID,
    trigger_id: str | None = None,
) -> WorkflowRun | None:
    """The run's row if the caller may read it: a run of the caller's tenant and, for a
    caller signing with a webhook's secret, one that webhook started. None otherwise, in the
    same way as for no run at all, so another tenant's run does not show.
    """
    query = select(WorkflowRun).where(
        WorkflowRun.orchestrator_run_id == orchestrator_run_id,
        WorkflowRun.tenant_id == tenant_id,
    )
    if trigger_id is not None:
        query = query.where(
            WorkflowRun.trigger_type == "webhook",
            WorkflowRun.trigger_metadata.op("@>")(literal({"trigger_id": trigger_id}, JSONB)),
        )
    return (await session.execute(query)).scalar_one_or_none()
