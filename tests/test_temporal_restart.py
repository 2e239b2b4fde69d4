"""The Temporal server restarts while runs are mid-flight: the worker reconnects by itself.

The module has a Temporal dev server of its own, its history on disk so that it
survives the restart, as a production cluster's does.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.registry import Dependencies
from tests.flows import FlowWorker
from tests.hitl_support import edge, make_people, node, open_task, review_flow
from tests.http_peer import HttpPeer, Reply
from tests.invariant import assert_queue_tells_the_truth
from tests.support import worker_process
from workers import client as flow_client
from workers.processes import free_port
from workers.settings import Settings
from workers.temporal_client import connect
from workers.temporal_dev import TemporalDevServer
from workers.worker import build_worker

pytestmark = pytest.mark.slow

RUNS = 4


@pytest.fixture(scope="module")
def temporal_server() -> Iterator[TemporalDevServer]:
    """A dev server of the module's own, which its test stops and starts."""
    with tempfile.TemporaryDirectory(prefix="meta-agent-temporal-") as tmp:
        server = TemporalDevServer(home=Path(tmp), port=free_port(), ui_port=free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
async def restartable(
    temporal_server: TemporalDevServer, session_maker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[FlowWorker]:
    """A worker on that server (through the product's own `connect`); the run invariant is
    checked at the end.
    """
    client = await connect(temporal_server.address, "default")
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    deps = Dependencies(sessions=session_maker)
    settings = Settings(temporal_task_queue=queue, reconcile_interval_seconds=1)
    try:
        async with build_worker(client, settings, deps):
            worker = FlowWorker(client, queue, session_maker)
            yield worker
            if temporal_server.pid is None:
                temporal_server.start()
            await assert_queue_tells_the_truth(client, session_maker, queue, worker.started)
    finally:
        await deps.aclose()


def _chain(base: str, run: int) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("first", "api", {"url": f"{base}/first/{run}"}),
            node("second", "api", {"url": f"{base}/second/{run}"}),
            node("done", "end", {"outputs": {"n": "{{ nodes.second.output.json.n }}"}}),
        ],
        "edges": [edge("start", "first"), edge("first", "second"), edge("second", "done")],
    }


async def test_runs_finish_after_the_temporal_server_restarts(
    temporal_server: TemporalDevServer, restartable: FlowWorker, http_peer: HttpPeer
) -> None:
    worker = restartable
    people = await make_people(worker.sessions)
    for n in range(RUNS):
        http_peer.route("GET", f"/first/{n}", Reply(200, {"n": n}, delay=2.0))
        http_peer.route("GET", f"/second/{n}", Reply(200, {"n": n}))
    parked = await worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
    (task,) = await open_task(parked)
    handles = [await worker.start(_chain(http_peer.base, n)) for n in range(RUNS)]
    while len(http_peer.requests) < RUNS:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    # Mid-call: the agents' completions meet the server being down.
    temporal_server.stop()
    await asyncio.sleep(10)
    temporal_server.start()
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 180)
    assert [r.outputs["n"] for r in results] == list(range(RUNS))
    for n in range(RUNS):
        # An activity whose completion the server lost is tried again (at least once, as
        # Temporal promises); the second call never is, since it ran after the restart.
        assert 1 <= len(http_peer.calls("GET", f"/first/{n}")) <= 2
        assert len(http_peer.calls("GET", f"/second/{n}")) == 1
    # The parked run still takes its decision.
    await flow_client.decide(
        worker.client, parked.id, task["id"], {"approved": True}, people.finance, "ok"
    )
    await asyncio.wait_for(parked.result(), 60)
    for h in handles:
        rows = await worker.task_rows(h.id)
        assert {k: v["status"] for k, v in rows.items()} == {
            "start": "completed",
            "first": "completed",
            "second": "completed",
            "done": "completed",
        }


async def test_a_worker_started_before_its_temporal_waits_for_it(
    temporal_server: TemporalDevServer,
    database_url: str,
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    temporal_server.stop()
    queue = f"early-{uuid.uuid4().hex[:8]}"
    worker = worker_process(database_url, temporal_server.address, queue)
    try:
        await asyncio.sleep(5)
        assert worker.poll() is None, "the worker exited instead of waiting for Temporal"
        temporal_server.start()
        client = await connect(temporal_server.address, "default")
        flow = FlowWorker(client, queue, session_maker)
        result, run_id = await asyncio.wait_for(
            flow.run(
                {
                    "nodes": [node("start", "start"), node("done", "end", {"outputs": {"a": 1}})],
                    "edges": [edge("start", "done")],
                }
            ),
            90,
        )
        assert result.outputs == {"a": 1}
        await assert_queue_tells_the_truth(client, session_maker, queue, [run_id])
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        if temporal_server.pid is None:
            temporal_server.start()
    assert "does not answer" in stderr
    assert worker.returncode == 0, stderr[-2000:]
