"""Async engine and sessions from a plain libpq-style `postgresql://` URL.

The platform writes DATABASE_URL as libpq does; SQLAlchemy needs the asyncpg
driver named, and asyncpg spells TLS `ssl`, not `sslmode`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from persistence.ids import require_uuid
from persistence.storable import storable_json


def async_url(database_url: str) -> URL:
    """Translate a libpq URL into SQLAlchemy's asyncpg URL."""
    url = make_url(database_url).set(drivername="postgresql+asyncpg")
    query = dict(url.query)
    if "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
    return url.set(query=query)


def sync_url(database_url: str) -> URL:
    """The same URL for libpq-compatible tools (psql, pg_dump) and log lines."""
    return make_url(database_url).set(drivername="postgresql")


#: How long connecting to the database may take.
CONNECT_SECONDS = 10


class DatabaseConnectError(ConnectionError):
    """A connection to the database could not be made: it is down, starting, or out of reach."""


#: SQLSTATE classes a server answers a connection with when it cannot take one right now.
_NOT_NOW_SQLSTATE_CLASSES = ("08", "57")


def _connect_errors_named(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Connect as the dialect does, but say so when the database cannot be reached: the driver
    raises the socket's own error, indistinguishable from any other network error.
    """
    try:
        return dialect.connect(*cargs, **cparams)
    except (OSError, TimeoutError) as exc:
        raise DatabaseConnectError(f"cannot connect to the database: {exc}") from exc
    except Exception as exc:
        if str(getattr(exc, "sqlstate", "") or "")[:2] not in _NOT_NOW_SQLSTATE_CLASSES:
            raise
        raise DatabaseConnectError(f"the database takes no connection now: {exc}") from exc


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """The async engine of every process, on a libpq `database_url` (translated for asyncpg); JSON
    columns written through `storable_json`.
    """
    engine = create_async_engine(
        async_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout (a round trip per row write): callers are activities,
        # which retry if a pooled connection turns out dead; recycling bounds their age.
        pool_recycle=1800,
        # JSONB columns hold user data: non-ASCII kept as it is, NUL and lone surrogates
        # escaped by the one rule of persistence.storable.
        json_serializer=storable_json,
        # A server that accepts the connection but never answers (cut off, stuck) is given
        # up on after 10 s, not asyncpg's 60: writes waiting for it retry sooner.
        connect_args={"timeout": CONNECT_SECONDS},
    )
    event.listen(engine.sync_engine, "do_connect", _connect_errors_named)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects keep their values after commit, rather than reloading them on the next
    read.
    """
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def tenant_session(
    factory: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID | str
) -> AsyncIterator[AsyncSession]:
    """A transaction in which row-level security shows only `tenant_id`'s rows.

    `set_config(..., true)` scopes the setting to the transaction, so a pooled
    connection never carries one tenant's identity into the next checkout.
    """
    async with factory() as session, session.begin():
        await session.execute(
            text("SELECT set_config('app.tenant_id', :tenant, true)"),
            {"tenant": str(require_uuid(tenant_id, "tenant_id"))},
        )
        yield session


@asynccontextmanager
async def one_off_session(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on an engine of its own (one connection), disposed when it closes: for a
    command that runs once and exits, which must not leave a pool behind.
    """
    engine = create_engine(database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            yield session
    finally:
        await engine.dispose()
