"""Reads and writes of `tenant_secrets`: always for one named tenant, never across tenants.

The worker connects as the tables' owner, which row-level security does not
restrict, so every statement here filters on the tenant itself. Values go in
and come out only through `SecretKeys`; what is listed is names and dates.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.ids import parse_uuid
from persistence.models import Tenant, TenantSecret
from persistence.queries import NotFoundError
from persistence.secret_keys import Sealed, SecretDecryptError, SecretKeys

#: What `{{ secrets.NAME }}` can name with attribute syntax, and SECRET_<NAME> as a variable.
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class BadSecretNameError(ValueError):
    """A secret name a template could not write as `secrets.NAME`."""

    pass


@dataclass(frozen=True)
class SecretInfo:
    """A stored secret as `meta-agent secrets list` shows it: never its value."""

    name: str
    key_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RotationReport:
    """What a key rotation did: rows re-encrypted, rows now under the current key, and rows no key
    opens.
    """

    reencrypted: int
    current: int
    #: (tenant id, name, why) of rows that could not be opened, and so were left as they are
    failed: list[tuple[uuid.UUID, str, str]]


def check_name(name: str) -> str:
    """`name`, if a template can write it as `secrets.NAME`; refused otherwise, before it is
    stored.
    """
    if not SECRET_NAME.match(name):
        raise BadSecretNameError(
            f"secret name {name!r} must be a letter or '_' followed by letters, digits or '_' "
            "(at most 128), as `{{ secrets.NAME }}` writes it"
        )
    return name


async def find_tenant(session: AsyncSession, ref: str) -> uuid.UUID:
    """The tenant `ref` names: its id, or a domain or name no other tenant has."""
    key = parse_uuid(ref)
    if key is not None:
        found = await session.scalar(select(Tenant.id).where(Tenant.id == key))
        if found is None:
            raise NotFoundError(f"no tenant {ref}")
        return found
    # A domain and a name are both just text: one tenant's name may be another's domain.
    # Only a reference that names exactly one tenant, one way or the other, is taken.
    matching = (
        await session.scalars(
            select(Tenant.id).where((Tenant.domain == ref) | (Tenant.name == ref)).limit(2)
        )
    ).all()
    if not matching:
        raise NotFoundError(f"no tenant with the id, domain or name {ref!r}")
    if len(matching) > 1:
        raise NotFoundError(
            f"more than one tenant has the domain or name {ref!r}; give the tenant's id"
        )
    return matching[0]


async def set_secret(
    session: AsyncSession, keys: SecretKeys, tenant_id: uuid.UUID, name: str, value: str
) -> bool:
    """Store `value` as `name` of the tenant (encrypted); True when it was new."""
    sealed = keys.seal(tenant_id, check_name(name), value)
    columns = {"ciphertext": sealed.ciphertext, "nonce": sealed.nonce, "key_id": sealed.key_id}
    stmt = insert(TenantSecret).values(tenant_id=tenant_id, name=name, **columns)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "name"], set_={**columns, "updated_at": func.now()}
    )
    # xmax is 0 on a row this statement inserted, and set on one it updated.
    created = await session.scalar(stmt.returning(literal_column("xmax = 0", Boolean)))
    return bool(created)


async def list_secrets(session: AsyncSession, tenant_id: uuid.UUID) -> list[SecretInfo]:
    """The tenant's secrets by name, without their values."""
    rows = await session.execute(
        select(
            TenantSecret.name, TenantSecret.key_id, TenantSecret.created_at, TenantSecret.updated_at
        )
        .where(TenantSecret.tenant_id == tenant_id)
        .order_by(TenantSecret.name)
    )
    return [SecretInfo(*row) for row in rows.all()]


async def delete_secret(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> bool:
    """Remove `name` from the tenant; False when it had no such secret."""
    result = await session.execute(
        delete(TenantSecret)
        .where(TenantSecret.tenant_id == tenant_id, TenantSecret.name == name)
        .returning(TenantSecret.id)
    )
    return result.first() is not None


async def sealed_secrets(
    session: AsyncSession, tenant_id: uuid.UUID, names: Iterable[str]
) -> dict[str, Sealed]:
    """The stored (still encrypted) values of those `names` the tenant has."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            TenantSecret.name, TenantSecret.ciphertext, TenantSecret.nonce, TenantSecret.key_id
        ).where(TenantSecret.tenant_id == tenant_id, TenantSecret.name.in_(wanted))
    )
    return {
        name: Sealed(ciphertext=ciphertext, nonce=nonce, key_id=key_id)
        for name, ciphertext, nonce, key_id in rows.all()
    }


async def rotate_secrets(session: AsyncSession, keys: SecretKeys) -> RotationReport:
    """Re-encrypt with the current key every row still under another one.

    Rows are locked as they are read, so a `set` racing the rotation is not
    overwritten with the older value. A row no key opens is reported and left.
    """
    rows = await session.scalars(
        select(TenantSecret)
        .where(TenantSecret.key_id != keys.current_id)
        .order_by(TenantSecret.tenant_id, TenantSecret.name)
        .with_for_update()
    )
    reencrypted, failed = 0, []
    for row in rows:
        stored = Sealed(ciphertext=row.ciphertext, nonce=row.nonce, key_id=row.key_id)
        try:
            value = keys.open(row.tenant_id, row.name, stored)
        except SecretDecryptError as exc:
            failed.append((row.tenant_id, row.name, str(exc)))
            continue
        fresh = keys.seal(row.tenant_id, row.name, value)
        row.ciphertext, row.nonce, row.key_id = fresh.ciphertext, fresh.nonce, fresh.key_id
        reencrypted += 1
    await session.flush()
    current = await session.scalar(
        select(func.count()).where(TenantSecret.key_id == keys.current_id)
    )
    return RotationReport(
        reencrypted=reencrypted, current=int(current or 0) - reencrypted, failed=failed
    )
