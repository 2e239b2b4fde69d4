"""A run that cannot start is refused with a row that says why, and a record that is not its own
is never touched: malformed arguments, run ids that cannot key a run, ids already used, node ids
too long to key rows, sub-flows that do not exist.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError

from flow_language.drawing import edge, node
from flow_language.validation import problems_of
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply
from workers import client
from workflows.contract import FlowRunInput


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
