"""FlowRun end to end on the dev server and Postgres: the shared example flows and core routing."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from flow_language.drawing import edge, node
from tests.flows import FlowWorker, shared_flow
from tests.http_peer import HttpPeer, Reply


async def test_customer_360_fans_out_joins_and_continues_past_a_failing_branch(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/customers/7", Reply(body={"name": "Ada"}))
    http_peer.route("GET", "/customers/7/orders", Reply(body=[{"id": 1}]))
    http_peer.route("GET", "/customers/7/tickets", Reply(status=400, body={"error": "nope"}))
    result, run_id = await flow_worker.run(
        shared_flow("customer-360"), {"api_base": http_peer.base, "customer_id": 7}
    )
    assert result.status == "completed"
    customer = result.outputs["customer"]
    assert customer["profile"] == {"name": "Ada"}
    assert customer["orders"] == [{"id": 1}]
    assert customer["tickets"] is None  # the failed branch continued with an error output

    run = await flow_worker.run_row(run_id)
    assert run["status"] == "completed"
    assert run["outputs"] == result.outputs
    assert run["started_at"] <= run["completed_at"]
    rows = await flow_worker.task_rows(run_id)
    assert set(rows) == {"start", "profile", "orders", "tickets", "merge", "done"}
    assert rows["tickets"]["status"] == "failed"
    assert "400" in rows["tickets"]["error"]
    assert rows["tickets"]["retry_count"] == 0  # a 400 is not retried
    assert rows["profile"]["status"] == "completed"
    assert rows["profile"]["outputs"]["json"] == {"name": "Ada"}
    assert rows["profile"]["inputs"]["url"].endswith("/customers/7")
    assert rows["merge"]["outputs"]["profile"] == {"name": "Ada"}


async def test_basket_loop_prices_each_line_and_sums(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    prices = {"a": 2.5, "b": 10, "c": 1}
    for sku, price in prices.items():
        http_peer.route("GET", f"/products/{sku}", Reply(body={"price": price}))
    lines = [
        {"sku": "a", "qty": 2},
        {"sku": "b", "qty": 1},
        {"sku": "c", "qty": 5},
        {"sku": "a", "qty": 1},
    ]
    result, run_id = await flow_worker.run(
        shared_flow("basket-loop"), {"api_base": http_peer.base, "lines": lines}
    )
    assert result.outputs["lines"] == [5.0, 10, 5, 2.5]
    assert result.outputs["total"] == 22.5
    rows = await flow_worker.task_rows(run_id)
    assert rows["each[2].price"]["status"] == "completed"
    assert rows["each[2].line"]["outputs"] == 5
    assert rows["each"]["outputs"] == [5.0, 10, 5, 2.5]


async def test_invalid_flow_fails_at_once_listing_every_problem_and_calls_nothing(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("call", "api", {"url": f"{http_peer.base}/x", "method": "FETCH"}),
            node("t", "transform", {"output": "{{ nodes.later.output }}"}),
            node("later", "transform", {"output": 1}),
            node("orphan", "end"),
        ],
        "edges": [edge("start", "call"), edge("call", "t"), edge("t", "later")],
    }
    with pytest.raises(WorkflowFailureError) as err:
        await flow_worker.run(definition, workflow_id="invalid-flow-run")
    message = str(err.value.cause)
    assert "config.method: 'FETCH' is not one of" in message
    assert "nodes.later, which is not upstream" in message
    assert "node 'orphan': unreachable from the start node" in message
    run = await flow_worker.run_row("invalid-flow-run")
    assert run["status"] == "failed"
    assert "config.method" in run["error"]
    assert "unreachable" in run["error"]
    assert await flow_worker.task_rows("invalid-flow-run") == {}
    assert http_peer.requests == []


async def test_condition_skips_the_branch_not_taken_and_the_join_still_runs(
    flow_worker: FlowWorker,
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node(
                "check",
                "condition",
                {"branches": [{"handle": "big", "when": "{{ input.n > 10 }}"}], "default": "small"},
            ),
            node("big", "transform", {"output": "big"}),
            node("small", "transform", {"output": "small"}),
            node("after_small", "transform", {"output": "{{ nodes.small.output }}!"}),
            node(
                "done",
                "end",
                {
                    "outputs": {
                        "big": "{{ nodes.big.output }}",
                        "small": "{{ nodes.after_small.output }}",
                    }
                },
            ),
        ],
        "edges": [
            edge("start", "check"),
            edge("check", "big", "big"),
            edge("check", "small", "small"),
            edge("small", "after_small"),
            edge("big", "done"),
            edge("after_small", "done"),
        ],
    }
    result, run_id = await flow_worker.run(definition, {"n": 3})
    assert result.outputs == {"big": None, "small": "small!"}
    rows = await flow_worker.task_rows(run_id)
    assert rows["big"]["status"] == "skipped"
    assert rows["check"]["outputs"] == {"handle": "small"}
    assert rows["done"]["status"] == "completed"


@pytest.mark.parametrize(("total", "branch"), [(18.0, "ship"), (2400.0, "hold")])
async def test_the_steps_example_triages_an_order(
    flow_worker: FlowWorker, http_peer: HttpPeer, total: float, branch: str
) -> None:
    """`examples/flows/order-triage-steps.json`, the steps/connections format newcomers see."""
    lines = [{"sku": "tea", "qty": 2}, {"sku": "gone", "qty": 1}]
    http_peer.route("GET", "/orders/5", Reply(body={"total": total, "lines": lines}))
    http_peer.route("POST", "/orders/5/ship", Reply(body={"shipped": 5}))
    http_peer.route("GET", "/products/tea", Reply(body={"price": 4.5}))
    http_peer.route("GET", "/products/gone", Reply(status=404, body={"error": "no such sku"}))
    result, run_id = await flow_worker.run(
        shared_flow("order-triage-steps"), {"api_base": http_peer.base, "order_id": 5}
    )
    assert result.status == "completed"
    rows = await flow_worker.task_rows(run_id)
    skipped = {"ship": "hold", "hold": "ship"}[branch]
    assert rows[branch]["status"] == "completed"
    assert rows[skipped]["status"] == "skipped"
    if branch == "hold":
        assert result.outputs["hold"] == {"held": True, "total": "2400.0 EUR"}
    else:
        assert result.outputs["ship"]["json"] == {"shipped": 5}
    # `skip` on the line pricing: the unknown sku's iteration failed and the loop went on.
    assert rows["lines[0].price"]["status"] == "completed"
    assert rows["lines[1].price"]["status"] == "failed"
    assert result.outputs["lines"][0]["json"] == {"price": 4.5}
