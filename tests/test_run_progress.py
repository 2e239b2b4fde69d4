"""A run's progress on its row (current step, completed steps, duration, where and how it
failed) and what started it (trigger type and metadata), as the write-back keeps them.

The `flow_worker` fixture's run invariant also checks every ended row of the suite: no
current step, its duration, and an error code when it failed or was cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from temporalio.client import WorkflowFailureError

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hitl_support import (
    People,
    decide,
    fetched_then_reviewed,
    open_task,
    review_flow,
    wait_for,
)
from tests.http_peer import HttpPeer, Reply
from workers import client
from workflows.contract import FlowRunInput
from workflows.contract.error_codes import code_of_type


def _chain(base: str, third: dict[str, Any] | None = None, **third_data: Any) -> dict[str, Any]:
    """A chain of api calls, start → one → two → three → done, `three` calling `/third`."""
    return {
        "nodes": [
            node("start", "start"),
            node("one", "api", {"url": f"{base}/first"}),
            node("two", "api", {"url": f"{base}/second"}),
            node(
                "three",
                "api",
                {"url": f"{base}/third", **(third or {})},
                retry={"maxAttempts": 1},
                **third_data,
            ),
            node("done", "end", {"outputs": {"n": "{{ nodes.three.output.json.n }}"}}),
        ],
        "edges": [
            edge("start", "one"),
            edge("one", "two"),
            edge("two", "three"),
            edge("three", "done"),
        ],
    }


async def _row_once(flow_worker: FlowWorker, run_id: str, **wanted: Any) -> dict[str, Any] | None:
    """The run's row once it has the `wanted` values (None before, or before it exists)."""
    async with flow_worker.sessions() as s:
        row = (
            (
                await s.execute(
                    text("SELECT * FROM workflow_runs WHERE orchestrator_run_id = :o"),
                    {"o": run_id},
                )
            )
            .mappings()
            .one_or_none()
        )
    if row is None or any(row[k] != v for k, v in wanted.items()):
        return None
    return dict(row)


def _duration_ms(row: dict[str, Any]) -> float:
    return float((row["completed_at"] - row["started_at"]).total_seconds() * 1000)


async def test_a_completed_run_records_its_steps_its_duration_and_its_trigger(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    for path in ("/first", "/second", "/third"):
        http_peer.route("GET", path, Reply(body={"n": 1}))
    metadata = {"scheduled_time": "2026-11-29T08:00:00Z", "schedule": "daily"}
    result, run_id = await flow_worker.run(
        _chain(http_peer.base), trigger_type="schedule", trigger_metadata=metadata
    )
    assert result.outputs == {"n": 1}
    row = await flow_worker.run_row(run_id)
    assert row["completed_steps"] == ["start", "one", "two", "three", "done"]
    assert row["current_step"] is None
    assert row["error_step"] is None
    assert row["error_code"] is None
    assert abs(row["execution_time_ms"] - _duration_ms(row)) <= 1
    assert row["trigger_type"] == "schedule"
    assert row["trigger_metadata"] == metadata


async def test_a_run_started_without_a_trigger_is_manual(flow_worker: FlowWorker) -> None:
    _, run_id = await flow_worker.run(
        {
            "nodes": [node("start", "start"), node("t", "transform", {"output": 1})],
            "edges": [edge("start", "t")],
        }
    )
    row = await flow_worker.run_row(run_id)
    assert (row["trigger_type"], row["trigger_metadata"]) == ("manual", {})
    assert row["completed_steps"] == ["start", "t"]


async def test_a_run_failing_at_its_third_step_names_it_and_its_class(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    for path in ("/first", "/second"):
        http_peer.route("GET", path, Reply(body={"n": 1}))
    # `/third` is not routed: the peer answers 404.
    run_id = await flow_worker.fail(_chain(http_peer.base))
    row = await flow_worker.run_row(run_id)
    assert row["status"] == "failed"
    assert "404" in row["error"]
    assert row["error_step"] == "three"
    assert row["error_code"] == "http_4xx"
    assert row["completed_steps"] == ["start", "one", "two"]
    assert row["current_step"] is None
    assert abs(row["execution_time_ms"] - _duration_ms(row)) <= 1


@pytest.mark.parametrize(
    ("reply", "third", "data", "code"),
    [
        (Reply(503, {"busy": True}), {}, {}, "http_5xx"),
        (Reply(body={"n": 1}, delay=3), {}, {"timeoutSeconds": 1}, "timeout"),
        # a template the validator cannot refuse: a key the answer does not have
        (
            Reply(body={"n": 1}),
            {"headers": {"x": "{{ nodes.two.output.json.gone }}"}},
            {},
            "template_error",
        ),
    ],
    ids=["5xx", "timeout", "template"],
)
async def test_the_error_code_classes_the_failure(
    flow_worker: FlowWorker,
    http_peer: HttpPeer,
    reply: Reply,
    third: dict[str, Any],
    data: dict[str, Any],
    code: str,
) -> None:
    for path in ("/first", "/second"):
        http_peer.route("GET", path, Reply(body={"n": 1}))
    http_peer.route("GET", "/third", reply)
    row = await flow_worker.run_row(await flow_worker.fail(_chain(http_peer.base, third, **data)))
    assert (row["error_step"], row["error_code"]) == ("three", code), row["error"]


def test_failure_types_read_as_documented_codes() -> None:
    assert code_of_type("Http404") == "http_4xx"
    assert code_of_type("Llm429") == "http_4xx"
    assert code_of_type("Http503") == "http_5xx"
    assert code_of_type("HttpTimeout") == "timeout"
    assert code_of_type("MissingSecret") == "secret_missing"
    assert code_of_type("OutputSchemaMismatch") == "invalid_output"
    assert code_of_type("InvalidInputs") == "invalid_input"
    assert code_of_type("FlowUnavailable") == "flow_unavailable"
    assert code_of_type("ExitCode3") == "node_failed"
    assert code_of_type(None) == "node_failed"


async def test_a_loop_body_failure_names_the_body_node(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": [1, 2]}),
            {**node("get", "api", {"url": f"{http_peer.base}/nothing"}), "parentId": "each"},
        ],
        "edges": [edge("start", "each")],
    }
    row = await flow_worker.run_row(await flow_worker.fail(definition))
    assert (row["error_step"], row["error_code"]) == ("get", "http_4xx"), row["error"]


async def test_while_an_agent_works_it_is_the_current_step(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/first", Reply(body={"n": 1}))
    http_peer.route("GET", "/second", Reply(body={"n": 2}, delay=4))
    http_peer.route("GET", "/third", Reply(body={"n": 3}))
    handle = await flow_worker.start(_chain(http_peer.base))

    row = await wait_for(lambda: _row_once(flow_worker, handle.id, current_step="two"), 6)
    assert row is not None, "the slow node never became the current step"
    assert row["completed_steps"] == ["start", "one"]
    await handle.result()
    row = await flow_worker.run_row(handle.id)
    assert row["current_step"] is None
    assert row["completed_steps"] == ["start", "one", "two", "three", "done"]


async def test_while_a_review_waits_it_is_the_current_step(
    flow_worker: FlowWorker, people: People, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/order", Reply(body={"total": 10}))
    definition = fetched_then_reviewed(f"{http_peer.base}/order", "Fetch", "Pause")
    handle = await flow_worker.start(definition, {"what": "order"}, tenant_id=people.tenant)
    [task] = await open_task(handle)

    row = await wait_for(lambda: _row_once(flow_worker, handle.id, status="waiting_hitl"))
    assert row is not None
    assert row["current_step"] == "review"
    assert row["completed_steps"] == ["start", "fetch", "pause"]
    await asyncio.sleep(0.5)  # nothing written later moves it
    assert (await flow_worker.run_row(handle.id))["current_step"] == "review"

    await decide(handle, task["id"], {"approved": True}, people.finance)
    await handle.result()
    row = await flow_worker.run_row(handle.id)
    assert row["current_step"] is None
    assert row["completed_steps"] == ["start", "fetch", "pause", "review", "on_approved"]


async def test_a_cancelled_run_is_classed_cancelled(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
    await open_task(handle)
    await flow_worker.cancel_and_wait(handle)
    row = await flow_worker.run_row(handle.id)
    assert (row["status"], row["error_code"], row["current_step"]) == (
        "cancelled",
        "cancelled",
        None,
    )


async def test_a_trigger_outside_the_vocabulary_is_refused(flow_worker: FlowWorker) -> None:
    definition = {"nodes": [node("start", "start")], "edges": []}
    with pytest.raises(ValidationError, match="trigger_type"):
        FlowRunInput(definition=definition, trigger_type="cron")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trigger_type 'cron' is not one of manual, schedule"):
        await client.start_run(
            flow_worker.client,
            flow_worker.task_queue,
            FlowRunInput(definition=definition),
            trigger_type="cron",
        )
    # A caller of another language can send anything: the run refuses it, with a row.
    handle = await flow_worker.start_raw({"definition": definition, "trigger_type": "cron"})
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    row = await flow_worker.run_row(handle.id)
    assert row["status"] == "failed"
    assert "trigger_type" in row["error"]
    assert row["error_code"] == "invalid_input"


async def test_start_run_takes_the_trigger_as_keywords(flow_worker: FlowWorker) -> None:
    definition = {"nodes": [node("start", "start")], "edges": []}
    handle = await client.start_run(
        flow_worker.client,
        flow_worker.task_queue,
        FlowRunInput(definition=definition),
        trigger_type="event",
        trigger_metadata={"event": "order.paid", "payload": {"order": 7}},
    )
    flow_worker.started.append(handle.id)
    await handle.result()
    row = await flow_worker.run_row(handle.id)
    assert row["trigger_type"] == "event"
    assert row["trigger_metadata"] == {"event": "order.paid", "payload": {"order": 7}}
