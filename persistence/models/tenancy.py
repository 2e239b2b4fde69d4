"""Tenants and workspaces (reference doc section 2)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base, Timestamps, UUIDPrimaryKey


class Tenant(UUIDPrimaryKey, Timestamps, Base):
    """A tenant: the boundary no run, secret or reviewer crosses."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(50), server_default="active", index=True)
    settings: Mapped[dict[str, Any] | None]
    plan_id: Mapped[uuid.UUID | None]
    # users.tenant_id points back here: the cycle is closed after both tables exist.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL", use_alter=True)
    )


class Workspace(UUIDPrimaryKey, Timestamps, Base):
    """A workspace of a tenant, grouping its flows and runs."""

    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("name", "tenant_id"),)

    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    icon: Mapped[str | None] = mapped_column(String(255))
    settings: Mapped[dict[str, Any] | None]


class WorkspaceMember(Base):
    """Which users belong to which workspaces, and as what."""

    __tablename__ = "workspace_members"
    __table_args__ = (Index(None, "role"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(50), server_default="member")
    joined_at: Mapped[datetime] = mapped_column(server_default=func.now())
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
