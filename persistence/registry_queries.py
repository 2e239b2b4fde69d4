"""Reads of the agent and model registries, for resolving `agentId` / `modelId` in flows.

Rows are read for a run's tenant: its own, and the shared ones (of no tenant, or an
agent published as `public`, the marketplace). Another tenant's private row reads as
no row at all, so a run cannot tell it from an id that names nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from persistence.ids import parse_uuid
from persistence.models.agents import Agent
from persistence.models.multimodal import MODEL_TABLES, ModelRow


@dataclass(frozen=True)
class RegistryEntry:
    """What a node takes from a registry row: a base config and, for agents, schemas."""

    id: str
    name: str
    kind: str  # the agent's type, or the node type a model row serves
    tenant_id: str | None
    base_config: dict[str, Any]
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None


def _visible(row_tenant: uuid.UUID | None, shared: bool, tenant_id: str | None) -> bool:
    """Whether a run of `tenant_id` may use the row (a run of no tenant: shared rows only)."""
    if shared or row_tenant is None:
        return True
    return tenant_id is not None and row_tenant == parse_uuid(tenant_id)


async def load_agent(
    session: AsyncSession, agent_id: str, tenant_id: str | None = None
) -> RegistryEntry | None:
    """The agent a run of `tenant_id` may use, or None (unknown, or another tenant's private)."""
    key = parse_uuid(agent_id)
    row = await session.get(Agent, key) if key else None
    if row is None or not _visible(row.tenant_id, row.visibility == "public", tenant_id):
        return None
    return RegistryEntry(
        id=str(row.id),
        name=row.name,
        kind=row.type,
        tenant_id=str(row.tenant_id) if row.tenant_id else None,
        base_config=dict(row.configuration or {}),
        input_schema=row.input_schema,
        output_schema=row.output_schema,
    )


async def load_model(
    session: AsyncSession, node_type: str, model_id: str, tenant_id: str | None = None
) -> RegistryEntry | None:
    """A vision/audio/sensor model row as a base config: `endpoint`, `model` and its settings
    (None: unknown, or another tenant's)."""
    table = MODEL_TABLES.get(node_type)
    key = parse_uuid(model_id)
    row: ModelRow | None = await session.get(table, key) if table is not None and key else None
    if row is None or not _visible(row.tenant_id, False, tenant_id):
        return None
    base: dict[str, Any] = {"model": row.name}
    if row.api_endpoint:
        base["endpoint"] = row.api_endpoint
    base.update(row.settings or {})
    return RegistryEntry(
        id=str(row.id),
        name=row.name,
        kind=node_type,
        tenant_id=str(row.tenant_id) if row.tenant_id else None,
        base_config=base,
    )
