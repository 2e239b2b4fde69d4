"""The ids a run names that only the database can vouch for, checked before any node runs.

A run names its tenant, workspace, the user who started it, its parent run,
and (in hitl nodes) the users and roles who review it. An id (or role name)
that names nothing, or a row of another tenant, fails the run at once with a
plain sentence, instead of a foreign-key error when its row is written or a
review task nobody can decide. Ids that are not UUIDs at all are refused the
same way. Rows of another tenant are refused in the same words as missing
ones, so a run cannot probe which ids exist elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from flow_language.config_checks import RoleReference, UserReference
from persistence import reference_queries
from persistence.ids import parse_uuid

#: A query for the tenant of each row that exists (absent keys: no such row).
_OwnersOf = Callable[
    [AsyncSession, Collection[uuid.UUID]], Awaitable[dict[uuid.UUID, uuid.UUID | None]]
]


@dataclass
class RunReferences:
    """The ids the run row may record (None: not given, or refused) and every refusal."""

    tenant_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    triggered_by: uuid.UUID | None = None
    parent_run_id: uuid.UUID | None = None
    problems: list[str] = field(default_factory=list)


def _missing(
    kind: str, raw: str, parsed: uuid.UUID | None, tenant: uuid.UUID | None, detail: str = ""
) -> str:
    shown = str(parsed) if parsed else repr(raw)
    where = f" in tenant {tenant}" if tenant else ""
    why = "" if parsed else f" (a {kind} id is a UUID)"
    return f"{kind} {shown}{detail} does not exist{where}{why}"


async def check_tenant(session: AsyncSession, value: str | None) -> tuple[uuid.UUID | None, str]:
    """The run's tenant, or why it is refused ("" when it is fine or not given)."""
    if not value:
        return None, ""
    tenant = parse_uuid(value)
    if tenant is None or not await reference_queries.tenant_exists(session, tenant):
        return None, _missing("tenant", value, tenant, None)
    return tenant, ""


async def check_run(
    session: AsyncSession,
    refs: RunReferences,
    *,
    workspace_id: str | None,
    triggered_by: str | None,
    parent_run_id: str | None,
) -> None:
    """Fill `refs` with the workspace, user and parent run that exist (in its tenant)."""
    tenant = refs.tenant_id
    if workspace_id:
        refs.workspace_id = await _owned(
            session, refs, "workspace", workspace_id, reference_queries.workspace_tenants
        )
    if triggered_by:
        refs.triggered_by = await _owned(
            session, refs, "user", triggered_by, reference_queries.user_tenants, " (triggered_by)"
        )
    if parent_run_id:
        parent = parse_uuid(parent_run_id)
        found, owner = (
            await reference_queries.run_tenant(session, parent) if parent else (False, None)
        )
        # A parent of no tenant may have called a tenant's stored flow, which runs in it.
        if found and (tenant is None or owner in (None, tenant)):
            refs.parent_run_id = parent
        else:
            refs.problems.append(_missing("parent run", parent_run_id, parent, tenant))


async def _owned(
    session: AsyncSession,
    refs: RunReferences,
    kind: str,
    raw: str,
    owners_of: _OwnersOf,
    detail: str = "",
) -> uuid.UUID | None:
    """`raw` as the id of a `kind` row of the run's tenant, or None with the refusal noted."""
    row_id = parse_uuid(raw)
    owners = await owners_of(session, [row_id] if row_id else [])
    if _belongs(row_id, owners, refs.tenant_id):
        return row_id
    refs.problems.append(_missing(kind, raw, row_id, refs.tenant_id, detail))
    return None


def _belongs(
    row_id: uuid.UUID | None,
    owners: dict[uuid.UUID, uuid.UUID | None],
    tenant: uuid.UUID | None,
) -> bool:
    """Whether the row exists and, when the run has a tenant, is that tenant's."""
    return row_id is not None and row_id in owners and tenant in (None, owners[row_id])


async def check_users(
    session: AsyncSession, references: list[UserReference], tenant: uuid.UUID | None
) -> list[str]:
    """Why each user a node names cannot review the run: not an active user of its tenant."""
    wanted = [(ref, parse_uuid(ref.value)) for ref in references]
    users = await reference_queries.active_user_tenants(session, {u for _, u in wanted if u})
    problems = []
    for ref, user in wanted:
        if user is None:
            continue  # not a UUID: validation names the node and field
        if not _belongs(user, users, tenant):
            problems.append(
                _missing("user", ref.value, user, tenant, f" (hitl `{ref.node_id}`, {ref.field})")
            )
    return problems


async def check_roles(
    session: AsyncSession, references: list[RoleReference], tenant: uuid.UUID | None
) -> list[str]:
    """Why each role a node names is not one of the run's tenant (for a run of no tenant:
    not a role of no tenant, the only ones its reviewers can hold for it).
    """
    if not references:
        return []
    known = await reference_queries.role_names(session, tenant, {ref.value for ref in references})
    return [
        f"role {ref.value!r} (hitl `{ref.node_id}`, {ref.field}) does not exist"
        + (f" in tenant {tenant}" if tenant else " among the roles of no tenant")
        for ref in references
        if ref.value not in known
    ]
