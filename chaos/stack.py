"""The throwaway stack the chaos run faults: an embedded Postgres, a Temporal dev server with
its history on disk (so a restart loses nothing, as a production cluster's would), the HTTP
peer and the worker processes. Everything it starts is stopped on exit, error or Ctrl-C;
every child also dies with the driver if the driver is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from benchmarks.support import Reviewer, make_reviewer
from benchmarks.worker_processes import peer_process, worker_env
from chaos.log import Timeline
from chaos.pool import WorkerPool
from persistence.engine import create_engine, session_factory
from persistence.migrate import upgrade_async
from workers.embedded_postgres import EmbeddedPostgres
from workers.processes import free_port
from workers.temporal_client import connect, ensure_search_attributes
from workers.temporal_dev import TemporalDevServer

DATABASE = "chaos"


@dataclass
class Stack:
    """What the workload runs on and the faults act on."""

    postgres: EmbeddedPostgres
    temporal: TemporalDevServer
    workers: WorkerPool
    client: Client
    sessions: async_sessionmaker[AsyncSession]
    reviewer: Reviewer
    peer_url: str
    task_queue: str
    home: Path
    #: Leave `home` (logs, data) in place on exit, for a post-mortem.
    keep: bool = False

    def postgres_up(self) -> bool:
        """Whether the Postgres server process is running (the faults stop and start it)."""
        return self.postgres.pid is not None

    def temporal_up(self) -> bool:
        """Whether the Temporal server process is running."""
        return self.temporal.pid is not None


def _http_peer(home: Path, seed: int) -> AbstractContextManager[str]:
    return peer_process([sys.executable, "-m", "chaos.peer", "--seed", str(seed)], home)


@asynccontextmanager
async def chaos_stack(
    workers: int, seed: int, timeline: Timeline, keep: bool = False
) -> AsyncIterator[Stack]:
    """Start the stack, yield it with every worker polling, stop all of it on the way out.

    `keep` (or `Stack.keep` set meanwhile) leaves the temporary folder (logs, data) in place.
    """
    # Fast shutdowns (SIGINT) checkpoint first, so fsync only matters for a machine crash,
    # which this throwaway stack does not survive anyway.
    os.environ["META_AGENT_PG_FSYNC"] = "off"
    home = Path(tempfile.mkdtemp(prefix="meta-agent-chaos-"))
    timeline.say(f"stack in {home}")
    kept = [keep]
    async with AsyncExitStack() as stack:
        stack.callback(_remove_unless_kept, home, kept)
        postgres = EmbeddedPostgres(home / "pg", port=free_port())
        postgres.start()
        stack.callback(postgres.stop)
        postgres.create_database(DATABASE)
        url = postgres.url(DATABASE)
        await upgrade_async(url)
        timeline.say(f"postgres up on port {postgres.port}, migrated")
        temporal = TemporalDevServer(home=home / "temporal", port=free_port(), ui_port=free_port())
        temporal.start()
        stack.callback(temporal.stop)
        timeline.say(f"temporal up on {temporal.address}")
        client = await connect(temporal.address, "default")
        await ensure_search_attributes(client)
        engine = create_engine(url, pool_size=5)
        stack.push_async_callback(engine.dispose)
        sessions = session_factory(engine)
        reviewer = await make_reviewer(sessions)
        peer_url = stack.enter_context(_http_peer(home, seed))
        queue = f"chaos-{uuid.uuid4().hex[:8]}"
        env = worker_env(temporal.address, url, queue, home)
        pool = WorkerPool(workers, env, home / "workers", timeline)
        stack.callback(pool.stop)
        pool.start()
        started = time.monotonic()
        await pool.wait_ready()
        timeline.say(f"{workers} workers polling {queue} ({time.monotonic() - started:.0f}s)")
        chaos = Stack(
            postgres, temporal, pool, client, sessions, reviewer, peer_url, queue, home, keep
        )
        try:
            yield chaos
        finally:
            kept[0] = chaos.keep


def _remove_unless_kept(home: Path, kept: list[bool]) -> None:
    if not kept[0]:
        shutil.rmtree(home, ignore_errors=True)
