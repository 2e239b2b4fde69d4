"""Which of the rows a run names by id exist, and in which tenant.

Each read takes `FOR KEY SHARE` on the rows it finds, as Postgres' own
foreign-key check would: until the transaction that writes the run row ends,
none of them can be deleted, so a row found here cannot turn into a
foreign-key error a moment later.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Role, Tenant, User, WorkflowRun, Workspace


async def tenant_exists(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant exists; its row is locked (key share) so it cannot go before the run's row
    refers to it.
    """
    found = await session.scalar(
        select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(read=True, key_share=True)
    )
    return found is not None


async def _tenants_of(
    session: AsyncSession,
    model: type[Workspace] | type[User],
    ids: Collection[uuid.UUID],
    *also: ColumnElement[bool],
) -> dict[uuid.UUID, uuid.UUID | None]:
    """The tenant of each of the `ids` rows that exists (and meets `also`)."""
    if not ids:
        return {}
    rows = await session.execute(
        select(model.id, model.tenant_id)
        .where(model.id.in_(list(ids)), *also)
        .with_for_update(read=True, key_share=True)
    )
    return {row_id: tenant for row_id, tenant in rows.all()}


async def workspace_tenants(
    session: AsyncSession, workspace_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID | None]:
    """The tenant of each workspace that exists (absent keys: no such workspace)."""
    return await _tenants_of(session, Workspace, workspace_ids)


async def user_tenants(
    session: AsyncSession, user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID | None]:
    """The tenant of each user that exists (None: a user of no tenant; absent: no such user)."""
    return await _tenants_of(session, User, user_ids)


async def active_user_tenants(
    session: AsyncSession, user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID | None]:
    """As `user_tenants`, counting only active users: an inactive one can decide nothing."""
    return await _tenants_of(session, User, user_ids, User.is_active.is_(True))


async def run_tenant(session: AsyncSession, run_row_id: uuid.UUID) -> tuple[bool, uuid.UUID | None]:
    """Whether the run row exists, and its tenant."""
    row = (
        await session.execute(
            select(WorkflowRun.tenant_id)
            .where(WorkflowRun.id == run_row_id)
            .with_for_update(read=True, key_share=True)
        )
    ).one_or_none()
    return (row is not None, row.tenant_id if row is not None else None)


async def role_names(
    session: AsyncSession, tenant_id: uuid.UUID | None, names: Collection[str]
) -> set[str]:
    """Which of `names` are roles of the tenant (None: roles of no tenant)."""
    if not names:
        return set()
    owner = Role.tenant_id == tenant_id if tenant_id else Role.tenant_id.is_(None)
    rows = await session.execute(
        select(Role.name)
        .where(owner, Role.name.in_(list(names)))
        .with_for_update(read=True, key_share=True)
    )
    return set(rows.scalars())
