"""Postgres stops while runs are mid-flight: no run fails, no row is lost or doubled.

The module has a Postgres of its own (the session's is shared by every test), stopped
and started again by the tests; the worker runs in this process on its own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from persistence import secret_queries
from persistence.engine import create_engine, session_factory
from persistence.health import DatabaseHealth
from persistence.migrate import upgrade_async
from persistence.secret_keys import SecretKeys
from tests.flows import FlowWorker
from tests.hitl_support import People, edge, make_people, node, open_task, review_flow
from tests.http_peer import HttpPeer, Reply
from tests.invariant import assert_queue_tells_the_truth
from tests.support import worker_process
from workers import client as flow_client
from workers.embedded_postgres import EmbeddedPostgres
from workers.health_server import watching_health
from workers.processes import free_port
from workers.settings import Settings
from workers.worker import build_worker

pytestmark = pytest.mark.slow

RUNS = 5
HISTORIES = Path(__file__).parent / "histories"


@dataclass
class Outage:
    """A Postgres the test may stop and start, the worker's sessions on it, and the worker's
    health endpoint.
    """

    server: EmbeddedPostgres
    sessions: async_sessionmaker[AsyncSession]
    health_url: str

    async def health(self) -> tuple[int, dict[str, Any]]:
        """What the worker's health endpoint answers now."""
        return await _health(self.health_url)

    def stop(self) -> None:
        """Stop the server at once (Postgres' fast shutdown: clients are cut off)."""
        self.server.stop()

    def start(self) -> None:
        """Start it again on the same port and data."""
        self.server.start()


async def _health(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
    return answer.status_code, answer.json()


#: The shortest flow: a start and an end.
_TINY = {
    "nodes": [node("start", "start"), node("done", "end", {"outputs": {"a": 1}})],
    "edges": [edge("start", "done")],
}


@pytest.fixture(scope="module")
def outage_server() -> Iterator[EmbeddedPostgres]:
    """A Postgres of the module's own, which its tests stop and start."""
    with tempfile.TemporaryDirectory(prefix="meta-agent-outage-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", port=free_port())
        pg.start()
        pg.create_database("outage")
        try:
            yield pg
        finally:
            pg.stop()


@pytest.fixture
async def outage(
    outage_server: EmbeddedPostgres,
    temporal_env: WorkflowEnvironment,
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Outage, FlowWorker]]:
    """A worker whose database the test may stop; the run invariant is checked at the end.

    Parametrized indirectly, the parameter is the worker's DATABASE_OUTAGE_LIMIT_SECONDS.
    """
    limit = float(getattr(request, "param", 3600.0))
    if outage_server.pid is None:
        outage_server.start()
    url = outage_server.url("outage")
    await upgrade_async(url)
    engine = create_engine(url, pool_size=5)
    sessions = session_factory(engine)
    queue = f"outage-{uuid.uuid4().hex[:8]}"
    settings = Settings(temporal_task_queue=queue, reconcile_interval_seconds=1)
    deps = Dependencies(sessions=sessions, health=DatabaseHealth(outage_limit_seconds=limit))
    port = free_port()
    try:
        async with (
            build_worker(temporal_env.client, settings, deps),
            watching_health(deps.health, sessions, temporal_env.client, port),
        ):
            worker = FlowWorker(temporal_env.client, queue, sessions)
            yield Outage(outage_server, sessions, f"http://127.0.0.1:{port}/health"), worker
            if outage_server.pid is None:
                outage_server.start()
            await assert_queue_tells_the_truth(temporal_env.client, sessions, queue, worker.started)
    finally:
        await deps.aclose()
        await engine.dispose()


def _two_calls(base: str, run: int) -> dict[str, Any]:
    # The first run's second call reads a stored secret: its activity needs the database
    # before it can begin, and begins during the outage.
    second: dict[str, Any] = {"url": f"{base}/second/{run}"}
    if run == 0:
        second["headers"] = {"X-Token": "{{ secrets.TOKEN }}"}
    return {
        "nodes": [
            node("start", "start"),
            node("first", "api", {"url": f"{base}/first/{run}"}),
            node("second", "api", second),
            node("done", "end", {"outputs": {"n": "{{ nodes.second.output.json.n }}"}}),
        ],
        "edges": [edge("start", "first"), edge("first", "second"), edge("second", "done")],
    }


async def _wait_until(check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def _row_counts(sessions: async_sessionmaker[AsyncSession], workflow_id: str) -> list[Any]:
    async with sessions() as s:
        return list(
            (
                await s.execute(
                    text(
                        "SELECT t.orchestrator_task_id, t.status, count(*) FROM task_instances t"
                        " JOIN workflow_runs r ON r.id = t.workflow_run_id"
                        " WHERE r.orchestrator_run_id = :o GROUP BY 1, 2 ORDER BY 1"
                    ),
                    {"o": workflow_id},
                )
            ).all()
        )


async def _outage_while_runs_are_mid_flight(
    outage: tuple[Outage, FlowWorker],
    http_peer: HttpPeer,
    seconds: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db, worker = outage
    people: People = await make_people(db.sessions)
    async with db.sessions() as s, s.begin():
        keys = SecretKeys.parse(os.environ["SECRETS_KEYS"])
        await secret_queries.set_secret(s, keys, uuid.UUID(people.tenant), "TOKEN", "t0ken")
    for n in range(RUNS):
        http_peer.route("GET", f"/first/{n}", Reply(200, {"n": n}, delay=1.0))
        http_peer.route("GET", f"/second/{n}", Reply(200, {"n": n}, delay=0.2))
    # A review parked before the outage, decided during it; another opened during it.
    parked = await worker.start(review_flow(), {"what": "before"}, tenant_id=people.tenant)
    (task,) = await open_task(parked)
    handles = [
        await worker.start(_two_calls(http_peer.base, n), tenant_id=people.tenant)
        for n in range(RUNS)
    ]
    # Agents in flight: their end rows meet the outage.
    await _wait_until(lambda: len(http_peer.requests) >= RUNS, 30)
    caplog.clear()
    db.stop()
    began = time.monotonic()
    opened = await worker.start(review_flow(), {"what": "during"}, tenant_id=people.tenant)
    deciding = asyncio.create_task(
        flow_client.decide(
            worker.client, parked.id, task["id"], {"approved": True}, people.finance, "ok"
        )
    )
    await asyncio.sleep(min(seconds, 10))
    status, body = await db.health()
    assert (status, body["database"]["status"]) == (503, "unreachable"), body
    assert body["database"]["seconds"] > 0
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))
    assert not deciding.done(), "a decision was answered while the database was down"
    db.start()
    decision = await asyncio.wait_for(deciding, timeout=120)
    assert decision["decided_by"] == people.finance
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 120)
    assert [r.outputs["n"] for r in results] == list(range(RUNS))
    await asyncio.wait_for(parked.result(), 60)
    # Each call was made once: an agent's work is not repeated because its row waited.
    for n in range(RUNS):
        assert len(http_peer.calls("GET", f"/first/{n}")) == 1
        assert len(http_peer.calls("GET", f"/second/{n}")) == 1
    assert http_peer.calls("GET", "/second/0")[0].headers.get("X-Token") == "t0ken"
    # ... which waited for the database (a timer) rather than spend its attempts.
    history = await handles[0].fetch_history()
    assert any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in history.events)
    recording = HISTORIES / "outage-wait-2026-11-27.json"
    if os.environ.get("META_AGENT_RECORD_HISTORIES") == "1" and not recording.exists():
        recording.write_text(history.to_json())  # replayed by tests/test_replay.py
    for h in handles:
        assert await _row_counts(db.sessions, h.id) == [
            ("done", "completed", 1),
            ("first", "completed", 1),
            ("second", "completed", 1),
            ("start", "completed", 1),
        ]
    (review,) = await open_task(opened)
    async with db.sessions() as s:
        decisions = (
            await s.execute(
                text("SELECT count(*) FROM hitl_decisions WHERE hitl_task_id = :t"),
                {"t": task["id"]},
            )
        ).scalar_one()
    assert decisions == 1
    await flow_client.decide(
        worker.client, opened.id, review["id"], {"approved": False}, people.finance, "no"
    )
    await asyncio.wait_for(opened.result(), 60)
    status, body = await db.health()
    assert (status, body["database"], body["temporal"]) == (
        200,
        {"status": "reachable"},
        {"status": "reachable"},
    )


@pytest.mark.parametrize("seconds", [20, 180])
async def test_an_outage_fails_no_run_and_loses_or_doubles_no_row(
    outage: tuple[Outage, FlowWorker],
    http_peer: HttpPeer,
    seconds: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        await _outage_while_runs_are_mid_flight(outage, http_peer, seconds, caplog)
    # One line when the database is lost and one when it is back, not one per retry.
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("database unreachable" in m for m in said) == 1, said
    assert sum("database reachable again" in m for m in said) == 1, said
    assert not [m for m in said if "Completing activity as failed" in m], said


async def test_a_worker_started_while_its_database_is_down_waits_and_says_so(
    outage_server: EmbeddedPostgres, temporal_env: WorkflowEnvironment
) -> None:
    if outage_server.pid is None:
        outage_server.start()
    await upgrade_async(outage_server.url("outage"))
    outage_server.stop()
    port, queue = free_port(), f"outage-{uuid.uuid4().hex[:8]}"
    worker = worker_process(
        outage_server.url("outage"),
        temporal_env.client.service_client.config.target_host,
        queue,
        HEALTH_PORT=str(port),
    )
    url = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = await _health(url)
                if body["database"]["status"] == "unreachable":
                    break
            except httpx.TransportError:
                pass  # not serving yet
            assert worker.poll() is None, "the worker exited while the database was down"
            assert time.monotonic() < deadline, "the health endpoint never said unreachable"
            await asyncio.sleep(0.3)
        assert status == 503
        outage_server.start()
        deadline = time.monotonic() + 30
        while (await _health(url))[0] != 200:
            assert time.monotonic() < deadline, "the health endpoint never recovered"
            await asyncio.sleep(0.3)
        engine = create_engine(outage_server.url("outage"), pool_size=1)
        try:
            flow = FlowWorker(temporal_env.client, queue, session_factory(engine))
            result, run_id = await asyncio.wait_for(
                flow.run(
                    {
                        "nodes": [
                            node("start", "start"),
                            node("done", "end", {"outputs": {"a": 1}}),
                        ],
                        "edges": [edge("start", "done")],
                    }
                ),
                60,
            )
            assert result.outputs == {"a": 1}
            assert (await flow.run_row(run_id))["status"] == "completed"
        finally:
            await engine.dispose()
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert "database unreachable" in stderr
    assert "database reachable again" in stderr
    assert worker.returncode == 0, stderr[-2000:]


def _signal_server(server: EmbeddedPostgres, sig: int) -> None:
    """`sig` to the postmaster and every backend: SIGSTOP makes the database hang as one cut
    off without a reset does (connections stay open, nothing answers).
    """
    assert server.pid is not None
    root = psutil.Process(server.pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


async def test_a_database_that_hangs_delays_runs_without_repeating_their_calls(
    outage: tuple[Outage, FlowWorker], http_peer: HttpPeer
) -> None:
    db, worker = outage
    for n in range(RUNS):
        http_peer.route("GET", f"/first/{n}", Reply(200, {"n": n}, delay=1.0))
        http_peer.route("GET", f"/second/{n}", Reply(200, {"n": n}))
    handles = [await worker.start(_two_calls(http_peer.base, n)) for n in range(1, RUNS)]
    await _wait_until(lambda: len(http_peer.requests) >= RUNS - 1, 30)
    _signal_server(db.server, signal.SIGSTOP)
    try:
        # Past the agents' heartbeat timeout (10 s) and their row writes' (10 s).
        await asyncio.sleep(15)
        status, body = await db.health()
        assert (status, body["database"]["status"]) == (503, "unreachable"), body
        await asyncio.sleep(10)
    finally:
        _signal_server(db.server, signal.SIGCONT)
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 120)
    assert [r.outputs["n"] for r in results] == list(range(1, RUNS))
    for n in range(1, RUNS):
        assert len(http_peer.calls("GET", f"/first/{n}")) == 1, f"run {n} called twice"
        assert len(http_peer.calls("GET", f"/second/{n}")) == 1
    for h in handles:
        assert [row[:2] for row in await _row_counts(db.sessions, h.id)] == [
            ("done", "completed"),
            ("first", "completed"),
            ("second", "completed"),
            ("start", "completed"),
        ]


async def test_a_cancellation_while_the_last_record_waits_for_the_database_loses_no_row(
    outage: tuple[Outage, FlowWorker], http_peer: HttpPeer
) -> None:
    db, worker = outage
    http_peer.route("GET", "/a0", Reply(200, {"n": 0}, delay=1.0))
    http_peer.route("GET", "/a1", Reply(200, {"n": 1}, delay=0.5))
    definition = {
        "nodes": [
            node("start", "start"),
            node("a0", "api", {"url": f"{http_peer.base}/a0"}),
            node("w", "wait", {"seconds": 3}),
            node("a1", "api", {"url": f"{http_peer.base}/a1"}),
            node("done", "end", {"outputs": {"got": "{{ nodes.a1.output.json.n }}"}}),
        ],
        "edges": [edge("start", "a0"), edge("a0", "w"), edge("w", "a1"), edge("a1", "done")],
    }
    handle = await worker.start(definition)
    await _wait_until(lambda: len(http_peer.requests) >= 1, 30)
    db.stop()
    try:
        # The rest of the flow runs meanwhile; its last record waits for the database.
        await _wait_until(lambda: len(http_peer.calls("GET", "/a1")) == 1, 30)
        await asyncio.sleep(3)
        await handle.cancel()
        await asyncio.sleep(3)
    finally:
        db.start()
    result = await asyncio.wait_for(handle.result(), 120)
    assert result.outputs == {"got": 1}
    assert [row[:2] for row in await _row_counts(db.sessions, handle.id)] == [
        ("a0", "completed"),
        ("a1", "completed"),
        ("done", "completed"),
        ("start", "completed"),
        ("w", "completed"),
    ]
    row = await worker.run_row(handle.id)
    assert (row["status"], row["outputs"], row["error"]) == ("completed", {"got": 1}, None)


@pytest.mark.parametrize("outage", [3.0], indirect=True)
async def test_an_outage_longer_than_the_limit_fails_runs_clearly_and_rows_close_after(
    outage: tuple[Outage, FlowWorker], http_peer: HttpPeer
) -> None:
    db, worker = outage
    for n in range(3):
        http_peer.route("GET", f"/first/{n}", Reply(200, {"n": n}, delay=0.5))
        http_peer.route("GET", f"/second/{n}", Reply(200, {"n": n}))
    handles = [await worker.start(_two_calls(http_peer.base, n)) for n in range(1, 3)]
    await _wait_until(lambda: len(http_peer.requests) >= 2, 30)
    db.stop()
    try:
        for handle in handles:
            with pytest.raises(WorkflowFailureError) as failed:
                await asyncio.wait_for(handle.result(), 60)
            assert "unreachable for over 3 s" in str(failed.value.cause)
    finally:
        db.start()
    # Back, the database gets their ends from the reconciler.
    for handle in handles:
        deadline = time.monotonic() + 30
        while (row := await worker.run_row(handle.id))["status"] == "running":
            assert time.monotonic() < deadline, "the reconciler did not close the run's row"
            await asyncio.sleep(0.5)
        assert row["status"] == "failed"
        assert "unreachable for over 3 s" in row["error"]
