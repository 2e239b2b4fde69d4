"""Tenant secrets: the values `{{ secrets.NAME }}` resolves to in a tenant's runs.

Only ciphertext is stored (persistence.secret_keys seals each value to its
tenant and name); a run reads the rows of its own tenant and no other.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base, Timestamps, UUIDPrimaryKey


class TenantSecret(UUIDPrimaryKey, Timestamps, Base):
    """One tenant secret, encrypted: only worker activities, holding SECRETS_KEYS, open it."""

    __tablename__ = "tenant_secrets"
    # The unique index also serves "this tenant's secrets", so tenant_id needs no index of its own.
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    #: which SECRETS_KEYS entry encrypted it; rotation re-encrypts rows of the old ids
    key_id: Mapped[str] = mapped_column(String(64))
