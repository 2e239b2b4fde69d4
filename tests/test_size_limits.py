"""Values too large for one Temporal payload fail their node, never the workflow task (which
would wedge the run), and many large rows are written in batches under the payload limit.
"""

from __future__ import annotations

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply


async def test_an_output_too_large_for_history_fails_its_node_instead_of_wedging_the_run(
    flow_worker: FlowWorker,
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("huge", "transform", {"output": "{{ 'x' * 2500000 }}"}),
        ],
        "edges": [edge("start", "huge")],
    }
    run_id = await flow_worker.fail(definition)
    row = (await flow_worker.task_rows(run_id))["huge"]
    assert row["status"] == "failed"
    assert "over the 1500000 a node may return" in row["error"]


async def test_many_large_rows_are_written_in_batches_under_the_payload_limit(
    flow_worker: FlowWorker,
) -> None:
    """30 iterations of 100 kB each: 3 MB of rows, written back in several activities."""
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": "{{ range(30) | list }}", "maxConcurrency": 30}),
            {**node("fat", "transform", {"output": "{{ 'y' * 100000 }}"}), "parentId": "each"},
            {**node("slim", "transform", {"output": "{{ index }}"}), "parentId": "each"},
            node("done", "end", {"outputs": {"n": "{{ nodes.each.output | length }}"}}),
        ],
        "edges": [edge("start", "each"), edge("fat", "slim"), edge("each", "done")],
    }
    result, run_id = await flow_worker.run(definition)
    assert result.outputs == {"n": 30}
    rows = await flow_worker.task_rows(run_id)
    assert len(rows["each[29].fat"]["outputs"]) == 100000
    assert sum(1 for k in rows if k.endswith(".fat")) == 30


async def test_a_node_input_too_large_for_one_step_fails_the_node_not_the_workflow_task(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    """Two outputs under the cap can still make one input over Temporal's payload limit."""
    http_peer.route("POST", "/echo", Reply(body={}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("a", "transform", {"output": "{{ 'x' * 1200000 }}"}),
            node("b", "transform", {"output": "{{ 'y' * 1200000 }}"}),
            node(
                "call",
                "api",
                {
                    "method": "POST",
                    "url": f"{http_peer.base}/echo",
                    "body": {"a": "{{ nodes.a.output }}", "b": "{{ nodes.b.output }}"},
                },
            ),
        ],
        "edges": [edge("start", "a"), edge("a", "b"), edge("b", "call")],
    }
    run_id = await flow_worker.fail(definition)
    rows = await flow_worker.task_rows(run_id)
    assert rows["call"]["status"] == "failed"
    assert "the node's input" in rows["call"]["error"]
    assert "over the 1800000 one step may carry" in rows["call"]["error"]
    assert rows["b"]["status"] == "completed"
    assert http_peer.calls("POST", "/echo") == []
