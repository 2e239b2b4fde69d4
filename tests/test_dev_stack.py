"""`meta-agent dev` as a person runs it: a real subprocess, real Postgres and Temporal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from temporalio.client import Client
from temporalio.service import RPCError

from persistence.engine import create_engine
from workers.processes import free_port
from workers.temporal_dev import temporal_cli

pytestmark = pytest.mark.slow
READY = "Press Ctrl-C to stop everything."


class DevStack:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.pg_port, self.t_port, self.ui_port = free_port(), free_port(), free_port()
        self.api_port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 90, **extra_env: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
        env.update(extra_env)
        env.update(
            META_AGENT_HOME=str(self.home),
            DEV_POSTGRES_PORT=str(self.pg_port),
            DEV_TEMPORAL_PORT=str(self.t_port),
            DEV_TEMPORAL_UI_PORT=str(self.ui_port),
            API_PORT=str(self.api_port),
            PYTHONUNBUFFERED="1",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "dev"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            self.output.append(line)
            if READY in line:
                return
        raise AssertionError("dev stack did not come up:\n" + "".join(self.output))

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/meta_agent"

    def children(self) -> list[psutil.Process]:
        """Processes started for this stack (their command lines name its home folder)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(self.home) in cmdline:
                found.append(proc)
        return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DevStack]:
    s = DevStack(tmp_path / "home")
    yield s
    if s.proc and s.proc.poll() is None:
        s.proc.kill()
    for child in s.children():
        child.kill()


def _sql(url: str, sql: str) -> list[object]:
    """Run one statement on the stack's database (sync tests: no event loop is running)."""

    async def go() -> list[object]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql))
                return list(result.scalars()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_dev_comes_up_serves_the_ui_and_stops_cleanly(stack: DevStack) -> None:
    started = time.monotonic()
    stack.start()
    print(f"dev stack up in {time.monotonic() - started:.1f}s")

    ui = httpx.get(f"http://localhost:{stack.ui_port}/", timeout=10)
    assert ui.status_code == 200

    # The demo reviewers of the README's walk-through, in the banner and in the database.
    banner = "".join(stack.output)
    assert "demo tenant  demo (" in banner
    assert "role finance" in banner
    # The webhook and event API, named in the banner, answers (in JSON, refusing an unknown hook).
    api = f"http://127.0.0.1:{stack.api_port}"
    assert f"hooks API    {api} " in banner
    assert httpx.get(f"{api}/health/live", timeout=10).json() == {"status": "ok"}
    unknown = httpx.post(f"{api}/hooks/wh_{'x' * 30}", json={}, timeout=10)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no such hook"}
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
    users = subprocess.run(
        [sys.executable, "-m", "workers.cli", "users", "list", "--tenant", "demo"],
        env={**env, "META_AGENT_HOME": str(stack.home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert users.returncode == 0, users.stderr
    held = {line.split()[0]: line.split()[3:] for line in users.stdout.splitlines()[1:]}
    assert held["reviewer"] == ["finance"]
    assert held["lead"] == ["finance-lead"]

    listed = subprocess.run(
        [
            temporal_cli(),
            "operator",
            "search-attribute",
            "list",
            "--address",
            f"127.0.0.1:{stack.t_port}",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    contract = ("TenantId", "WorkspaceId", "FlowId", "TriggeredBy", "FlowVersion", "FlowStatus")
    for name in (*contract, "FlowName"):
        assert f'"{name}"' in listed

    tables = set(
        _sql(stack.database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    )
    assert {"workflow_runs", "task_instances", "hitl_tasks", "alembic_version"} <= tables
    assert len(stack.children()) >= 2  # postgres and temporal

    assert stack.proc is not None
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while stack.children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.children() == []
    assert not (stack.home / "dev-stack.json").exists()


def test_a_killed_dev_stack_takes_its_servers_along_and_keeps_its_data(
    stack: DevStack,
) -> None:
    stack.start()
    _sql(stack.database_url, "INSERT INTO tenants (name) VALUES ('kept between runs')")

    assert stack.proc is not None
    stack.proc.kill()  # no cleanup code runs: the children must notice by themselves
    stack.proc.wait(10)
    deadline = time.monotonic() + 20
    while stack.children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.children() == []

    stack.output.clear()
    stack.start()  # same home: a stale state file and postmaster.pid must not stop it
    names = _sql(stack.database_url, "SELECT name FROM tenants")
    assert "kept between runs" in names
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(timeout=60) == 0


def test_the_dev_stack_syncs_the_flows_schedules(stack: DevStack) -> None:
    # The suite turns the sync off for its shared database; this stack has its own.
    stack.start(SCHEDULE_SYNC_INTERVAL_SECONDS="1", DEV_EXAMPLES="false")
    assert "schedules    flows' crons synced every 1s" in "".join(stack.output)
    flow_id = str(uuid.uuid4())
    _sql(
        stack.database_url,
        "INSERT INTO workflows (id, name, definition, status, schedule_cron) VALUES "
        f"('{flow_id}', 'nightly', '{{}}'::jsonb, 'published', '0 3 * * *')",
    )

    async def note() -> str:
        client = await Client.connect(f"localhost:{stack.t_port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                described = await client.get_schedule_handle(f"flow-{flow_id}").describe()
                return described.schedule.state.note or ""
            except RPCError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    assert "runs flow 'nightly'" in asyncio.run(note())
