"""Loading and checking a flow before any node runs (`prepare_flow`).

One activity does the whole start of a run in one round trip: check the ids
the run names against the database (tenant, workspace, users, roles, workflow,
sub-flows, registry rows, parent run), each within the run's tenant, where
another tenant's row reads exactly as an unknown one; load the definition
(stored or inline), validate it and the
inputs completely, and write the run row as `running`, or as `failed` with
every problem listed and the refused ids left out, so the row never trips a
foreign key. The definition travels back in the activity result, so replays
never read the database again; so do the registry rows a node names
(`data.agentId`, `config.modelId`), merged into its config here, so a later
edit of an agent changes new runs only.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import references
from activities.database_refusals import refused_by_database
from activities.writeback import run_values
from flow_language.config_checks import role_references, user_references
from flow_language.definition import FlowDefinition
from flow_language.refusals import (
    FLOW_UNAVAILABLE,
    RUN_ID_REUSED,
    RUN_RECORD_REJECTED,
    Refusal,
    refusal,
)
from flow_language.steps_format import read_drawing
from flow_language.templates import is_template
from flow_language.validation import DefinitionError, input_problems, parse_definition
from persistence import flow_lifecycle, progress_queries, queries, retry_queries
from persistence.registry_queries import apply_registries
from persistence.statuses import RUN_ENDED
from workflows.contract import (
    PREPARE_FLOW,
    PreparedFlow,
    PrepareInput,
    RunRecord,
    code_of_type,
)


class FlowPreparation:
    """The `prepare_flow` activity and the database sessions it needs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name=PREPARE_FLOW)
    async def prepare_flow(self, data: PrepareInput) -> PreparedFlow:
        """The run's checked definition and row; when the database refuses the data itself, a failed
        row instead (and the problem in `error`), so the run still ends with a record.
        """
        try:
            async with self._sessions() as session, session.begin():
                return await _prepare(session, data)
        except DBAPIError as exc:
            # Every id was checked and its row locked, so what is left is a value Postgres
            # cannot hold (say, a NUL character in the inputs): still fail, with a row.
            # Anything else (a lost connection) is retried.
            if not refused_by_database(exc):
                raise
            error = f"cannot record the run: {_first_line(exc.orig or exc)}"
        async with self._sessions() as session, session.begin():
            record = RunRecord(
                orchestrator_run_id=data.orchestrator_run_id,
                status="failed",
                started_at=data.started_at,
                completed_at=data.started_at,
                error=error,
                error_code=code_of_type(RUN_RECORD_REJECTED),
            )
            run_id = await queries.upsert_run(session, data.orchestrator_run_id, run_values(record))
            await progress_queries.run_ended(session, run_id)
        return PreparedFlow(
            run_row_id=str(run_id), problems=[error], error=error, error_type=RUN_RECORD_REJECTED
        )


async def _prepare(session: AsyncSession, data: PrepareInput) -> PreparedFlow:
    req = data.request
    earlier = await queries.run_row_state(session, data.orchestrator_run_id)
    if (
        earlier is not None
        and earlier.status in RUN_ENDED
        and earlier.started_at != data.started_at  # not this very run, retrying this step
    ):
        # Rows are keyed by the run id: a second run under it would overwrite the first's
        # record and mix their node rows. The earlier record is left as it is.
        error = (
            f"the run id {data.orchestrator_run_id!r} was already used by an earlier run "
            f"({earlier.status}), whose record is kept; start this run under a new id"
        )
        return PreparedFlow(
            run_row_id=str(earlier.id), problems=[error], error=error, error_type=RUN_ID_REUSED
        )
    flow_problems: list[str] = []
    inputs_problems: list[str] = []
    definition_raw = req.definition
    workflow_id: str | None = None
    flow_name: str | None = None
    version = req.version
    #: why the stored flow may not run now (archived, inactive, paused, a draft)
    unavailable: str | None = None
    refs = references.RunReferences()
    refs.tenant_id, refused_tenant = await references.check_tenant(session, req.tenant_id)
    if refused_tenant:
        # Nothing else can be judged in a tenant that does not exist.
        refs.problems.append(refused_tenant)
    else:
        workspace_id = req.workspace_id
        if req.workflow_id:
            # An inline definition (a draft) wins; the stored flow's id then only labels the run.
            inline = definition_raw is not None
            stored = await _stored_flow(
                session, str(req.workflow_id), version, refs, inline, req.parent_run_id is None
            )
            if stored is not None:
                workflow_id, flow_name = str(stored.workflow_id), stored.name
                if not inline:  # an inline definition is a draft by nature: it may run
                    unavailable = flow_lifecycle.unavailable(stored, draft=req.draft)
                    definition_raw, version = stored.definition, stored.version
                    if refs.tenant_id in (None, stored.tenant_id):
                        refs.tenant_id = stored.tenant_id
                        workspace_id = workspace_id or _str(stored.workspace_id)
        elif definition_raw is None:
            flow_problems.append("the run names neither `workflow_id` nor an inline `definition`")
        await references.check_run(
            session,
            refs,
            workspace_id=workspace_id,
            triggered_by=req.triggered_by,
            parent_run_id=req.parent_run_id,
        )
    normalized: dict[str, Any] = {}
    if definition_raw is not None:
        # A steps/connections document is read as its drawing first, so registry rows,
        # reviewers and sub-flows are found in it as in a drawing; the run carries the drawing.
        drawing = read_drawing(definition_raw)
        drawn, refused = await apply_registries(session, drawing.definition, _str(refs.tenant_id))
        drawing = replace(drawing, definition=drawn)
        flow_problems.extend(drawing.reworded(refused))
        if not refused_tenant:
            users = user_references(drawn)
            refs.problems.extend(await references.check_users(session, users, refs.tenant_id))
            roles = role_references(drawn)
            refs.problems.extend(await references.check_roles(session, roles, refs.tenant_id))
        try:
            definition = parse_definition(drawing)
        except DefinitionError as exc:
            flow_problems.extend(exc.problems)
        else:
            inputs_problems = input_problems(definition, req.inputs)
            normalized = definition.model_dump(mode="json", exclude_defaults=True)
            if not refused_tenant:
                sub_flows = await _sub_flow_problems(session, definition, refs.tenant_id)
                flow_problems.extend(drawing.reworded(sub_flows))
    refused_run = refusal(references=refs.problems, flow=flow_problems, inputs=inputs_problems)
    if unavailable and not refs.problems:
        # What the flow's owner decided comes before what is wrong with this request.
        refused_run = Refusal(unavailable, FLOW_UNAVAILABLE)
    retry_of, reusable = None, False
    if req.retry_of and not refused_tenant:
        retry_of, reusable = await _retried(session, data, refs.tenant_id, workflow_id, version)
    record = RunRecord(
        orchestrator_run_id=data.orchestrator_run_id,
        status="failed" if refused_run else "running",
        workflow_id=workflow_id,
        workflow_version=version,
        inputs=req.inputs,
        triggered_by=_str(refs.triggered_by),
        tenant_id=_str(refs.tenant_id),
        workspace_id=_str(refs.workspace_id),
        tags=req.tags or None,
        parent_run_id=_str(refs.parent_run_id),
        retry_of_run_id=retry_of,
        started_at=data.started_at,
        error=refused_run.error if refused_run else None,
        error_code=code_of_type(refused_run.error_type) if refused_run else None,
        completed_at=data.started_at if refused_run else None,
        **_trigger(data),
    )
    run_id = await queries.upsert_run(session, data.orchestrator_run_id, run_values(record))
    if refused_run:
        await progress_queries.run_ended(session, run_id)
    elif workflow_id is not None:
        await flow_lifecycle.mark_run_started(session, uuid.UUID(workflow_id), data.started_at)
    if flow_name is None and isinstance(definition_raw, dict):
        inline_name = definition_raw.get("name")
        flow_name = inline_name if isinstance(inline_name, str) and inline_name else None
    prepared = PreparedFlow(
        run_row_id=str(run_id),
        definition=normalized,
        workflow_id=workflow_id,
        flow_name=flow_name,
        version=version,
        tenant_id=_str(refs.tenant_id),
        workspace_id=_str(refs.workspace_id),
        problems=[*refs.problems, *flow_problems, *inputs_problems],
        reuse_run_id=retry_of if reusable and not refused_run else None,
    )
    if refused_run:
        prepared.error, prepared.error_type = refused_run.error, refused_run.error_type
    return prepared


def _trigger(data: PrepareInput) -> dict[str, Any]:
    """What started the run, for its row: as the request says, and for a run a Temporal
    Schedule started, `schedule` with the schedule's id and the time it fired for, which
    only Temporal knows (a schedule's action is written once, before any fire).
    """
    req = data.request
    if data.scheduled_by is None and data.scheduled_time is None:
        return {"trigger_type": req.trigger_type, "trigger_metadata": req.trigger_metadata}
    metadata = dict(req.trigger_metadata)
    if data.scheduled_by is not None:
        metadata.setdefault("schedule_id", data.scheduled_by)
    if data.scheduled_time is not None:
        fired = data.scheduled_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
        metadata.setdefault("scheduled_time", fired)
    return {"trigger_type": "schedule", "trigger_metadata": metadata}


async def _retried(
    session: AsyncSession,
    data: PrepareInput,
    tenant: uuid.UUID | None,
    workflow_id: str | None,
    version: int | None,
) -> tuple[str | None, bool]:
    """The row id of the run this one retries, and whether its node outputs may be reused.

    A run of another tenant reads as no run (nothing is linked or reused, and nothing
    tells it exists); so does an unknown one: a retry of a run that never wrote a row
    simply runs every node. Outputs are reused only when asked for and when the retried
    run ran the same flow at the same version (for a sub-flow started without a version,
    the current one may since have changed).
    """
    req = data.request
    found = await retry_queries.retried_run(session, str(req.retry_of))
    if found is None or found.tenant_id != tenant or req.retry_of == data.orchestrator_run_id:
        return None, False
    same_flow = (_str(found.workflow_id), found.workflow_version) == (workflow_id, version)
    return str(found.id), req.reuse_outputs and same_flow


async def _sub_flow_problems(
    session: AsyncSession, definition: FlowDefinition, tenant: uuid.UUID | None
) -> list[str]:
    """Sub-flows named outright, by name or id, must exist for the run's tenant before any
    node runs, in the words the sub-flow's own start would use (a templated name can be
    looked up only when its node runs: the child run, of this tenant, refuses it then).
    """
    problems = []
    for node in definition.nodes:
        config = node.data.config
        wanted = config.get("workflowId") if node.type == "workflow" else None
        if not isinstance(wanted, str) or is_template(wanted):
            continue
        version = config.get("version")
        literal = isinstance(version, int) and not isinstance(version, bool) and version > 0
        try:
            found = await queries.find_workflow_id(session, wanted, tenant_id=tenant)
            await queries.load_definition(
                session, found, version if literal else None, tenant_id=tenant, any_tenant=False
            )
        except queries.NotFoundError as exc:
            problems.append(f"node {node.id!r}: config.workflowId: {exc}")
    return problems


async def _stored_flow(
    session: AsyncSession,
    name_or_id: str,
    version: int | None,
    refs: references.RunReferences,
    inline: bool,
    top_level: bool,
) -> queries.StoredDefinition | None:
    """The stored flow the run names (by id or name, so flows can call sub-flows by name),
    if the run's tenant may see it; otherwise the refusal goes to `refs`. A top-level run
    of no tenant (an operator's) may start any stored flow by id, and runs in its tenant;
    a sub-flow of a run of no tenant reaches the shared flows only.
    """
    try:
        found = await queries.find_workflow_id(session, name_or_id, tenant_id=refs.tenant_id)
        return await queries.load_definition(
            session,
            found,
            None if inline else version,
            tenant_id=refs.tenant_id,
            any_tenant=top_level,
        )
    except queries.NotFoundError as exc:
        refs.problems.append(str(exc))
        return None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__


def _str(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None
