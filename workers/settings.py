"""Configuration from the environment, validated once at start.

Every service of the platform configures the worker through the same variables
(CONTRACT section 2), so the names here are part of the interface; a bad value
must stop the process at once with a message that names the variable.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TASK_QUEUE = "meta-agent-flows"
DEFAULT_NAMESPACE = "default"
DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"

Port = Annotated[int, Field(ge=1, le=65535)]


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message is meant for a person."""


class Settings(BaseSettings):
    """The worker's settings; field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql://user:password@host:port/dbname, as libpq writes it.",
    )
    temporal_address: str | None = Field(
        default=None,
        description=f"host:port of the Temporal frontend ({DEFAULT_TEMPORAL_ADDRESS}).",
    )
    temporal_namespace: str = DEFAULT_NAMESPACE
    temporal_task_queue: str = DEFAULT_TASK_QUEUE

    #: Where `meta-agent dev` keeps the embedded Postgres data, the Temporal dev
    #: server's SQLite file and its state file. Project-local so runs survive restarts.
    meta_agent_home: Path = Path(".meta-agent")
    dev_postgres_port: Port = 55432
    dev_temporal_port: Port = 7233
    dev_temporal_ui_port: Port = 8233
    #: The example flows' HTTP peer (0: any free port).
    dev_sample_port: Annotated[int, Field(ge=0, le=65535)] = 8099
    #: Import the example flows and start sample runs when `meta-agent dev` comes up.
    dev_examples: bool = True

    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    max_concurrent_activities: Annotated[int, Field(ge=1, le=10_000)] = 200
    max_concurrent_workflow_tasks: Annotated[int, Field(ge=1, le=10_000)] = 100
    #: Runs kept in worker memory between tasks. Parked runs (waiting on a reviewer for days)
    #: beyond this are evicted and rebuilt from history when they wake: memory stays bounded.
    max_cached_workflows: Annotated[int, Field(ge=0, le=100_000)] = 500
    #: Seconds between the reconciler's sweeps (0 turns it off). A run that ends without
    #: running workflow code (terminated, timed out) has terminal rows within ~2 intervals.
    reconcile_interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 15
    #: How far back the sweep at start-up looks for such runs: covers a worker fleet that
    #: was down (runs terminated meanwhile); Temporal forgets closed runs after its retention.
    reconcile_lookback_hours: Annotated[float, Field(gt=0, le=24 * 366)] = 168

    @field_validator("database_url")
    @classmethod
    def _plain_postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if url.drivername not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError(
                f"scheme must be postgresql:// (got {url.drivername}://); "
                "example: postgresql://user:password@localhost:5432/meta_agent"
            )
        if not url.database:
            raise ValueError("the URL names no database (the path after host:port)")
        return value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be host:port, e.g. localhost:7233 (got {value!r})")
        return value

    @field_validator("temporal_namespace", "temporal_task_queue")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @cached_property
    def dev_state_file(self) -> Path:
        return self.meta_agent_home / "dev-stack.json"

    def require_database_url(self) -> str:
        """The database URL, from DATABASE_URL or from a running `meta-agent dev` stack."""
        if self.database_url:
            return self.database_url
        state = read_dev_state(self.dev_state_file)
        if state and state.get("database_url"):
            return str(state["database_url"])
        raise SettingsError(
            "DATABASE_URL is not set and no `meta-agent dev` stack is running here. "
            "Set DATABASE_URL=postgresql://user:password@host:port/dbname, "
            "or start the embedded stack with `meta-agent dev`."
        )

    def effective_temporal_address(self) -> str:
        """TEMPORAL_ADDRESS when set, else a running dev stack's, else the default."""
        if self.temporal_address:
            return self.temporal_address
        state = read_dev_state(self.dev_state_file)
        if state and state.get("temporal_address"):
            return str(state["temporal_address"])
        return DEFAULT_TEMPORAL_ADDRESS


def read_dev_state(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_settings() -> Settings:
    """Read and validate the environment, turning pydantic's report into one clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
