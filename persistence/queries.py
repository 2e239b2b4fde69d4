"""The few statements the worker runs, each idempotent.

Temporal retries activities and replays workflows, and a worker may die
between a write and its acknowledgement, so every write here is an upsert on
the Temporal identity of what it records: re-running it converges on the same
row instead of adding one.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.ids import parse_uuid, require_uuid
from persistence.models import TaskInstance, Workflow, WorkflowRun, WorkflowVersion

#: Columns that keep their first value when a row is written again (a retried
#: "running" write must not move the start time of a task that began earlier).
_KEEP_FIRST = frozenset({"started_at"})


class NotFoundError(LookupError):
    """The row a caller named does not exist; the message names what was looked for."""


def checked_columns(
    table: Table, values: Mapping[str, Any], *, keys: tuple[str, ...]
) -> dict[str, Any]:
    """`values` as columns of `table`, refusing unknown columns and the key's own."""
    unknown = set(values) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(sorted(unknown))}")
    clash = set(values) & set(keys)
    if clash:
        raise ValueError(f"{', '.join(sorted(clash))} is the key of {table.name}; pass it apart")
    return dict(values)


async def _upsert(
    session: AsyncSession,
    table: Table,
    key: dict[str, Any],
    values: Mapping[str, Any],
) -> uuid.UUID:
    columns = checked_columns(table, values, keys=tuple(key))
    stmt = upsert_statement(table, tuple(key), tuple(sorted(columns)))
    row_id: uuid.UUID = (await session.execute(stmt, {**key, **columns})).scalar_one()
    return row_id


@functools.lru_cache(maxsize=256)
def upsert_statement(
    table: Table, key: tuple[str, ...], columns: tuple[str, ...], *, returning: bool = True
) -> Any:
    """The upsert of `columns` keyed by `key`, built once per shape: building one (its
    `excluded` alias above all) cost more of an agent's row write than running it.
    """
    stmt = insert(table)
    excluded = stmt.excluded
    set_: dict[str, Any] = {
        name: (
            func.coalesce(table.c[name], excluded[name]) if name in _KEEP_FIRST else excluded[name]
        )
        for name in columns
    }
    if "updated_at" in table.c:
        set_["updated_at"] = func.now()
    if not set_:
        # Nothing to change: still return the existing row's id.
        set_ = {key[0]: excluded[key[0]]}
    upsert = stmt.on_conflict_do_update(index_elements=list(key), set_=set_)
    return upsert.returning(table.c.id) if returning else upsert


async def upsert_run(
    session: AsyncSession, orchestrator_run_id: str, values: Mapping[str, Any]
) -> uuid.UUID:
    """Create or update the `workflow_runs` row of a Temporal workflow ID.

    A row the platform created beforehand (status `queued`) is updated in place;
    only the columns in `values` change.
    """
    return await _upsert(
        session,
        WorkflowRun.__table__,  # type: ignore[arg-type]
        {"orchestrator_run_id": orchestrator_run_id},
        values,
    )


@dataclass(frozen=True)
class RunRowState:
    """What an earlier row under the same workflow ID says, to tell a retried start from a second
    run reusing the ID.
    """

    id: uuid.UUID
    status: str
    started_at: Any


async def run_row_state(session: AsyncSession, orchestrator_run_id: str) -> RunRowState | None:
    """The row a workflow ID already has, if any (locked until the caller's transaction ends)."""
    row = (
        await session.execute(
            select(WorkflowRun.id, WorkflowRun.status, WorkflowRun.started_at)
            .where(WorkflowRun.orchestrator_run_id == orchestrator_run_id)
            .with_for_update()
        )
    ).one_or_none()
    return RunRowState(row.id, row.status, row.started_at) if row else None


async def upsert_task_instance(
    session: AsyncSession,
    workflow_run_id: uuid.UUID,
    orchestrator_task_id: str,
    values: Mapping[str, Any],
) -> uuid.UUID:
    """Create or update the `task_instances` row of one node execution (one activity ID)."""
    return await _upsert(
        session,
        TaskInstance.__table__,  # type: ignore[arg-type]
        {"workflow_run_id": workflow_run_id, "orchestrator_task_id": orchestrator_task_id},
        values,
    )


async def upsert_task_instances(
    session: AsyncSession, rows: Sequence[tuple[uuid.UUID, str, Mapping[str, Any]]]
) -> None:
    """Create or update many `task_instances` rows, given as (run row id, task ID, columns):
    one statement per set of columns, so rows of many runs cost one round trip. No two rows
    may share a task ID of one run (Postgres refuses to upsert a row twice in a statement).
    """
    table: Table = TaskInstance.__table__  # type: ignore[assignment]
    key = ("workflow_run_id", "orchestrator_task_id")
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for run_row_id, task_id, values in rows:
        columns = checked_columns(table, values, keys=key)
        by_shape.setdefault(tuple(sorted(columns)), []).append(
            {"workflow_run_id": run_row_id, "orchestrator_task_id": task_id, **columns}
        )
    for shape, params in by_shape.items():
        await session.execute(upsert_statement(table, key, shape, returning=False), params)


async def refresh_run_usage(session: AsyncSession, workflow_run_id: uuid.UUID) -> None:
    """Set the run's token totals to the sum over its task rows (idempotent, unlike +=)."""
    await session.execute(
        text(
            "UPDATE workflow_runs r SET prompt_tokens = u.p, completion_tokens = u.c, "
            "total_tokens = u.t FROM (SELECT SUM(prompt_tokens) AS p, "
            "SUM(completion_tokens) AS c, SUM(total_tokens) AS t FROM task_instances "
            "WHERE workflow_run_id = :run) u WHERE r.id = :run"
        ),
        {"run": workflow_run_id},
    )


@dataclass(frozen=True)
class StoredDefinition:
    """A stored flow's definition at the version a run asked for, and whom the flow belongs to."""

    workflow_id: uuid.UUID
    name: str
    version: int
    definition: dict[str, Any]
    tenant_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    #: the flow's lifecycle (`persistence.flow_lifecycle` judges whether it may run)
    status: str = "published"
    is_active: bool = True
    is_paused: bool = False
    #: the status of the `workflow_versions` row loaded (None: the workflow row's own
    #: definition, written without a versions row)
    version_status: str | None = "published"

    @classmethod
    def of(
        cls,
        workflow: Workflow,
        version: int,
        definition: dict[str, Any],
        version_status: str | None,
    ) -> StoredDefinition:
        """The flow `workflow` at `version`: its owners and lifecycle from the workflow row."""
        return cls(
            workflow_id=workflow.id,
            name=workflow.name,
            version=version,
            definition=definition,
            tenant_id=workflow.tenant_id,
            workspace_id=workflow.workspace_id,
            status=workflow.status,
            is_active=workflow.is_active,
            is_paused=workflow.is_paused,
            version_status=version_status,
        )


async def load_definition(
    session: AsyncSession,
    workflow_id: uuid.UUID | str,
    version: int | None = None,
    *,
    tenant_id: uuid.UUID | None = None,
    any_tenant: bool = True,
) -> StoredDefinition:
    """A workflow's definition at `version`, or at its current version when none is given.

    With `tenant_id`, a workflow of another tenant is refused with the very message of
    an unknown one, so a run cannot learn which ids exist elsewhere; workflows of no
    tenant are shared. Without one, `any_tenant` says whether every workflow may be
    read (an operator starting a stored flow) or only the shared ones (a sub-flow of a
    run of no tenant, which must not pull a tenant's flow and outputs out of it).
    """
    try:
        wf_id = require_uuid(workflow_id, "workflow_id")
    except ValueError as exc:
        raise NotFoundError(str(exc)) from None
    workflow = await session.get(Workflow, wf_id)
    if workflow is None or not _visible(workflow, tenant_id, any_tenant):
        raise NotFoundError(f"no workflow with id {wf_id}")
    wanted = workflow.version if version is None else version
    row = (
        await session.execute(
            select(WorkflowVersion.definition, WorkflowVersion.status).where(
                WorkflowVersion.workflow_id == wf_id, WorkflowVersion.version == wanted
            )
        )
    ).one_or_none()
    if row is None:
        if version is not None and version != workflow.version:
            raise NotFoundError(f"workflow {wf_id} ({workflow.name!r}) has no version {version}")
        # A workflow row written without a versions row: its own definition is current.
        stored, version_status = workflow.definition, None
    else:
        stored, version_status = row.definition, row.status
    return StoredDefinition.of(workflow, wanted, stored, version_status)


async def take_document_triggers(
    session: AsyncSession, workflow_id: uuid.UUID, triggers: list[dict[str, Any]]
) -> None:
    """Make a flow's `schedule`, `event` and `manual` triggers those its imported document
    declares (its `webhook` triggers too, when it declares any): the schedules and events
    read `workflows.triggers`, so a document's triggers act once imported. Webhooks added by
    `meta-agent hooks add` (ids and secrets the document does not know) are kept otherwise.
    """
    current = await session.scalar(select(Workflow.triggers).where(Workflow.id == workflow_id))
    declares_hooks = any(t.get("type") == "webhook" for t in triggers)
    kept = [
        t
        for t in (current or [])
        if isinstance(t, dict) and t.get("type") == "webhook" and not declares_hooks
    ]
    await session.execute(
        update(Workflow).where(Workflow.id == workflow_id).values(triggers=[*kept, *triggers])
    )


async def save_workflow_version(
    session: AsyncSession,
    *,
    name: str,
    definition: dict[str, Any],
    tenant_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    created_by: uuid.UUID | None = None,
    comment: str | None = None,
) -> StoredDefinition:
    """Store `definition` as the next version of the workflow called `name` (created if new).

    The workflow row is locked while the next number is taken, so two imports
    at once get consecutive versions instead of a unique-key error.
    """
    query = select(Workflow).where(Workflow.name == name).with_for_update()
    query = query.where(
        Workflow.tenant_id.is_(None) if tenant_id is None else Workflow.tenant_id == tenant_id
    )
    workflow = (await session.execute(query)).scalars().first()
    if workflow is None:
        workflow = Workflow(
            name=name,
            definition=definition,
            version=1,
            status="published",
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            creator_id=created_by,
        )
        session.add(workflow)
        await session.flush()
        version = 1
    else:
        version = workflow.version + 1
        await session.execute(
            update(Workflow)
            .where(Workflow.id == workflow.id)
            .values(version=version, definition=definition, updated_at=func.now())
        )
    session.add(
        WorkflowVersion(
            workflow_id=workflow.id,
            version=version,
            definition=definition,
            created_by=created_by,
            comment=comment,
            status="published",
        )
    )
    await session.flush()
    return StoredDefinition(
        workflow_id=workflow.id,
        name=name,
        version=version,
        definition=definition,
        tenant_id=workflow.tenant_id,
        workspace_id=workflow.workspace_id,
    )


def _visible(workflow: Workflow, tenant_id: uuid.UUID | None, any_tenant: bool = True) -> bool:
    if tenant_id is None:
        return any_tenant or workflow.tenant_id is None
    return workflow.tenant_id in (None, tenant_id)


async def find_workflow_id(
    session: AsyncSession, name_or_id: str, *, tenant_id: uuid.UUID | None = None
) -> uuid.UUID:
    """A stored workflow's id from its id or (unambiguous) name.

    With `tenant_id`, a name is looked up among that tenant's workflows and the shared
    ones (of no tenant) only, and the tenant's own wins over a shared one of the same
    name; another tenant's flow of that name reads as no flow at all. An id is returned
    as it is: `load_definition` checks it (in the same words for unknown and foreign).
    """
    wf_id = parse_uuid(name_or_id)
    if wf_id is not None:
        return wf_id
    query = select(Workflow.id, Workflow.tenant_id).where(Workflow.name == name_or_id)
    if tenant_id is None:  # a run of no tenant: the shared ones only (a name is no address)
        query = query.where(Workflow.tenant_id.is_(None))
        own_first = Workflow.tenant_id.is_(None)
    else:
        query = query.where(or_(Workflow.tenant_id == tenant_id, Workflow.tenant_id.is_(None)))
        own_first = Workflow.tenant_id.is_not(None)
    # Two rows tell one from several; the run's own come first.
    rows = (await session.execute(query.order_by(own_first.desc()).limit(2))).all()
    own = [row.id for row in rows if row.tenant_id == tenant_id]
    ids = own or [row.id for row in rows]
    if not ids:
        raise NotFoundError(
            f"no stored flow named {name_or_id!r} (import it with `meta-agent flows import`)"
        )
    if len(ids) > 1:
        raise NotFoundError(f"several flows are named {name_or_id!r}; use the workflow id")
    return ids[0]


async def list_runs(
    session: AsyncSession,
    *,
    status: str | None = None,
    limit: int = 20,
    tenant_id: uuid.UUID | None = None,
) -> list[WorkflowRun]:
    """The latest runs (by start), optionally of one status only, or of one tenant only."""
    query = select(WorkflowRun).order_by(WorkflowRun.started_at.desc().nulls_last()).limit(limit)
    if status:
        query = query.where(WorkflowRun.status == status)
    if tenant_id is not None:
        query = query.where(WorkflowRun.tenant_id == tenant_id)
    return list((await session.execute(query)).scalars())


async def run_with_tasks(
    session: AsyncSession, orchestrator_run_id: str, tenant_id: uuid.UUID | None = None
) -> tuple[WorkflowRun, list[TaskInstance]]:
    """A run and its node executions, or NotFoundError (also for another tenant's run, when
    `tenant_id` is given: in the same words, so its existence does not show).
    """
    query = select(WorkflowRun).where(WorkflowRun.orchestrator_run_id == orchestrator_run_id)
    if tenant_id is not None:
        query = query.where(WorkflowRun.tenant_id == tenant_id)
    run = (await session.execute(query)).scalar_one_or_none()
    if run is None:
        raise NotFoundError(f"no run with orchestrator id {orchestrator_run_id!r}")
    tasks = (
        await session.execute(
            select(TaskInstance)
            .where(TaskInstance.workflow_run_id == run.id)
            .order_by(TaskInstance.started_at.nulls_last(), TaskInstance.orchestrator_task_id)
        )
    ).scalars()
    return run, list(tasks)
