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
