"""The servers a benchmark runs against: a throwaway embedded Postgres and a Temporal dev server."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from persistence.engine import create_engine, session_factory
from persistence.migrate import upgrade_async
from tests.support import free_port
from workers.embedded_postgres import EmbeddedPostgres
from workers.json_converter import DATA_CONVERTER
from workers.temporal_dev import temporal_cli
from workflows import search_attributes


@dataclass
class Stack:
    client: Client
    sessions: async_sessionmaker[AsyncSession]
    deps: Dependencies


@asynccontextmanager
async def bench_stack() -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["META_AGENT_PG_FSYNC"] = "off"
        # The benchmarks' HTTP peer listens on loopback, which agents may not reach by default.
        os.environ.setdefault("API_ALLOWED_HOSTS", "127.0.0.0/8")
        pg = EmbeddedPostgres(Path(tmp) / "pg", port=free_port())
        pg.start()
        try:
            pg.create_database("bench")
            await upgrade_async(pg.url("bench"))
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_cli(),
                search_attributes=list(search_attributes.ALL),
                data_converter=DATA_CONVERTER,
                dev_server_log_level="error",
            )
            engine = create_engine(pg.url("bench"), pool_size=10)
            sessions = session_factory(engine)
            deps = Dependencies(sessions=sessions)
            try:
                yield Stack(env.client, sessions, deps)
            finally:
                await deps.aclose()
                await engine.dispose()
                await env.shutdown()
        finally:
            pg.stop()
