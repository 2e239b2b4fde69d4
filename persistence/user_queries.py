"""Users and the roles they hold, as `meta-agent users` and the dev stack's demo people write them.

Roles belong to a tenant (or to no tenant), and a reviewer's role counts only in the run's
own tenant (`hitl_queries.reviewer_problem`); so a role is always granted in the user's
own tenant, never across one. The CLI connects as the tables' owner, which row-level
security does not restrict: every statement here filters on the tenant itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.ids import parse_uuid
from persistence.models import Role, Tenant, User, UserRole
from persistence.queries import NotFoundError


class UserExistsError(ValueError):
    """A username (or email) is taken: both are unique across every tenant."""


@dataclass(frozen=True)
class UserInfo:
    """A user as `meta-agent users list` shows it, with the names of the roles held."""

    id: uuid.UUID
    username: str
    email: str | None
    tenant_id: uuid.UUID | None
    is_active: bool
    roles: tuple[str, ...]


async def find_user(session: AsyncSession, ref: str, tenant_id: uuid.UUID | None = None) -> User:
    """The user `ref` names (id or username); with `tenant_id`, only one of that tenant.

    A user of another tenant is "no user" in the same words as one that does not exist.
    """
    key = parse_uuid(ref)
    query = select(User).where(User.id == key if key is not None else User.username == ref)
    if tenant_id is not None:
        query = query.where(User.tenant_id == tenant_id)
    user = (await session.execute(query)).scalar_one_or_none()
    if user is None:
        raise NotFoundError(f"no user {ref!r}")
    return user


async def add_user(
    session: AsyncSession,
    username: str,
    tenant_id: uuid.UUID | None,
    *,
    email: str | None = None,
    full_name: str | None = None,
) -> User:
    """A new user of `tenant_id` (or of no tenant); UserExistsError when the name is taken."""
    same = [User.username == username, *([User.email == email] if email else [])]
    taken = await session.scalar(select(User.id).where(or_(*same)).limit(1))
    if taken is not None:
        raise UserExistsError(f"a user named {username!r} (or with that email) already exists")
    user = User(username=username, email=email, full_name=full_name, tenant_id=tenant_id)
    session.add(user)
    await session.flush()
    return user


async def ensure_role(session: AsyncSession, name: str, tenant_id: uuid.UUID | None) -> uuid.UUID:
    """The id of the tenant's role `name`, created when missing (NULL tenant: a shared role).

    `UNIQUE (name, tenant_id)` does not hold for a NULL tenant, so the lookup comes first.
    """
    tenant_match = Role.tenant_id == tenant_id if tenant_id else Role.tenant_id.is_(None)
    found = await session.scalar(select(Role.id).where(Role.name == name, tenant_match).limit(1))
    if found is not None:
        return found
    role = Role(name=name, tenant_id=tenant_id)
    session.add(role)
    await session.flush()
    return role.id


async def grant(session: AsyncSession, user: User, role: str) -> bool:
    """Give `user` the role `role` of their own tenant; True when they did not hold it yet."""
    role_id = await ensure_role(session, role, user.tenant_id)
    added = await session.execute(
        insert(UserRole)
        .values(user_id=user.id, role_id=role_id)
        .on_conflict_do_nothing()
        .returning(UserRole.user_id)
    )
    return added.first() is not None


async def revoke(session: AsyncSession, user: User, role: str) -> bool:
    """Take the role `role` of their tenant from `user`; True when they held it."""
    tenant_match = Role.tenant_id == user.tenant_id if user.tenant_id else Role.tenant_id.is_(None)
    role_ids = select(Role.id).where(Role.name == role, tenant_match).scalar_subquery()
    gone = await session.execute(
        delete(UserRole)
        .where(UserRole.user_id == user.id, UserRole.role_id.in_(role_ids))
        .returning(UserRole.user_id)
    )
    return gone.first() is not None


async def list_users(session: AsyncSession, tenant_id: uuid.UUID | None = None) -> list[UserInfo]:
    """Users by name (of one tenant only, when given), each with the roles they hold."""
    query = select(User).order_by(User.username)
    if tenant_id is not None:
        query = query.where(User.tenant_id == tenant_id)
    users = list((await session.execute(query)).scalars())
    held: dict[uuid.UUID, list[str]] = {}
    if users:
        rows = await session.execute(
            select(UserRole.user_id, Role.name)
            .join(Role, Role.id == UserRole.role_id)
            .where(UserRole.user_id.in_([u.id for u in users]))
            .order_by(Role.name)
        )
        for user_id, name in rows:
            held.setdefault(user_id, []).append(name)
    return [
        UserInfo(u.id, u.username, u.email, u.tenant_id, u.is_active, tuple(held.get(u.id, [])))
        for u in users
    ]


async def role_holders(
    session: AsyncSession, role: str, tenant_id: uuid.UUID | None, limit: int = 3
) -> list[User]:
    """Active users who hold `role` in `tenant_id` (NULL: roles of no tenant), by name.

    The same rule as `hitl_queries.reviewer_problem`, so whoever is named here may decide.
    """
    tenant_match = Role.tenant_id == tenant_id if tenant_id else Role.tenant_id.is_(None)
    query = (
        select(User)
        .join(UserRole, UserRole.user_id == User.id)
        .join(Role, Role.id == UserRole.role_id)
        .where(Role.name == role, tenant_match, User.is_active.is_(True))
        .order_by(User.username)
        .limit(limit)
    )
    if tenant_id is not None:
        query = query.where(User.tenant_id == tenant_id)
    return list((await session.execute(query)).scalars())


async def ensure_tenant(session: AsyncSession, name: str, domain: str) -> uuid.UUID:
    """The id of the tenant with `domain`, created (named `name`) when missing."""
    found = await session.scalar(select(Tenant.id).where(Tenant.domain == domain))
    if found is not None:
        return found
    tenant = Tenant(name=name, domain=domain)
    session.add(tenant)
    await session.flush()
    return tenant.id


async def ensure_user(session: AsyncSession, username: str, tenant_id: uuid.UUID) -> User | None:
    """The tenant's user `username`, created when missing; None when another tenant has it."""
    user = (
        await session.execute(select(User).where(User.username == username))
    ).scalar_one_or_none()
    if user is None:
        return await add_user(session, username, tenant_id)
    return user if user.tenant_id == tenant_id else None
