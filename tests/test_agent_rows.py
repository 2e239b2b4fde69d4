"""An agent node's rows: a node still working shows a `running` row, a quick one writes one row
(its end), and either way the end row carries when the node started.
"""

from __future__ import annotations

import asyncio

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply


async def test_a_slow_agent_shows_a_running_row_and_a_quick_one_only_its_end(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/quick", Reply(200, {"n": 1}))
    http_peer.route("GET", "/slow", Reply(200, {"n": 2}, delay=4))
    flow = {
        "nodes": [
            node("start", "start"),
            node("quick", "api", {"url": f"{http_peer.base}/quick"}),
            node("slow", "api", {"url": f"{http_peer.base}/slow"}),
        ],
        "edges": [edge("start", "quick"), edge("quick", "slow")],
    }
    handle = await flow_worker.start(flow)
    while len(http_peer.requests) < 2:  # noqa: ASYNC110 - the peer answers from its threads
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)  # the slow call has worked over a second
    rows = await flow_worker.task_rows(handle.id)
    assert rows["slow"]["status"] == "running"
    assert rows["slow"]["started_at"] is not None
    assert rows["slow"]["completed_at"] is None
    assert rows["quick"]["status"] == "completed"
    assert rows["quick"]["started_at"] <= rows["quick"]["completed_at"]

    await handle.result()
    rows = await flow_worker.task_rows(handle.id)
    assert rows["slow"]["status"] == "completed"
    assert rows["slow"]["outputs"]["json"] == {"n": 2}
    assert rows["slow"]["started_at"] < rows["slow"]["completed_at"]


def _carrying_flow(url: str) -> dict[str, object]:
    """Start → condition → transform → one api node → end, and a branch not taken: four rows
    an agent can carry (one of them skipped).
    """
    branches = [{"handle": "yes", "when": "{{ true }}"}, {"handle": "no", "when": "{{ false }}"}]
    return {
        "nodes": [
            node("start", "start"),
            node("check", "condition", {"branches": branches}),
            node("other", "transform", {"output": 1}),
            node("shape", "transform", {"output": {"id": "{{ input.id }}"}}),
            node("call", "api", {"url": url}),
            node("end", "end"),
        ],
        "edges": [
            edge("start", "check"),
            edge("check", "shape", "yes"),
            edge("check", "other", "no"),
            edge("shape", "call"),
            edge("call", "end"),
        ],
    }


async def test_an_agent_writes_the_rows_of_the_nodes_before_it_and_saves_a_write(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/ok", Reply(200, {"ok": True}))
    _, run_id = await flow_worker.run(_carrying_flow(f"{http_peer.base}/ok"), {"id": 7})
    rows = await flow_worker.task_rows(run_id)
    assert {k: v["status"] for k, v in rows.items()} == {
        "start": "completed",
        "check": "completed",
        "other": "skipped",
        "shape": "completed",
        "call": "completed",
        "end": "completed",
    }
    assert rows["shape"]["outputs"] == {"id": 7}
    # The load, the agent and the run's last write: no write between them.
    assert await flow_worker.scheduled_activities(run_id) == [
        "prepare_flow",
        "agent.api",
        "record_run",
    ]


async def test_rows_an_agent_carried_are_written_when_it_fails_or_is_cancelled(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/gone", Reply(404, {"error": "gone"}))
    run_id = await flow_worker.fail(_carrying_flow(f"{http_peer.base}/gone"), {"id": 1})
    rows = await flow_worker.task_rows(run_id)
    assert rows["shape"]["status"] == "completed"
    assert rows["check"]["status"] == "completed"
    assert rows["call"]["status"] == "failed"

    http_peer.route("GET", "/hang", Reply(200, {}, delay=60))
    handle = await flow_worker.start(_carrying_flow(f"{http_peer.base}/hang"), {"id": 2})
    while not any(r.path == "/hang" for r in http_peer.requests):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await flow_worker.cancel_and_wait(handle)
    rows = await flow_worker.task_rows(handle.id)
    assert rows["shape"]["status"] == "completed"
    assert rows["call"]["status"] == "cancelled"
    assert (await flow_worker.run_row(handle.id))["status"] == "cancelled"


async def test_rows_ride_along_only_in_the_room_the_agents_own_input_leaves(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    """An agent whose input nearly fills a payload still runs: the rows of the transforms
    before it wait for the run's own write instead.
    """
    http_peer.route("GET", "/ok", Reply(200, {"ok": True}))
    names = ["big", "c1", "c2", "c3"]
    flow = {
        "nodes": [
            node("start", "start"),
            node("big", "transform", {"output": "{{ input.big }}"}),
            *(node(n, "transform", {"output": "{{ input.small }}"}) for n in names[1:]),
            node(
                "call",
                "api",
                {
                    "url": f"{http_peer.base}/ok",
                    "headers": {"X": "{{ input.big[:1] }}{{ nodes.big.output[:1] }}"},
                },
            ),
        ],
        "edges": [edge(a, b) for a, b in zip(["start", *names], [*names, "call"], strict=True)],
    }
    # The agent reads the input and `big`'s output: 2 x 880 KB of its 1.8 MB payload.
    inputs = {"big": "y" * 880_000, "small": "z" * 20_000}
    _, run_id = await flow_worker.run(flow, inputs)
    rows = await flow_worker.task_rows(run_id)
    assert {k: v["status"] for k, v in rows.items()} == dict.fromkeys(
        ["start", *names, "call"], "completed"
    )
    assert rows["c3"]["outputs"] == "z" * 20_000
