"""Reads of the agent and model registries, for resolving `agentId` / `modelId` in flows."""

from __future__ import annotations

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
    shared: bool
    base_config: dict[str, Any]
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None


async def load_agent(session: AsyncSession, agent_id: str) -> RegistryEntry | None:
    key = parse_uuid(agent_id)
    row = await session.get(Agent, key) if key else None
    if row is None:
        return None
    return RegistryEntry(
        id=str(row.id),
        name=row.name,
        kind=row.type,
        tenant_id=str(row.tenant_id) if row.tenant_id else None,
        shared=row.visibility == "public" or row.tenant_id is None,
        base_config=dict(row.configuration or {}),
        input_schema=row.input_schema,
        output_schema=row.output_schema,
    )


async def load_model(session: AsyncSession, node_type: str, model_id: str) -> RegistryEntry | None:
    """A vision/audio/sensor model row as a base config: `endpoint`, `model` and its settings."""
    table = MODEL_TABLES.get(node_type)
    key = parse_uuid(model_id)
    row: ModelRow | None = await session.get(table, key) if table is not None and key else None
    if row is None:
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
        shared=row.tenant_id is None,
        base_config=base,
    )
