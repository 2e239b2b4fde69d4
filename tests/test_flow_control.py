"""Errors, retries, waits, signals, cancellation and sub-flows on the real dev server."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply, Request
from workers.client import get_status, pause, resume, send_event


def _api_flow(url: str, **data: Any) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("call", "api", {"url": url}, **data),
            node("done", "end", {"outputs": {"body": "{{ nodes.call.output.json }}"}}),
        ],
        "edges": [edge("start", "call"), edge("call", "done")],
    }


async def test_a_5xx_is_retried_until_it_succeeds(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    answers = itertools.chain(
        [Reply(503, {"busy": True}), Reply(502, "bad gateway")],
        itertools.repeat(Reply(200, {"ok": 1})),
    )
    http_peer.route("GET", "/flaky", lambda _r: next(answers))
    result, run_id = await flow_worker.run(
        _api_flow(
            f"{http_peer.base}/flaky", retry={"maxAttempts": 5, "initialIntervalSeconds": 0.1}
        )
    )
    assert result.outputs == {"body": {"ok": 1}}
    assert len(http_peer.calls("GET", "/flaky")) == 3
    row = (await flow_worker.task_rows(run_id))["call"]
    assert (row["status"], row["retry_count"], row["error"]) == ("completed", 2, None)


async def test_a_4xx_fails_the_run_at_once_with_the_node_named(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/missing", Reply(404, {"error": "no such order"}))
    handle = await flow_worker.start(
        _api_flow(f"{http_peer.base}/missing", retry={"maxAttempts": 5})
    )
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert "node 'call' failed" in str(err.value.cause)
    assert "404" in str(err.value.cause)
    assert len(http_peer.calls("GET", "/missing")) == 1
    run = await flow_worker.run_row(handle.id)
    assert run["status"] == "failed"
    assert "no such order" in run["error"]
    rows = await flow_worker.task_rows(handle.id)
    assert rows["call"]["status"] == "failed"
    assert "done" not in rows or rows["done"]["status"] != "completed"


async def test_on_error_route_follows_the_error_edge(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("POST", "/charge", Reply(422, {"error": "card declined"}))
    definition = {
        "nodes": [
            node("start", "start"),
            node(
                "charge",
                "api",
                {"method": "POST", "url": f"{http_peer.base}/charge", "body": {"amount": 5}},
                onError="route",
            ),
            node("receipt", "transform", {"output": "sent"}),
            node("apologise", "transform", {"output": "{{ nodes.charge.output.error }}"}),
        ],
        "edges": [
            edge("start", "charge"),
            edge("charge", "receipt"),
            edge("charge", "apologise", "error"),
        ],
    }
    result, run_id = await flow_worker.run(definition)
    assert "card declined" in result.outputs["apologise"]
    assert "receipt" not in result.outputs
    rows = await flow_worker.task_rows(run_id)
    assert rows["receipt"]["status"] == "skipped"
    assert rows["charge"]["status"] == "failed"
    assert http_peer.calls("POST", "/charge")[0].json() == {"amount": 5}


async def test_a_slow_call_times_out_per_attempt(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/slow", Reply(200, {"late": True}, delay=3))
    handle = await flow_worker.start(
        _api_flow(
            f"{http_peer.base}/slow",
            timeoutSeconds=1,
            retry={"maxAttempts": 2, "initialIntervalSeconds": 0.1},
        )
    )
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert "timed out" in str(err.value.cause).lower()
    assert len(http_peer.calls("GET", "/slow")) == 2


async def test_secrets_are_used_but_never_stored(
    flow_worker: FlowWorker, http_peer: HttpPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_ORDERS_TOKEN", "s3cr3t-value")
    http_peer.route(
        "GET", "/orders", lambda r: Reply(200, {"auth": r.headers.get("Authorization")})
    )
    flow = _api_flow(f"{http_peer.base}/orders")
    flow["nodes"][1]["data"]["config"]["auth"] = {
        "type": "bearer",
        "token": "{{ secrets.ORDERS_TOKEN }}",
    }
    result, run_id = await flow_worker.run(flow)
    assert http_peer.calls("GET", "/orders")[0].headers["Authorization"] == "Bearer s3cr3t-value"
    assert result.outputs == {"body": {"auth": "Bearer ***"}}  # echoed back, masked
    async with flow_worker.sessions() as s:
        dump = (
            (
                await s.execute(
                    text(
                        "SELECT t::text FROM task_instances t JOIN workflow_runs r "
                        "ON r.id = t.workflow_run_id WHERE r.orchestrator_run_id = :o"
                    ),
                    {"o": run_id},
                )
            )
            .scalars()
            .all()
        )
    assert dump
    assert not any("s3cr3t" in row for row in dump)
    history = await flow_worker.client.get_workflow_handle(run_id).fetch_history()
    assert "s3cr3t" not in history.to_json()


async def test_wait_for_an_event_then_time_out_on_another(flow_worker: FlowWorker) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("paid", "wait", {"event": "payment", "timeoutSeconds": 60}),
            node("shipped", "wait", {"event": "shipment", "timeoutSeconds": 1}),
            node("late", "transform", {"output": "chase the courier"}),
            node(
                "done",
                "end",
                {
                    "outputs": {
                        "paid": "{{ nodes.paid.output.payload }}",
                        "late": "{{ nodes.late.output }}",
                    }
                },
            ),
        ],
        "edges": [
            edge("start", "paid"),
            edge("paid", "shipped"),
            edge("shipped", "late", "timeout"),
            edge("shipped", "done"),
            edge("late", "done"),
        ],
    }
    handle = await flow_worker.start(definition)
    await asyncio.sleep(0.5)
    await send_event(flow_worker.client, handle.id, "payment", {"amount": 12})
    result = await handle.result()
    assert result.outputs == {"paid": {"amount": 12}, "late": "chase the courier"}


async def test_pause_holds_new_nodes_and_resume_lets_them_run(flow_worker: FlowWorker) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("nap", "wait", {"seconds": 1}),
            node("after", "transform", {"output": "ran"}),
        ],
        "edges": [edge("start", "nap"), edge("nap", "after")],
    }
    handle = await flow_worker.start(definition)
    await pause(flow_worker.client, handle.id)
    await asyncio.sleep(2.5)  # the wait ends, but `after` must not start while paused
    status = await get_status(flow_worker.client, handle.id)
    assert status["status"] == "paused"
    assert "after" not in status["nodes"]
    assert (await flow_worker.run_row(handle.id))["status"] == "paused"
    await resume(flow_worker.client, handle.id)
    result = await handle.result()
    assert result.outputs == {"after": "ran"}
    assert (await flow_worker.run_row(handle.id))["status"] == "completed"


async def test_cancel_mid_call_aborts_it_and_marks_everything_cancelled(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(_r: Request) -> Reply:
        loop.call_soon_threadsafe(started.set)
        return Reply(200, {"late": True}, delay=20)

    http_peer.route("GET", "/forever", slow)
    handle = await flow_worker.start(_api_flow(f"{http_peer.base}/forever", timeoutSeconds=60))
    await asyncio.wait_for(started.wait(), 20)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    run = await flow_worker.run_row(handle.id)
    assert run["status"] == "cancelled"
    rows = await flow_worker.task_rows(handle.id)
    assert rows["call"]["status"] == "cancelled"


async def test_a_child_flow_runs_as_a_child_workflow_with_its_parent_recorded(
    flow_worker: FlowWorker,
) -> None:
    child_definition = {
        "nodes": [
            node("start", "start"),
            node("double", "transform", {"output": "{{ input.n * 2 }}"}),
            node("done", "end", {"outputs": {"doubled": "{{ nodes.double.output }}"}}),
        ],
        "edges": [edge("start", "double"), edge("double", "done")],
    }
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"doubler-{uuid.uuid4().hex[:6]}", definition=child_definition
        )
    parent = {
        "nodes": [
            node("start", "start"),
            node(
                "sub",
                "workflow",
                {"workflowId": str(stored.workflow_id), "inputs": {"n": "{{ input.n }}"}},
            ),
            node("done", "end", {"outputs": {"result": "{{ nodes.sub.output.doubled }}"}}),
        ],
        "edges": [edge("start", "sub"), edge("sub", "done")],
    }
    result, run_id = await flow_worker.run(parent, {"n": 21})
    assert result.outputs == {"result": 42}
    parent_row = await flow_worker.run_row(run_id)
    child_row = await flow_worker.run_row(f"{run_id}/sub")
    assert child_row["parent_run_id"] == parent_row["id"]
    assert child_row["workflow_id"] == stored.workflow_id
    assert child_row["status"] == "completed"


async def test_wait_until_a_timestamp_and_a_while_loop(flow_worker: FlowWorker) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("later", "wait", {"until": "{{ input.at }}"}),
            node("count", "loop", {"while": "{{ index < input.times }}", "maxIterations": 10}),
            {**node("tick", "transform", {"output": "{{ index * 10 }}"}), "parentId": "count"},
            node(
                "done",
                "end",
                {
                    "outputs": {
                        "ticks": "{{ nodes.count.output }}",
                        "waited": "{{ nodes.later.output.waited_until }}",
                    }
                },
            ),
        ],
        "edges": [edge("start", "later"), edge("later", "count"), edge("count", "done")],
    }
    result, _ = await flow_worker.run(definition, {"at": "2020-01-01T00:00:00+00:00", "times": 3})
    assert result.outputs == {"ticks": [0, 10, 20], "waited": "2020-01-01T00:00:00+00:00"}


async def test_a_wait_in_progress_survives_continue_as_new(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    """A long wait must not hold back continue-as-new: it resumes with its old deadline."""
    http_peer.route("GET", "/n", Reply(200, {"ok": True}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("nap", "wait", {"seconds": 4}),
            node("busy", "loop", {"items": "{{ range(60) | list }}", "maxConcurrency": 10}),
            {**node("call", "api", {"url": f"{http_peer.base}/n"}), "parentId": "busy"},
            {**node("keep", "transform", {"output": "{{ index }}"}), "parentId": "busy"},
            node(
                "done",
                "end",
                {
                    "outputs": {
                        "n": "{{ nodes.busy.output | length }}",
                        "slept": "{{ nodes.nap.output.waited_until }}",
                    }
                },
            ),
        ],
        "edges": [
            edge("start", "nap"),
            edge("start", "busy"),
            edge("call", "keep"),
            edge("nap", "done"),
            edge("busy", "done"),
        ],
    }
    handle = await flow_worker.start(definition, history_limit=100)
    result = await handle.result()
    status = await get_status(flow_worker.client, handle.id)
    assert status["continued_as_new"] >= 1
    assert result.outputs["n"] == 60
    assert result.outputs["slept"] is not None
    rows = await flow_worker.task_rows(handle.id)
    assert rows["nap"]["status"] == "completed"
