"""Long loops finish through continue-as-new without losing an item or a row."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import text

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply, Request
from workers.client import STATUS_QUERY

ITEMS = int(os.environ.get("META_AGENT_LOOP_ITEMS", "10000"))


def _square(request: Request) -> Reply:
    n = int(request.path.rsplit("/", 1)[1])
    return Reply(200, {"square": n * n})


# 20,000 nodes take about 3.5 min on 2 cores, over the suite's 5 min ceiling on a busy machine.
@pytest.mark.timeout(900)
async def test_a_loop_of_many_items_completes_via_continue_as_new(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    for n in range(ITEMS):
        http_peer.routes[("GET", f"/square/{n}")] = _square
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": "{{ range(input.n) | list }}", "maxConcurrency": 50}),
            {
                **node("sq", "api", {"url": f"{http_peer.base}/square/{{{{ item }}}}"}),
                "parentId": "each",
            },
            # Reduce each item in the body, as basket-loop does: the loop's result list travels
            # through continue-as-new, so it should hold values, not whole HTTP responses.
            {
                **node("value", "transform", {"output": "{{ nodes.sq.output.json.square }}"}),
                "parentId": "each",
            },
            node("total", "transform", {"output": "{{ nodes.each.output | sum }}"}),
        ],
        "edges": [edge("start", "each"), edge("sq", "value"), edge("each", "total")],
    }
    started = time.monotonic()
    handle = await flow_worker.start(definition, {"n": ITEMS}, history_limit=2000)
    result = await handle.result()
    print(f"{ITEMS} items in {time.monotonic() - started:.1f}s")
    assert result.outputs == {"total": sum(n * n for n in range(ITEMS))}
    status = await handle.query(STATUS_QUERY)
    assert status["continued_as_new"] >= 1
    async with flow_worker.sessions() as s:
        counts = (
            await s.execute(
                text(
                    "SELECT t.status, count(*) FROM task_instances t JOIN workflow_runs r "
                    "ON r.id = t.workflow_run_id WHERE r.orchestrator_run_id = :o GROUP BY t.status"
                ),
                {"o": handle.id},
            )
        ).all()
        runs = (
            await s.execute(
                text("SELECT count(*) FROM workflow_runs WHERE orchestrator_run_id = :o"),
                {"o": handle.id},
            )
        ).scalar_one()
    # two rows per item (sq, value), plus start, each and total
    assert dict(counts) == {"completed": 2 * ITEMS + 3}
    assert runs == 1
    assert len(http_peer.requests) == ITEMS  # no item was called twice
