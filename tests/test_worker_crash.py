"""A worker killed with SIGKILL mid-run: a new worker finishes the run, rows stay exact."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hitl_support import People, decide, inbox, open_task, review_flow
from tests.http_peer import HttpPeer, Reply
from tests.invariant import assert_run_tells_the_truth
from tests.support import worker_process
from workers.client import start_run
from workflows.contract import FlowRunInput

ITEMS = 12
Worker = subprocess.Popen[str]


@asynccontextmanager
async def _worker(database_url: str, address: str, queue: str) -> AsyncIterator[Worker]:
    """A worker process on `queue` for the block; stopped after it unless killed in it."""
    proc = worker_process(database_url, address, queue, keep_stderr=False)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def _sigkill(proc: Worker) -> None:
    """Kill the worker as a crash would: no chance to clean up."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def test_a_sigkilled_worker_is_replaced_and_the_run_completes_exactly_once(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    http_peer: HttpPeer,
    flow_worker: FlowWorker,
) -> None:
    for n in range(ITEMS):
        http_peer.route("GET", f"/slow/{n}", Reply(200, {"n": n}, delay=0.5))
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": "{{ range(input.n) | list }}", "maxConcurrency": 2}),
            {
                **node("call", "api", {"url": f"{http_peer.base}/slow/{{{{ item }}}}"}),
                "parentId": "each",
            },
            {
                **node("pick", "transform", {"output": "{{ nodes.call.output.json.n }}"}),
                "parentId": "each",
            },
            node("done", "end", {"outputs": {"ns": "{{ nodes.each.output }}"}}),
        ],
        "edges": [edge("start", "each"), edge("call", "pick"), edge("each", "done")],
    }
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    async with _worker(database_url, address, queue) as first:
        handle = await start_run(
            temporal_env.client,
            queue,
            FlowRunInput(definition=definition, inputs={"n": ITEMS}),
            run_id=f"crash-{uuid.uuid4().hex[:8]}",
        )
        # Mid-run: some items done, others in flight. The peer serves from its own threads.
        while len(http_peer.requests) < 4:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        _sigkill(first)
    async with _worker(database_url, address, queue):
        result = await asyncio.wait_for(handle.result(), timeout=120)
        # (its status query needs a worker on the queue)
        await assert_run_tells_the_truth(temporal_env.client, flow_worker.sessions, handle.id)
    assert result.outputs == {"ns": list(range(ITEMS))}
    async with flow_worker.sessions() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT t.node_id, t.status, count(*) FROM task_instances t "
                    "JOIN workflow_runs r ON r.id = t.workflow_run_id "
                    "WHERE r.orchestrator_run_id = :o GROUP BY 1, 2"
                ),
                {"o": handle.id},
            )
        ).all()
        run = (
            (
                await s.execute(
                    text("SELECT status FROM workflow_runs WHERE orchestrator_run_id = :o"),
                    {"o": handle.id},
                )
            )
            .scalars()
            .all()
        )
    assert run == ["completed"]
    assert sorted(rows) == sorted(
        [
            ("start", "completed", 1),
            ("each", "completed", 1),
            ("call", "completed", ITEMS),
            ("pick", "completed", ITEMS),
            ("done", "completed", 1),
        ]
    )


def _linear(base: str) -> dict[str, Any]:
    calls = [node(f"call{i}", "api", {"url": f"{base}/slow/{i}"}) for i in range(3)]
    return {
        "nodes": [node("start", "start"), *calls, node("done", "end")],
        "edges": [
            edge("start", "call0"),
            edge("call0", "call1"),
            edge("call1", "call2"),
            edge("call2", "done"),
        ],
    }


def _fan_out(base: str) -> dict[str, Any]:
    calls = [node(f"call{i}", "api", {"url": f"{base}/slow/{i}"}) for i in range(4)]
    return {
        "nodes": [node("start", "start"), *calls, node("done", "end")],
        "edges": [
            *(edge("start", f"call{i}") for i in range(4)),
            *(edge(f"call{i}", "done") for i in range(4)),
        ],
    }


@pytest.mark.parametrize(
    ("shape", "calls"), [("linear", 3), ("fan-out", 4)], ids=["linear", "fan-out"]
)
async def test_a_worker_killed_with_api_calls_in_flight_is_replaced_and_rows_stay_exact(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    http_peer: HttpPeer,
    flow_worker: FlowWorker,
    shape: str,
    calls: int,
) -> None:
    for n in range(calls):
        http_peer.route("GET", f"/slow/{n}", Reply(200, {"n": n}, delay=1.0))
    definition = (_linear if shape == "linear" else _fan_out)(http_peer.base)
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    async with _worker(database_url, address, queue) as first:
        handle = await start_run(
            temporal_env.client,
            queue,
            FlowRunInput(definition=definition),
            run_id=f"crash-{uuid.uuid4().hex[:8]}",
        )
        # An api call in flight (the first of the chain; the fan-out's all at once).
        while len(http_peer.requests) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        _sigkill(first)
    async with _worker(database_url, address, queue):
        await asyncio.wait_for(handle.result(), timeout=120)
        await assert_run_tells_the_truth(temporal_env.client, flow_worker.sessions, handle.id)
    rows = await flow_worker.task_rows(handle.id)
    expected = {"start", "done", *(f"call{n}" for n in range(calls))}
    assert {k: v["status"] for k, v in rows.items()} == dict.fromkeys(expected, "completed")
    for n in range(calls):
        # The call the kill interrupted is made again by the new worker; no other is.
        assert 1 <= len(http_peer.calls("GET", f"/slow/{n}")) <= 2


async def test_a_worker_killed_while_a_run_is_parked_on_a_review_is_replaced(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    flow_worker: FlowWorker,
    people: People,
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    async with _worker(database_url, address, queue) as first:
        handle = await start_run(
            temporal_env.client,
            queue,
            FlowRunInput(definition=review_flow(), inputs={"what": "x"}, tenant_id=people.tenant),
            run_id=f"crash-{uuid.uuid4().hex[:8]}",
        )
        (task,) = await open_task(handle)
        _sigkill(first)
    async with _worker(database_url, address, queue):
        await decide(handle, task["id"], {"approved": True}, people.finance, "after the kill")
        result = await asyncio.wait_for(handle.result(), timeout=120)
        await assert_run_tells_the_truth(temporal_env.client, flow_worker.sessions, handle.id)
    assert result.outputs["on_approved"]["comments"] == "after the kill"
    row = await inbox(flow_worker, task["id"])
    assert (row["status"], len(row["decisions"])) == ("completed", 1)
