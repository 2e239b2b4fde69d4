"""Template lookups that cannot silently fail: a misspelt or absent value fails its node,
naming the field, the expression and the keys there are; absence the flow routes around reads
as null (the `flow_worker` fixture checks the run invariant after each test).
"""

from __future__ import annotations

import uuid

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import People
from tests.http_peer import HttpPeer, Reply


async def test_nodes_and_inputs_named_like_dict_methods_are_read_as_data(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    """A loop over `input.items` whose body calls an `api` node named `get`."""
    prices = {"a": 2.5, "b": 10}
    for sku, price in prices.items():
        http_peer.route("GET", f"/products/{sku}", Reply(body={"price": price}))
    body = [
        node("get", "api", {"method": "GET", "url": "{{ input.values }}/products/{{ item.sku }}"}),
        node("update", "transform", {"output": "{{ nodes.get.output.json.price * item.qty }}"}),
    ]
    definition = {
        "nodes": [
            node("start", "start"),
            node("items", "loop", {"items": "{{ input.items }}", "maxConcurrency": 2}),
            *[{**n, "parentId": "items"} for n in body],
            node(
                "copy",
                "end",
                {"outputs": {"lines": "{{ nodes.items.output }}", "keys": "{{ input.keys }}"}},
            ),
        ],
        "edges": [edge("start", "items"), edge("get", "update"), edge("items", "copy")],
    }
    inputs = {
        "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}, {"sku": "a", "qty": 1}],
        "values": http_peer.base,
        "keys": ["k1", "k2"],
    }
    result, run_id = await flow_worker.run(definition, inputs)
    assert result.outputs == {"lines": [5.0, 30, 2.5], "keys": ["k1", "k2"]}
    rows = await flow_worker.task_rows(run_id)
    assert rows["items[1].get"]["status"] == "completed"
    assert rows["items[1].update"]["outputs"] == 30


async def test_a_misspelt_reference_fails_its_node_naming_field_expression_and_keys(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/orders/7", Reply(body={"total": 12}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("fetch", "api", {"method": "GET", "url": f"{http_peer.base}/orders/7"}),
            node("sum", "transform", {"output": {"total": "{{ nodes.fetch.output.jsn.total }}"}}),
            node("end", "end"),
        ],
        "edges": [edge("start", "fetch"), edge("fetch", "sum"), edge("sum", "end")],
    }
    run_id = await flow_worker.fail(definition)
    run = await flow_worker.run_row(run_id)
    for part in (
        "node 'sum'",
        "config.output.total",
        "{{ nodes.fetch.output.jsn.total }}",
        "`nodes.fetch.output` has no key 'jsn'; it has 'status', 'headers', 'json'",
    ):
        assert part in run["error"]
    rows = await flow_worker.task_rows(run_id)
    assert rows["sum"]["status"] == "failed"
    assert "has no key 'jsn'" in rows["sum"]["error"]
    assert "end" not in rows


async def test_a_misspelt_reference_in_an_agent_fails_it_before_any_call_without_retry(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("POST", "/orders", Reply(body={"ok": True}))
    definition = {
        "nodes": [
            node("start", "start"),
            node(
                "post",
                "api",
                {
                    "method": "POST",
                    "url": f"{http_peer.base}/orders",
                    "body": {"id": "{{ input.ordr_id }}"},
                },
            ),
        ],
        "edges": [edge("start", "post")],
    }
    run_id = await flow_worker.fail(definition, {"order_id": 7})
    row = (await flow_worker.task_rows(run_id))["post"]
    assert row["status"] == "failed"
    assert row["retry_count"] == 0
    assert "config.body.id" in row["error"]
    assert "`input` has no key 'ordr_id'; it has 'order_id'" in row["error"]
    assert http_peer.calls("POST", "/orders") == []


async def test_absence_the_flow_routes_around_reads_as_null(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    """A skipped branch and a failed-but-continued call read as null at the join."""
    http_peer.route("GET", "/flaky", Reply(status=400, body={"error": "nope"}))
    definition = {
        "nodes": [
            node("start", "start"),
            node(
                "check",
                "condition",
                {"branches": [{"handle": "big", "when": "{{ input.n > 10 }}"}], "default": "small"},
            ),
            node("big", "transform", {"output": {"size": "big"}}),
            node("small", "api", {"url": f"{http_peer.base}/flaky"}, onError="continue"),
            node(
                "join",
                "end",
                {
                    "outputs": {
                        "big": "{{ nodes.big.output.size }}",
                        "small": "{{ nodes.small.output.json }}",
                        "error": "{{ nodes.small.output.error }}",
                        "either": "{{ nodes.big.output or 'none' }}",
                    }
                },
            ),
        ],
        "edges": [
            edge("start", "check"),
            edge("check", "big", "big"),
            edge("check", "small", "small"),
            edge("big", "join"),
            edge("small", "join"),
        ],
    }
    result, _ = await flow_worker.run(definition, {"n": 1})
    assert result.outputs["big"] is None
    assert result.outputs["small"] is None
    assert "400" in result.outputs["error"]
    assert result.outputs["either"] == "none"


async def test_templated_values_are_checked_once_rendered_naming_the_field(
    flow_worker: FlowWorker, people: People
) -> None:
    review = node(
        "review",
        "hitl",
        {
            "title": "Look",
            "decisionType": "approval",
            "assigneeRole": "finance",
            "deadlineSeconds": "{{ input.dl }}",
        },
    )
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s,
            name=f"one-{uuid.uuid4().hex[:6]}",
            definition={"nodes": [node("start", "start")], "edges": []},
        )
    sub = node(
        "sub", "workflow", {"workflowId": str(stored.workflow_id), "version": "{{ input.v }}"}
    )
    for config_node, inputs, says in (
        (review, {"dl": "soon"}, "config.deadlineSeconds: 'soon' is not a positive number"),
        (sub, {"v": "abc"}, "config.version: 'abc' is not a version number"),
    ):
        definition = {
            "nodes": [node("start", "start"), config_node],
            "edges": [edge("start", config_node["id"])],
        }
        run_id = await flow_worker.fail(definition, inputs, tenant_id=people.tenant)
        row = (await flow_worker.task_rows(run_id))[config_node["id"]]
        assert row["status"] == "failed"
        assert says in row["error"]
