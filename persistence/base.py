"""Declarative base shared by every table.

The naming convention makes constraint and index names deterministic, so
Alembic migrations written today can drop or alter them by name tomorrow.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, MetaData, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The declarative base of every table: deterministic constraint names, and the column types the
    engine's annotations map to (JSONB, timestamps with time zone, UUIDs).
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        datetime: DateTime(timezone=True),
        uuid.UUID: UUID(as_uuid=True),
    }


class UUIDPrimaryKey:
    """UUID key that either side may generate: Python for the ORM, Postgres for raw SQL."""

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )


class CreatedAt:
    """A `created_at` the database sets, so rows written by raw SQL get one too."""

    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)


class Timestamps(CreatedAt):
    """`created_at`, and an `updated_at` the database sets on every ORM update."""

    updated_at: Mapped[datetime] = mapped_column(
        server_default=func.now(), onupdate=func.now(), nullable=False
    )


def status_check(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK that keeps a status column inside its enum (NULL allowed)."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IS NULL OR {column} IN ({quoted})"


def gin_index(table: str, column: str) -> Index:
    """The data model's `gin(col jsonb_path_ops)` index, for containment queries on tags."""
    return Index(
        f"ix_{table}_{column}_gin",
        column,
        postgresql_using="gin",
        postgresql_ops={column: "jsonb_path_ops"},
    )
