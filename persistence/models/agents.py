"""The agent registry (reference doc section 5).

A node's `data.agentId` names a row here; its `configuration` is the base the
node's `data.config` overrides and its schemas are enforced on the node.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base, CreatedAt, Timestamps, UUIDPrimaryKey, gin_index, status_check
from persistence.statuses import AGENT_TYPES, AGENT_VERSION_STATUSES, AGENT_VISIBILITIES


class Agent(UUIDPrimaryKey, Timestamps, Base):
    """A registered agent: the base configuration and schemas of the nodes that name it."""

    __tablename__ = "agents"
    __table_args__ = (
        Index(None, "created_at"),
        Index(None, "name", "tenant_id"),
        gin_index("agents", "tags"),
        gin_index("agents", "modalities"),
        CheckConstraint(status_check("type", AGENT_TYPES), name="type"),
        CheckConstraint(status_check("visibility", AGENT_VISIBILITIES), name="visibility"),
    )

    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(100), index=True)
    configuration: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    version: Mapped[str | None] = mapped_column(String(50))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    visibility: Mapped[str] = mapped_column(String(50), server_default="private", index=True)
    tags: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    documentation: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(String(100))
    repository_url: Mapped[str | None] = mapped_column(String(255))
    input_schema: Mapped[dict[str, Any] | None]
    output_schema: Mapped[dict[str, Any] | None]
    modalities: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))


class AgentVersion(UUIDPrimaryKey, CreatedAt, Base):
    """A version of an agent's configuration and schemas, kept for the registry's history."""

    __tablename__ = "agent_versions"
    __table_args__ = (
        Index(None, "created_at"),
        UniqueConstraint("agent_id", "version"),
        CheckConstraint(status_check("status", AGENT_VERSION_STATUSES), name="status"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(50))
    configuration: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    changelog: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(50), server_default="published", index=True)
    input_schema: Mapped[dict[str, Any] | None]
    output_schema: Mapped[dict[str, Any] | None]


class AgentDependency(Base):
    """An agent's need of another agent, model or library (the registry's record; the engine does
    not resolve it).
    """

    __tablename__ = "agent_dependencies"
    __table_args__ = (
        CheckConstraint(
            status_check("dependency_type", ("agent", "model", "library")), name="dependency_type"
        ),
    )

    dependent_agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    dependency_agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    dependency_version: Mapped[str | None] = mapped_column(String(50))
    dependency_type: Mapped[str] = mapped_column(String(50), server_default="agent")
    optional: Mapped[bool] = mapped_column(server_default="false")
