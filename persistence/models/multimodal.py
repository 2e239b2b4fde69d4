"""The model registry of the data model's section 7: vision, audio and sensor models.

A `vision` / `audio` / `sensor` node's `config.modelId` names a row here; its
`api_endpoint` and `settings` are the defaults the node's own config overrides,
so an operator can move every flow to another model server in one place.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from persistence.base import Base, Timestamps, UUIDPrimaryKey, gin_index


class ModelRow(UUIDPrimaryKey, Timestamps):
    """Columns every registry table shares, in the document's words."""

    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    model_type: Mapped[str | None] = mapped_column(String(100), index=True)
    capabilities: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    provider: Mapped[str | None] = mapped_column(String(100), index=True)
    api_endpoint: Mapped[str | None] = mapped_column(String(255))
    container_image: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(50))
    settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    resource_requirements: Mapped[dict[str, Any]] = mapped_column(
        server_default=text("'{}'::jsonb")
    )

    @declared_attr
    def owner_id(cls) -> Mapped[uuid.UUID | None]:
        """The user who registered the model."""
        return mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID | None]:
        """The tenant the model belongs to (None: shared by every tenant)."""
        return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


class VisionModel(ModelRow, Base):
    """A vision model a `vision` node may name."""

    __tablename__ = "vision_models"
    __table_args__ = (
        Index(None, "name", "tenant_id"),
        gin_index("vision_models", "capabilities"),
    )

    input_formats: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    output_formats: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))


class AudioModel(ModelRow, Base):
    """An audio model an `audio` node may name."""

    __tablename__ = "audio_models"
    __table_args__ = (
        Index(None, "name", "tenant_id"),
        gin_index("audio_models", "capabilities"),
        gin_index("audio_models", "supported_languages"),
    )

    supported_languages: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    input_formats: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    output_formats: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))


class SensorModel(ModelRow, Base):
    """A sensor model a `sensor` node may name."""

    __tablename__ = "sensor_models"
    __table_args__ = (
        Index(None, "name", "tenant_id"),
        gin_index("sensor_models", "capabilities"),
        gin_index("sensor_models", "sensor_types"),
        gin_index("sensor_models", "protocols"),
    )

    sensor_types: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    protocols: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    data_formats: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))


#: node type -> the registry table its `config.modelId` points into
MODEL_TABLES: dict[str, type[ModelRow]] = {
    "vision": VisionModel,
    "audio": AudioModel,
    "sensor": SensorModel,
}
