"""Session-wide real services: Postgres (embedded, or DATABASE_URL's server) and Temporal.

Each test session gets a fresh database, migrated once; each test gets a
session inside a transaction that is rolled back (savepoints stand in for the
test's own commits), so tests do not see each other's rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from persistence.engine import create_engine
from persistence.migrate import upgrade_async
from tests.support import free_port
from workers.embedded_postgres import EmbeddedPostgres


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
        name = f"t_{uuid.uuid4().hex[:12]}"
        await _admin(self.server_url, f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return str(make_url(self.server_url).set(database=name).render_as_string(False))

    async def drop_all(self) -> None:
        for name in self.created:
            await _admin(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def databases(postgres_server_url: str) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(postgres_server_url)
    yield factory
    await factory.drop_all()


@pytest.fixture(scope="session")
async def database_url(databases: DatabaseFactory) -> str:
    url = await databases.create()
    await upgrade_async(url)
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
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
