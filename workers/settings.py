"""Configuration from the environment, validated once at start.

Every service of the platform configures the worker through the same variables
(CONTRACT section 2), so the names here are part of the interface; a bad value
must stop the process at once with a message that names the variable.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from persistence.secret_keys import SecretKeys
    from workers.payload_codec import EncryptionCodec

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
    #: The dev stack's codec server for the UI, started when PAYLOAD_KEYS is set.
    dev_codec_port: Port = 8081
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
    #: Seconds between syncs of the flows' schedules with Temporal Schedules (0 turns it
    #: off): a flow's new, changed, paused or removed schedule reaches Temporal within one.
    schedule_sync_interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 30

    #: Port of the worker's health endpoint (`/health`: 503 while the database or Temporal
    #: is unreachable; `/health/live`); unset: none. HEALTH_HOST: the address it listens on.
    health_port: Port | None = None
    health_host: str = "127.0.0.1"
    #: Port of the worker's Prometheus endpoint (`/metrics`: the Temporal SDK's metrics and
    #: the engine's); unset: none. METRICS_HOST: the address it listens on.
    metrics_port: Port | None = None
    metrics_host: str = "127.0.0.1"
    #: A file the worker appends its spans to as JSON lines, for `meta-agent traces`
    #: (`meta-agent dev` keeps one in its home); unset: none. Other exporters: OTEL_*.
    traces_file: str | None = None
    #: How long the worker waits out a database outage (seconds): writes meeting one are
    #: retried, and agents wait for it, until it has lasted this long; then they fail.
    database_outage_limit_seconds: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 3600

    # The `docker` agent's walls (activities/docker_policy.py reads the same variables): a
    # flow author is trusted with their own tenant only, not with the worker's engine.
    #: Images a docker node may run: fnmatch patterns, comma-separated (`python:3.12-slim,
    #: registry.local/team/*`). Unset: none may, so an engine is never exposed by accident.
    docker_allowed_images: str = ""
    #: Networks a container may join besides `none`: `bridge` or the engine's network names.
    #: `host` and `container:<id>` are refused here too: they would leave the sandbox.
    docker_allowed_networks: str = ""
    #: Host directories a container may bind-mount (`/abs/dir`, `:rw` to allow writing),
    #: comma-separated. Unset: none, so a flow cannot reach the host's files.
    docker_allowed_mounts: str = ""
    #: Each container's memory (MiB), CPUs and processes unless its node says otherwise; a
    #: node may go up to the caps, so one flow cannot starve the worker's host.
    docker_max_memory_mb: Annotated[int, Field(ge=6, le=4 << 20)] = 4096
    docker_default_memory_mb: Annotated[int, Field(ge=6, le=4 << 20)] = 512
    docker_max_cpus: Annotated[float, Field(ge=0.01, le=1024)] = 4.0
    docker_default_cpus: Annotated[float, Field(ge=0.01, le=1024)] = 1.0
    docker_max_pids: Annotated[int, Field(ge=1, le=4 << 20)] = 4096
    docker_default_pids: Annotated[int, Field(ge=1, le=4 << 20)] = 256

    #: What agents may connect to besides public addresses: host names, addresses and CIDR
    #: blocks, each optionally with `:port` (the platform's own services). Everything else
    #: on loopback, private, link-local, multicast or unspecified addresses is refused.
    api_allowed_hosts: str = ""
    #: Redirects an agent's HTTP call may follow; each hop is checked like the first.
    api_max_redirects: Annotated[int, Field(ge=0, le=20)] = 5

    # The webhook and event API (`meta-agent api`, and `meta-agent dev` beside its worker).
    #: Where it listens; loopback unless the deployment puts it behind its own front.
    api_host: str = "127.0.0.1"
    api_port: Port = 8088
    #: The largest request body it reads (bytes); a larger one is refused (413) unread.
    api_max_body_bytes: Annotated[int, Field(ge=1024, le=64 << 20)] = 1 << 20
    #: Requests it serves at once (uvicorn's limit_concurrency); beyond, it answers 503.
    api_max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 100
    #: The tenant's stored secret that signs its `POST /events/NAME` and `GET /runs/ID`
    #: (`meta-agent secrets set --tenant T META_API_KEY`).
    api_tenant_secret_name: str = "META_API_KEY"
    #: How old (or how far ahead) a tenant-signed request's X-Meta-Timestamp may be.
    api_signature_tolerance_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300

    # Tenant secrets (`{{ secrets.NAME }}`, `meta-agent secrets`).
    #: AES-256-GCM keys of the per-tenant secret store: `keyid:base64-of-32-bytes`, comma-
    #: separated. The first encrypts; the others only decrypt, so a key is rotated by putting
    #: a new one first, running `meta-agent secrets rotate`, then dropping the old one.
    #: Unset: a running `meta-agent dev` stack's key (META_AGENT_HOME/secrets.key), if any.
    secrets_keys: SecretStr | None = None
    #: AES-256-GCM keys that seal every payload sent to Temporal (same form as SECRETS_KEYS:
    #: the first encrypts, all decrypt). Unset: payloads are plain JSON. Every client and
    #: worker of a namespace needs the same keys; `meta-agent codec-server` shows them in the UI.
    payload_keys: SecretStr | None = None
    #: Tenants whose runs may also read the worker's SECRET_<NAME> variables: tenant ids,
    #: comma-separated, or `*` for every tenant. Runs of no tenant always may; by default no
    #: tenant does, so one tenant's flow cannot use a secret meant for the worker.
    secrets_environment_tenants: str = ""

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

    @field_validator("api_allowed_hosts")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        from activities.outbound import OutboundPolicy

        OutboundPolicy.parse(value)
        return value

    @field_validator("docker_allowed_images", "docker_allowed_networks")
    @classmethod
    def _docker_lists(cls, value: str, info: ValidationInfo) -> str:
        from activities.docker_policy import split_list
        from flow_language.config_checks import docker_network_problem

        items = split_list(value)
        if info.field_name == "docker_allowed_networks":
            for problem in filter(None, map(docker_network_problem, items)):
                raise ValueError(problem)
        return ",".join(items)

    @field_validator("docker_allowed_mounts")
    @classmethod
    def _docker_mounts(cls, value: str) -> str:
        from activities.docker_mounts import parse_allowed_mounts

        parse_allowed_mounts(value)  # ValueError naming what is wrong
        return value

    @field_validator("docker_default_memory_mb", "docker_default_cpus", "docker_default_pids")
    @classmethod
    def _docker_default_within_cap(cls, value: float, info: ValidationInfo) -> float:
        cap_field = str(info.field_name).replace("_default_", "_max_")
        cap = info.data.get(cap_field)  # absent when the cap itself was refused
        if cap is not None and value > cap:
            raise ValueError(f"{value:g} is over {cap_field.upper()} ({cap:g})")
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
    def home(self) -> Path:
        """The dev stack's folder: META_AGENT_HOME when set, else `find_home` from here, so
        every command run anywhere in the checkout finds the one stack it started.
        """
        if "meta_agent_home" in self.model_fields_set:
            return self.meta_agent_home
        return find_home(Path.cwd(), self.meta_agent_home.name)

    @cached_property
    def dev_state_file(self) -> Path:
        """Where a running `meta-agent dev` stack records its URLs and ports."""
        return self.home / "dev-stack.json"

    def _from_dev_stack(self, key: str) -> str | None:
        """What a running `meta-agent dev` stack here recorded under `key`, if anything."""
        state = read_dev_state(self.dev_state_file)
        value = state.get(key) if state else None
        return str(value) if value else None

    def require_database_url(self) -> str:
        """The database URL, from DATABASE_URL or from a running `meta-agent dev` stack."""
        url = self.database_url or self._from_dev_stack("database_url")
        if url:
            return url
        raise SettingsError(
            "DATABASE_URL is not set and no `meta-agent dev` stack is running here. "
            "Set DATABASE_URL=postgresql://user:password@host:port/dbname, "
            "or start the embedded stack with `meta-agent dev`."
        )

    def effective_temporal_address(self) -> str:
        """TEMPORAL_ADDRESS when set, else a running dev stack's, else the default."""
        return (
            self.temporal_address
            or self._from_dev_stack("temporal_address")
            or DEFAULT_TEMPORAL_ADDRESS
        )

    @field_validator("secrets_keys", "payload_keys")
    @classmethod
    def _secret_keys(cls, value: SecretStr | None) -> SecretStr | None:
        from persistence.secret_keys import SecretKeys

        if value is None or not value.get_secret_value().strip():
            return None
        SecretKeys.parse(value.get_secret_value())  # SecretKeysError is a ValueError
        return value

    @field_validator("secrets_environment_tenants")
    @classmethod
    def _environment_tenants(cls, value: str) -> str:
        from activities.secrets import parse_environment_tenants

        return ",".join(sorted(parse_environment_tenants(value)))

    def payload_codec(self) -> EncryptionCodec | None:
        """The codec of PAYLOAD_KEYS, or None when payloads travel as plain JSON."""
        if self.payload_keys is None:
            return None
        from persistence.secret_keys import SecretKeys
        from workers.payload_codec import EncryptionCodec

        return EncryptionCodec(SecretKeys.parse(self.payload_keys.get_secret_value()))

    @cached_property
    def dev_secrets_key_file(self) -> Path:
        """The dev stack's secrets key, kept so secrets stored in one session open in the next."""
        return self.home / "secrets.key"

    def secret_keys(self) -> SecretKeys | None:
        """SECRETS_KEYS, else a running `meta-agent dev` stack's key, else None."""
        from persistence.secret_keys import SecretKeys

        if self.secrets_keys is not None:
            return SecretKeys.parse(self.secrets_keys.get_secret_value())
        if read_dev_state(self.dev_state_file) is None:
            return None
        from persistence.secret_keys import SecretKeysError

        try:
            return SecretKeys.parse(self.dev_secrets_key_file.read_text())
        except OSError:
            return None
        except SecretKeysError as exc:
            raise SettingsError(f"{self.dev_secrets_key_file}: {exc}") from None

    def require_secret_keys(self) -> SecretKeys:
        """The keys, for commands that encrypt or decrypt; a clear SettingsError without."""
        keys = self.secret_keys()
        if keys is None:
            raise SettingsError(
                "SECRETS_KEYS is not set and no `meta-agent dev` stack is running here. "
                "Set SECRETS_KEYS=keyid:base64-of-32-bytes (`meta-agent secrets keygen` "
                "makes one), the same value the workers have."
            )
        return keys


#: What marks a project's root folder, where its `.meta-agent` goes.
_PROJECT_MARKERS = ("pyproject.toml", ".git")


def find_home(start: Path, name: str = ".meta-agent") -> Path:
    """The `name` folder of the nearest directory at or above `start` that has one, or else
    of the nearest project root (a `pyproject.toml` or `.git`), or else of `start` itself.

    `meta-agent dev` run in a sub-folder of the checkout thus keeps its data at the root,
    and `meta-agent runs list` run in another sub-folder finds it there.
    """
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / name).is_dir():
            return folder / name
        if any((folder / marker).exists() for marker in _PROJECT_MARKERS):
            return folder / name
    return start / name


def read_dev_state(path: Path) -> dict[str, object] | None:
    """A dev stack's recorded state, or None when there is none (or it cannot be read)."""
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
