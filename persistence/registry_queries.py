"""Reads of the agent and model registries, and resolving `agentId` / `modelId` in flows.

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
    (None: unknown, or another tenant's).
    """
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


def uses_registries(raw: Any) -> bool:
    """Whether any node names an `agentId` or a `config.modelId` (its config is incomplete)."""
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    return any(
        isinstance(n, dict)
        and isinstance(n.get("data"), dict)
        and (
            n["data"].get("agentId")
            or (isinstance(n["data"].get("config"), dict) and n["data"]["config"].get("modelId"))
        )
        for n in nodes or []
    )


async def apply_registries(
    session: AsyncSession, raw: Any, tenant_id: str | None
) -> tuple[Any, list[str]]:
    """`raw` with each node's registry rows merged under its own config (node keys win)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list):
        return raw, []
    problems: list[str] = []
    nodes: list[Any] = []
    for node in raw["nodes"]:
        data = node.get("data") if isinstance(node, dict) else None
        if not isinstance(data, dict):
            nodes.append(node)
            continue
        where, node_type = f"node {node.get('id')!r}", node.get("type")
        config: dict[str, Any] = data["config"] if isinstance(data.get("config"), dict) else {}
        data = dict(data)
        if data.get("agentId"):
            agent = await load_agent(session, str(data["agentId"]), tenant_id)
            refusal = _refusal(agent, "agents", node_type)
            if agent is None or refusal:
                problems.append(f"{where}: data.agentId {data['agentId']!r}: {refusal}")
            else:
                config = _merged(agent.base_config, config)
                for field, schema in (
                    ("inputSchema", agent.input_schema),
                    ("outputSchema", agent.output_schema),
                ):
                    if schema is not None and data.get(field) is None:
                        data[field] = schema
        model_id = config.get("modelId")
        # A modelId that is not a UUID is named by validation (the node schemas' pattern).
        if model_id and node_type in MODEL_TABLES and parse_uuid(model_id):
            model = await load_model(session, str(node_type), str(model_id), tenant_id)
            refusal = _refusal(model, f"{node_type}_models", node_type)
            if model is None or refusal:
                problems.append(f"{where}: config.modelId {model_id!r}: {refusal}")
            else:
                config = _merged(model.base_config, config)
        data["config"] = config
        nodes.append({**node, "data": data})
    return {**raw, "nodes": nodes}, problems


def _refusal(entry: RegistryEntry | None, table: str, node_type: Any) -> str | None:
    """Why the node cannot use the row. Another tenant's private row was never read
    (`entry` is None): it is refused in the words of a missing one, before its type
    or name could tell that it exists.
    """
    if entry is None:
        return f"no such row in {table}"
    if entry.kind != node_type:
        return f"{table} row {entry.name!r} is for {entry.kind!r} nodes, this node is {node_type!r}"
    return None


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out
