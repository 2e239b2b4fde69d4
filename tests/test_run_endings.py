"""Every run tells the truth: template lookups that cannot silently fail, and a terminal row
for every way a run ends (the `flow_worker` fixture also checks the run invariant after each
test; these tests assert the specific rows and messages).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowFailureError

from flow_language.validation import problems_of
from persistence import queries
from tests.flows import FlowWorker, edge, node
from tests.hitl_support import People, open_task
from tests.http_peer import HttpPeer, Reply
from tests.invariant import assert_run_tells_the_truth
from workers import client
from workflows.contract import FlowRunInput


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


async def _hitl_rows(flow_worker: FlowWorker, run_row_id: Any) -> list[str]:
    async with flow_worker.sessions() as s:
        return list(
            (
                await s.execute(
                    text("SELECT status FROM hitl_tasks WHERE workflow_run_id = :r"),
                    {"r": run_row_id},
                )
            ).scalars()
        )


def _parked_flow(
    people: People,
    extra: list[dict[str, Any]] | None = None,
    extra_edges: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("nap", "wait", {"seconds": 3600}),
            node(
                "review",
                "hitl",
                {"title": "Look", "decisionType": "approval", "assigneeId": people.finance},
            ),
            *(extra or []),
        ],
        "edges": [
            edge("start", "nap"),
            edge("start", "review"),
            *(extra_edges or []),
        ],
    }


async def test_cancelling_closes_wait_and_review_rows_and_the_query_agrees(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(_parked_flow(people), tenant_id=people.tenant)
    await open_task(handle)
    await flow_worker.cancel_and_wait(handle)
    rows = await flow_worker.task_rows(handle.id)
    assert rows["nap"]["status"] == "cancelled"
    assert rows["review"]["status"] == "cancelled"
    run = await flow_worker.run_row(handle.id)
    assert run["status"] == "cancelled"
    assert await _hitl_rows(flow_worker, run["id"]) == ["cancelled"]
    status = await handle.query(client.STATUS_QUERY)
    assert status["status"] == "cancelled"
    assert status["open_hitl_tasks"] == []
    assert {v["status"] for v in status["nodes"].values()} <= {"completed", "cancelled"}


async def test_a_failing_branch_closes_the_parked_ones(
    flow_worker: FlowWorker, people: People
) -> None:
    extra = [
        node("soon", "wait", {"seconds": 1}),
        node("boom", "transform", {"output": "{{ input.n // 0 }}"}),
    ]
    handle = await flow_worker.start(
        _parked_flow(people, extra, [edge("start", "soon"), edge("soon", "boom")]),
        {"n": 1},
        tenant_id=people.tenant,
    )
    try:
        await handle.result()
        raise AssertionError("the run was expected to fail")
    except WorkflowFailureError:
        pass
    rows = await flow_worker.task_rows(handle.id)
    assert rows["boom"]["status"] == "failed"
    assert {rows["nap"]["status"], rows["review"]["status"]} == {"cancelled"}
    assert await assert_run_tells_the_truth(
        flow_worker.client, flow_worker.sessions, handle.id
    ) == ("failed")


def _review_by(assignee: str) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node(
                "review",
                "hitl",
                {"title": "Look", "decisionType": "approval", "assigneeId": assignee},
            ),
        ],
        "edges": [edge("start", "review")],
    }


async def test_a_refused_bookkeeping_step_fails_the_node_and_the_run_with_rows_to_show(
    flow_worker: FlowWorker, people: People
) -> None:
    """A reviewer id that only turns out malformed once rendered cannot open the task."""
    definition = _review_by(assignee="{{ input.who }}")
    run_id = await flow_worker.fail(definition, {"who": "lead-bob"}, tenant_id=people.tenant)
    run = await flow_worker.run_row(run_id)
    assert run["status"] == "failed"
    assert "node 'review'" in run["error"]
    assert "lead-bob" in run["error"]
    rows = await flow_worker.task_rows(run_id)
    assert rows["review"]["status"] == "failed"
    assert "lead-bob" in rows["review"]["error"]
    assert await _hitl_rows(flow_worker, run["id"]) in ([], ["cancelled"])


async def _parent_of_a_napping_sub_flow(flow_worker: FlowWorker) -> dict[str, Any]:
    """A flow whose node `sub` runs a stored flow parked on an hour's wait (node `nap`)."""
    child = {
        "nodes": [node("start", "start"), node("nap", "wait", {"seconds": 3600})],
        "edges": [edge("start", "nap")],
    }
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"napper-{uuid.uuid4().hex[:6]}", definition=child
        )
    return {
        "nodes": [
            node("start", "start"),
            node("sub", "workflow", {"workflowId": str(stored.workflow_id)}),
        ],
        "edges": [edge("start", "sub")],
    }


async def test_a_cancelled_sub_flow_leaves_no_live_row(flow_worker: FlowWorker) -> None:
    handle = await flow_worker.start(await _parent_of_a_napping_sub_flow(flow_worker))
    for _ in range(100):
        status = await client.get_status(flow_worker.client, handle.id)
        if status["nodes"].get("sub", {}).get("status") == "running":
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    await flow_worker.cancel_and_wait(handle)
    assert await assert_run_tells_the_truth(
        flow_worker.client, flow_worker.sessions, handle.id
    ) == ("cancelled")
    child_rows = await flow_worker.task_rows(f"{handle.id}/sub")
    assert child_rows["nap"]["status"] == "cancelled"


async def test_a_templated_reviewer_of_no_such_user_fails_the_node_in_plain_words(
    flow_worker: FlowWorker, people: People
) -> None:
    definition = _review_by(assignee="{{ input.who }}")
    nobody = str(uuid.uuid4())
    run_id = await flow_worker.fail(definition, {"who": nobody}, tenant_id=people.tenant)
    run = await flow_worker.run_row(run_id)
    assert (
        f"user {nobody} (hitl `review`, config.assigneeId) does not exist in tenant"
        in (run["error"])
    )
    assert (await flow_worker.task_rows(run_id))["review"]["status"] == "failed"


async def test_an_escalation_to_no_such_user_fails_the_node_before_a_task_opens(
    flow_worker: FlowWorker, people: People
) -> None:
    """The escalation target is known only once rendered: it is checked before the task
    opens, so the inbox never offers a task whose escalation leads nowhere.
    """
    definition = {
        "nodes": [
            node("start", "start"),
            node(
                "review",
                "hitl",
                {
                    "title": "Look",
                    "decisionType": "approval",
                    "assigneeId": people.finance,
                    "escalation": [{"afterSeconds": 1, "toUser": "{{ input.lead }}"}],
                },
                onError="continue",
            ),
            node("after", "end", {"outputs": {"error": "{{ nodes.review.output.error }}"}}),
        ],
        "edges": [edge("start", "review"), edge("review", "after")],
    }
    nobody = str(uuid.uuid4())
    result, run_id = await flow_worker.run(definition, {"lead": nobody}, tenant_id=people.tenant)
    assert (
        "(hitl `review`, config.escalation[0].toUser) does not exist in tenant"
        in (result.outputs["error"])
    )
    run = await flow_worker.run_row(run_id)
    assert run["status"] == "completed"
    assert await _hitl_rows(flow_worker, run["id"]) == []
    rows = await flow_worker.task_rows(run_id)
    assert rows["review"]["status"] == "failed"


async def test_a_terminated_run_reads_as_ended_through_the_client(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(_parked_flow(people), tenant_id=people.tenant)
    await open_task(handle)
    await handle.terminate(reason="operator says stop")
    status = await client.get_status(flow_worker.client, handle.id)
    assert status["status"] == "cancelled"
    assert "terminated" in status["error"]
    assert status["open_hitl_tasks"] == []
    assert {n["status"] for n in status["nodes"].values()} <= {"completed", "cancelled"}
    # ... and the rows agree once the reconciler has been round (within its bound)
    assert await assert_run_tells_the_truth(
        flow_worker.client, flow_worker.sessions, handle.id
    ) == ("cancelled")


async def test_a_failed_run_is_explained_by_its_innermost_cause(flow_worker: FlowWorker) -> None:
    definition = {
        "nodes": [node("start", "start"), node("t", "transform", {"output": "{{ input.x.y }}"})],
        "edges": [edge("start", "t")],
    }
    handle = await flow_worker.start(definition, {"x": {"z": 1}})
    try:
        await handle.result()
        raise AssertionError("expected a failure")
    except WorkflowFailureError as exc:
        text_ = client.failure_text(exc)
    assert text_.startswith("failed: node 't' failed: config.output: '{{ input.x.y }}'")
    assert "`input.x` has no key 'y'; it has 'z'" in text_


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


async def test_a_malformed_run_argument_fails_at_once_with_a_row(flow_worker: FlowWorker) -> None:
    """As plain `temporal workflow start --input` can send it: the argument is not a FlowRun."""
    for arguments in (
        [{"definition": {"nodes": []}, "inputs": [1, 2]}],
        ["hello"],
        [{"tags": "x"}],
        [],
        [{"workflow_id": "x"}, {"y": 1}],
    ):
        workflow_id = f"bad-arg-{uuid.uuid4().hex[:8]}"
        handle = await flow_worker.client.start_workflow(
            client.FLOW_RUN, args=arguments, id=workflow_id, task_queue=flow_worker.task_queue
        )
        flow_worker.started.append(workflow_id)
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), timeout=30)
        assert client.failure_text(failed.value).startswith("failed: invalid FlowRun argument: ")
        run = await flow_worker.run_row(workflow_id)
        assert run["status"] == "failed"
        assert run["error"].startswith("invalid FlowRun argument: ")


async def test_a_sub_flow_cancelled_on_its_own_fails_its_node_not_the_parent_silently(
    flow_worker: FlowWorker,
) -> None:
    handle = await flow_worker.start(await _parent_of_a_napping_sub_flow(flow_worker))
    child_handle = flow_worker.client.get_workflow_handle(f"{handle.id}/sub")
    for _ in range(100):
        if "nap" in (await flow_worker.task_rows(child_handle.id)):
            break
        await asyncio.sleep(0.1)
    await child_handle.cancel()
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "the sub-flow was cancelled" in client.failure_text(failed.value)
    assert await assert_run_tells_the_truth(
        flow_worker.client, flow_worker.sessions, handle.id
    ) == ("failed")


async def test_a_running_loop_has_its_row(flow_worker: FlowWorker) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": "{{ [1, 2] }}"}),
            {**node("nap", "wait", {"seconds": 3600}), "parentId": "each"},
        ],
        "edges": [edge("start", "each")],
    }
    handle = await flow_worker.start(definition)
    for _ in range(100):
        rows = await flow_worker.task_rows(handle.id)
        if "each" in rows:
            break
        await asyncio.sleep(0.1)
    assert rows["each"]["status"] == "running"
    await flow_worker.cancel_and_wait(handle)
    assert (await flow_worker.task_rows(handle.id))["each"]["status"] == "cancelled"


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


async def test_a_cancelled_or_terminated_run_is_not_called_failed(flow_worker: FlowWorker) -> None:
    nap = {
        "nodes": [node("start", "start"), node("nap", "wait", {"seconds": 3600})],
        "edges": [edge("start", "nap")],
    }
    for end, expected in (("cancel", "cancelled"), ("terminate", "terminated by an operator: x")):
        handle = await flow_worker.start(nap)
        await asyncio.sleep(0.5)
        await (handle.cancel() if end == "cancel" else handle.terminate(reason="x"))
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
        assert client.failure_text(ended.value) == expected


async def test_the_client_refuses_a_run_id_that_cannot_key_a_run(flow_worker: FlowWorker) -> None:
    """Rows are keyed by the run id: reusing one would mix two runs in one row."""
    simple = {
        "nodes": [node("start", "start"), node("t", "transform", {"output": 1})],
        "edges": [edge("start", "t")],
    }
    run_id = f"once-{uuid.uuid4().hex[:8]}"
    handle = await client.start_run(
        flow_worker.client, flow_worker.task_queue, FlowRunInput(definition=simple), run_id=run_id
    )
    flow_worker.started.append(run_id)
    await handle.result()
    with pytest.raises(client.RunIdRefused, match="already used"):
        await client.start_run(
            flow_worker.client,
            flow_worker.task_queue,
            FlowRunInput(definition=simple),
            run_id=run_id,
        )
    with pytest.raises(client.RunIdRefused, match="over the 120"):
        await client.start_run(
            flow_worker.client,
            flow_worker.task_queue,
            FlowRunInput(definition=simple),
            run_id="r" * 121,
        )
    assert (await flow_worker.run_row(run_id))["outputs"] == {"t": 1}


def test_a_node_id_too_long_to_key_its_rows_is_refused() -> None:
    long_id = "n" * 129
    problems = problems_of(
        {
            "nodes": [node("start", "start"), node(long_id, "transform", {"output": 1})],
            "edges": [edge("start", long_id)],
        }
    )
    assert any("129 characters, over 128" in p for p in problems)


async def test_a_sub_flow_named_outright_must_exist_before_any_node_runs(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/before", Reply(body={}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("call", "api", {"url": f"{http_peer.base}/before"}),
            node("sub", "workflow", {"workflowId": "no-such-flow"}),
        ],
        "edges": [edge("start", "call"), edge("call", "sub")],
    }
    run_id = await flow_worker.fail(definition)
    run = await flow_worker.run_row(run_id)
    assert "node 'sub': config.workflowId: no stored flow named 'no-such-flow'" in run["error"]
    assert http_peer.calls("GET", "/before") == []
    assert await flow_worker.task_rows(run_id) == {}


async def test_a_second_run_under_a_used_id_is_refused_and_the_first_record_kept(
    flow_worker: FlowWorker,
) -> None:
    """As plain `temporal workflow start` allows: the first run's rows must not be mixed."""
    first = {
        "nodes": [node("start", "start"), node("one", "transform", {"output": 1})],
        "edges": [edge("start", "one")],
    }
    second = {
        "nodes": [node("begin", "start"), node("two", "transform", {"output": 2})],
        "edges": [edge("begin", "two")],
    }
    _, run_id = await flow_worker.run(first)
    handle = await flow_worker.start_raw(FlowRunInput(definition=second), workflow_id=run_id)
    with pytest.raises(WorkflowFailureError) as refused:
        await handle.result()
    assert "was already used by an earlier run (completed)" in client.failure_text(refused.value)
    run = await flow_worker.run_row(run_id)
    assert (run["status"], run["outputs"], run["error"]) == ("completed", {"one": 1}, None)
    assert set(await flow_worker.task_rows(run_id)) == {"start", "one"}


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
