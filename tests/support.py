"""Helpers shared by the test modules (not fixtures: those live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def make_tenant(session: AsyncSession, name: str | None = None) -> uuid.UUID:
    """A new tenant's id, in the caller's transaction (rolled back with the test's session)."""
    tenant_id = uuid.uuid4()
    await session.execute(
        text("INSERT INTO tenants (id, name) VALUES (:id, :name)"),
        {"id": tenant_id, "name": name or f"tenant-{tenant_id.hex[:6]}"},
    )
    return tenant_id


async def make_user(
    session: AsyncSession, tenant_id: uuid.UUID | None, username: str | None = None
) -> uuid.UUID:
    """A new user's id, of `tenant_id` (None: of no tenant), in the caller's transaction."""
    user_id = uuid.uuid4()
    await session.execute(
        text("INSERT INTO users (id, username, tenant_id) VALUES (:id, :u, :t)"),
        {"id": user_id, "u": username or f"user-{user_id.hex[:8]}", "t": tenant_id},
    )
    return user_id


async def fetch_one(session: AsyncSession, sql: str, **params: Any) -> dict[str, Any]:
    """The one row `sql` returns, as a dict; none or several fail the test."""
    row = (await session.execute(text(sql), params)).mappings().one()
    return dict(row)


def worker_process(
    database_url: str,
    temporal_address: str,
    task_queue: str,
    *,
    keep_stderr: bool = True,
    **settings: str,
) -> subprocess.Popen[str]:
    """`meta-agent worker` as its own process (as production runs it), on `task_queue`, with
    further settings as environment variables. With `keep_stderr` its log is piped for the
    test to read (with `communicate`, or it may fill the pipe and stall the worker).
    """
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_TASK_QUEUE": task_queue,
        **settings,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", "--no-register"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL,
        text=True,
    )
