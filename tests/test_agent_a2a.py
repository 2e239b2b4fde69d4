"""The a2a agent against real A2A agents served by a2a-sdk in the suite."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from flow_language.drawing import edge, node
from tests.a2a_peer import A2APeer
from tests.flows import FlowWorker


def a2a_flow(config: dict[str, Any], ask_edge: bool = False, **data: Any) -> dict[str, Any]:
    nodes = [
        node("start", "start"),
        node("peer", "a2a", config, **data),
        node("use", "transform", {"output": "{{ nodes.peer.output.state }}"}),
    ]
    edges = [edge("start", "peer"), edge("peer", "use")]
    if ask_edge:
        nodes.append(
            node(
                "ask", "transform", {"output": "{{ nodes.peer.output.messages[-1].parts[0].text }}"}
            )
        )
        edges.append(edge("peer", "ask", "input_required"))
    return {"nodes": nodes, "edges": edges}


async def test_a_text_message_streams_to_completion_with_its_artifact(
    flow_worker: FlowWorker, a2a_peer: A2APeer
) -> None:
    config = {"agentUrl": a2a_peer.url("echo"), "message": "hello {{ input.who }}"}
    result, run_id = await flow_worker.run(a2a_flow(config), {"who": "ada"})
    row = (await flow_worker.task_rows(run_id))["peer"]
    out = row["outputs"]
    assert out["state"] == "completed"
    assert out["task_id"]
    assert out["artifacts"][0]["name"] == "echo"
    assert out["artifacts"][0]["parts"] == [{"text": "echo: hello ada"}]
    assert {"role": "agent", "parts": [{"text": "done"}]} in out["messages"]
    assert row["inputs"]["message"] == "hello ada"
    assert result.outputs == {"use": "completed"}


@pytest.mark.parametrize("mode", ["blocking", "polling", "streaming"])
async def test_a_data_message_completes_in_every_mode(
    mode: str, flow_worker: FlowWorker, a2a_peer: A2APeer
) -> None:
    config = {
        "agentUrl": a2a_peer.url("echo"),
        "message": {"order": "{{ input.order }}", "lines": [1, 2]},
        "mode": mode,
        "pollIntervalSeconds": 0.1,
    }
    _, run_id = await flow_worker.run(a2a_flow(config), {"order": 42})
    out = (await flow_worker.task_rows(run_id))["peer"]["outputs"]
    assert out["state"] == "completed"
    assert out["artifacts"][0]["parts"] == [{"data": {"echo": {"order": 42, "lines": [1, 2]}}}]


async def test_input_required_follows_the_input_required_edge(
    flow_worker: FlowWorker, a2a_peer: A2APeer
) -> None:
    config = {"agentUrl": a2a_peer.url("asker"), "message": "paint it"}
    result, run_id = await flow_worker.run(a2a_flow(config, ask_edge=True))
    assert result.outputs == {"ask": "Which colour?"}
    rows = await flow_worker.task_rows(run_id)
    assert rows["peer"]["outputs"]["state"] == "input-required"
    assert rows["peer"]["status"] == "completed"
    assert rows["use"]["status"] == "skipped"


async def test_input_required_without_an_edge_and_a_failed_task_fail_without_retry(
    flow_worker: FlowWorker, a2a_peer: A2APeer
) -> None:
    retry = {"maxAttempts": 3, "initialIntervalSeconds": 0.1}
    row = await flow_worker.failed_row(
        a2a_flow({"agentUrl": a2a_peer.url("asker"), "message": "x"}, retry=retry), "peer"
    )
    assert row["retry_count"] == 0
    assert "needs input (Which colour?)" in row["error"]
    assert "'input_required' edge" in row["error"]

    row = await flow_worker.failed_row(
        a2a_flow({"agentUrl": a2a_peer.url("failer"), "message": "x"}, retry=retry), "peer"
    )
    assert row["retry_count"] == 0
    assert "ended failed: out of stock" in row["error"]

    row = await flow_worker.failed_row(
        a2a_flow({"agentUrl": a2a_peer.url("nobody"), "message": "x"}, retry=retry), "peer"
    )
    assert row["retry_count"] == 0
    assert "no agent card" in row["error"]


async def test_cancelling_the_run_cancels_the_remote_task(
    flow_worker: FlowWorker, a2a_peer: A2APeer
) -> None:
    a2a_peer.started.clear()
    before = len(a2a_peer.cancelled)
    config = {"agentUrl": a2a_peer.url("sleeper"), "message": "take your time"}
    handle = await flow_worker.start(a2a_flow(config, timeoutSeconds=120))
    await asyncio.to_thread(a2a_peer.started.wait, 20)
    await asyncio.sleep(0.5)  # the task's first events reach the node
    assert await flow_worker.cancel_and_wait(handle) < 10
    assert len(a2a_peer.cancelled) == before + 1
    assert (await flow_worker.task_rows(handle.id))["peer"]["status"] == "cancelled"


async def test_the_node_timeout_ends_the_call_and_cancels_the_remote_task(
    flow_worker: FlowWorker, a2a_peer: A2APeer
) -> None:
    before = len(a2a_peer.cancelled)
    config = {"agentUrl": a2a_peer.url("sleeper"), "message": "slow"}
    row = await flow_worker.failed_row(
        a2a_flow(config, timeoutSeconds=3, retry={"maxAttempts": 1}), "peer"
    )
    assert row["status"] == "failed"
    for _ in range(50):
        if len(a2a_peer.cancelled) > before:
            break
        await asyncio.sleep(0.2)
    assert len(a2a_peer.cancelled) == before + 1


async def test_headers_carry_a_secret_to_the_agent_and_nowhere_else(
    flow_worker: FlowWorker, a2a_peer: A2APeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"a2a-{uuid.uuid4().hex}"
    monkeypatch.setenv("SECRET_A2A_TOKEN", token)
    seen = len(a2a_peer.authorizations)
    config = {
        "agentUrl": a2a_peer.url("echo"),
        "message": "hi",
        "headers": {"Authorization": "Bearer {{ secrets.A2A_TOKEN }}"},
    }
    result, run_id = await flow_worker.run(a2a_flow(config))
    assert result.outputs == {"use": "completed"}
    # The card request and the message both carried it.
    assert len(a2a_peer.authorizations) >= seen + 2
    assert set(a2a_peer.authorizations[seen:]) == {f"Bearer {token}"}
    row = (await flow_worker.task_rows(run_id))["peer"]
    assert token not in str(row)
    history = await flow_worker.client.get_workflow_handle(run_id).fetch_history()
    assert token not in history.to_json()
