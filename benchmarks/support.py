"""What the benchmarks run against and build their flows with (nothing from `tests/`).

A throwaway embedded Postgres and a Temporal dev server, flow-building shorthands, and one
reviewer for HITL runs. Runs are started, watched and decided through `workers.client`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from flow_language.drawing import edge, node
from persistence.engine import create_engine, session_factory
from persistence.migrate import upgrade_async
from workers.client import get_status
from workers.embedded_postgres import EmbeddedPostgres
from workers.json_converter import DATA_CONVERTER
from workers.processes import free_port
from workers.temporal_client import connect, ensure_search_attributes
from workers.temporal_dev import temporal_cli
from workflows import search_attributes


@dataclass
class Stack:
    """What a benchmark runs against: Temporal, Postgres and the activities' dependencies."""

    client: Client
    sessions: async_sessionmaker[AsyncSession]
    deps: Dependencies
    #: Where worker processes started by the benchmarks find the same servers.
    database_url: str = ""
    temporal_address: str = ""


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point this process's file descriptor 1 at stderr meanwhile: what it spawns prints there."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@asynccontextmanager
async def bench_stack(
    temporal_address: str | None = None, database_url: str | None = None
) -> AsyncIterator[Stack]:
    """A throwaway embedded Postgres (fsync off) and Temporal dev server, both gone on exit.

    Given both an address and a URL, uses those servers instead (migrated, search attributes
    registered), so the suite can measure against a production-like stack.
    """
    # The benchmarks' HTTP peer listens on loopback, which agents may not reach by default.
    os.environ.setdefault("API_ALLOWED_HOSTS", "127.0.0.0/8")
    if temporal_address and database_url:
        async with _existing_stack(temporal_address, database_url) as stack:
            yield stack
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["META_AGENT_PG_FSYNC"] = "off"
        pg = EmbeddedPostgres(Path(tmp) / "pg", port=free_port())
        pg.start()
        try:
            pg.create_database("bench")
            await upgrade_async(pg.url("bench"))
            with _stdout_to_stderr():  # its banner is not the table's: stdout is the table
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
                yield Stack(
                    env.client,
                    sessions,
                    deps,
                    pg.url("bench"),
                    env.client.service_client.config.target_host,
                )
            finally:
                await deps.aclose()
                await engine.dispose()
                await env.shutdown()
        finally:
            pg.stop()


@asynccontextmanager
async def _existing_stack(temporal_address: str, database_url: str) -> AsyncIterator[Stack]:
    await upgrade_async(database_url)
    client = await connect(temporal_address, "default")
    await ensure_search_attributes(client)
    engine = create_engine(database_url, pool_size=10)
    sessions = session_factory(engine)
    deps = Dependencies(sessions=sessions)
    try:
        yield Stack(client, sessions, deps, database_url, temporal_address)
    finally:
        await deps.aclose()
        await engine.dispose()


#: An approval by the `finance` role, then one node per outcome.
REVIEW_FLOW = {
    "nodes": [
        node("start", "start"),
        node(
            "review",
            "hitl",
            {
                "title": "Review {{ input.what }}",
                "assigneeRole": "finance",
                "decisionType": "approval",
            },
        ),
        node("on_approved", "transform", {"output": "{{ nodes.review.output }}"}),
        node("on_rejected", "transform", {"output": "{{ nodes.review.output }}"}),
    ],
    "edges": [
        edge("start", "review"),
        edge("review", "on_approved", "approved"),
        edge("review", "on_rejected", "rejected"),
    ],
}


@dataclass(frozen=True)
class Reviewer:
    """The tenant to run REVIEW_FLOW under and the user who may decide its tasks, as ids."""

    tenant: str
    user: str


async def make_reviewer(sessions: async_sessionmaker[AsyncSession]) -> Reviewer:
    """A tenant with one user holding the `finance` role, who may decide REVIEW_FLOW's tasks."""
    tenant, user, role = (str(uuid.uuid4()) for _ in range(3))
    async with sessions() as s, s.begin():
        await s.execute(
            text("INSERT INTO tenants (id, name) VALUES (:i, :n)"), {"i": tenant, "n": "bench"}
        )
        await s.execute(
            text("INSERT INTO users (id, username, tenant_id) VALUES (:i, :n, :t)"),
            {"i": user, "n": f"reviewer-{user[:6]}", "t": tenant},
        )
        await s.execute(
            text("INSERT INTO roles (id, name, tenant_id) VALUES (:i, 'finance', :t)"),
            {"i": role, "t": tenant},
        )
        await s.execute(
            text("INSERT INTO user_roles (user_id, role_id) VALUES (:u, :r)"),
            {"u": user, "r": role},
        )
    return Reviewer(tenant, user)


async def open_task(client: Client, run_id: str) -> dict[str, Any]:
    """The run's first open HITL task, once it has one."""
    for _ in range(600):
        tasks = (await get_status(client, run_id))["open_hitl_tasks"]
        if tasks:
            return dict(tasks[0])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"run {run_id} opened no HITL task")
