"""Loading and checking a flow before any node runs (`prepare_flow`).

One activity does the whole start of a run in one round trip: load the
definition (stored or inline), validate it and the inputs completely, and
write the run row as `running`, or as `failed` with every problem listed.
The definition travels back in the activity result, so replays never read
the database again; so do the registry rows a node names (`data.agentId`,
`config.modelId`), merged into its config here, so a later edit of an agent
changes new runs only.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.writeback import run_values
from persistence import queries
from persistence.models.multimodal import MODEL_TABLES
from persistence.registry_queries import RegistryEntry, load_agent, load_model
from workflows.messages import PREPARE_FLOW, PreparedFlow, PrepareInput
from workflows.records import RunRecord
from workflows.validation import DefinitionError, input_problems, parse_definition


class FlowPreparation:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name=PREPARE_FLOW)
    async def prepare_flow(self, data: PrepareInput) -> PreparedFlow:
        req = data.request
        problems: list[str] = []
        definition_raw = req.definition
        workflow_id, version = req.workflow_id, req.version
        tenant_id, workspace_id = req.tenant_id, req.workspace_id
        async with self._sessions() as session, session.begin():
            if definition_raw is None:
                if not workflow_id:
                    problems.append(
                        "the run names neither `workflow_id` nor an inline `definition`"
                    )
                else:
                    try:
                        # A name is accepted too, so flows can call sub-flows by name.
                        workflow_id = str(await queries.find_workflow_id(session, workflow_id))
                        stored = await queries.load_definition(session, workflow_id, version)
                    except queries.NotFoundError as exc:
                        problems.append(str(exc))
                    else:
                        definition_raw, version = stored.definition, stored.version
                        tenant_id = tenant_id or _str(stored.tenant_id)
                        workspace_id = workspace_id or _str(stored.workspace_id)
            normalized: dict = {}
            if definition_raw is not None:
                definition_raw, refused = await apply_registries(session, definition_raw, tenant_id)
                problems.extend(refused)
                try:
                    definition = parse_definition(definition_raw)
                except DefinitionError as exc:
                    problems.extend(exc.problems)
                else:
                    problems.extend(input_problems(definition, req.inputs))
                    normalized = definition.model_dump(mode="json", exclude_defaults=True)
            record = RunRecord(
                orchestrator_run_id=data.orchestrator_run_id,
                status="failed" if problems else "running",
                workflow_id=workflow_id if _is_uuid(workflow_id) else None,
                workflow_version=version,
                inputs=req.inputs,
                triggered_by=req.triggered_by,
                tenant_id=tenant_id,
                workspace_id=workspace_id,
                tags=req.tags or None,
                parent_run_id=req.parent_run_id,
                started_at=data.started_at,
                error=_problem_text(problems) if problems else None,
                completed_at=data.started_at if problems else None,
            )
            try:
                run_id = await queries.upsert_run(
                    session, data.orchestrator_run_id, run_values(record)
                )
            except Exception as exc:  # a foreign key to a tenant/user that does not exist
                raise ApplicationError(
                    f"cannot record the run: {exc.__class__.__name__}: {_first_line(exc)}",
                    type="RunRecordRejected",
                    non_retryable=True,
                ) from exc
        return PreparedFlow(
            run_row_id=str(run_id),
            definition=normalized,
            workflow_id=workflow_id,
            version=version,
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            problems=problems,
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
            agent = await load_agent(session, str(data["agentId"]))
            refusal = _refusal(agent, "agents", node_type, tenant_id)
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
        if model_id and node_type in MODEL_TABLES:
            model = await load_model(session, str(node_type), str(model_id))
            refusal = _refusal(model, f"{node_type}_models", node_type, tenant_id)
            if model is None or refusal:
                problems.append(f"{where}: config.modelId {model_id!r}: {refusal}")
            else:
                config = _merged(model.base_config, config)
        data["config"] = config
        nodes.append({**node, "data": data})
    return {**raw, "nodes": nodes}, problems


def _refusal(
    entry: RegistryEntry | None, table: str, node_type: Any, tenant_id: str | None
) -> str | None:
    if entry is None:
        return f"no such row in {table}"
    if entry.kind != node_type:
        return f"{table} row {entry.name!r} is for {entry.kind!r} nodes, this node is {node_type!r}"
    if tenant_id and entry.tenant_id and entry.tenant_id != tenant_id and not entry.shared:
        return f"{table} row {entry.name!r} belongs to another tenant"
    return None


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _problem_text(problems: list[str]) -> str:
    return f"invalid flow ({len(problems)} problems):\n- " + "\n- ".join(problems)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def _str(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None


def _is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return value is not None
