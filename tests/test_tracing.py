"""Traces of a run, read back from an in-memory span exporter.

The `traced_worker` has its own task queue and a client with the tracing plugin, as
`meta-agent worker` builds it when OTEL_* variables ask for traces. Asserted:
one trace per run, a span per node execution with its attributes, the parent
links from the run down to an HTTP call and across a child flow, the W3C
`traceparent` the HTTP peer receives, and no span emitted twice when the run's
history is replayed.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import format_span_id, format_trace_id
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin
from temporalio.worker import Replayer

from flow_language.drawing import edge, node
from persistence import queries
from tests.hitl_support import People, decide, open_task, review_flow
from tests.http_peer import HttpPeer, Reply
from tests.span_capture import TracedWorker
from workers.cli_traces import cmd_traces
from workers.json_converter import DATA_CONVERTER
from workers.settings import Settings
from workers.trace_file import JsonLinesSpanExporter
from workers.worker import workflow_classes


def _by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans if s.context is not None}


def _attr(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _run_span(spans: list[ReadableSpan], run_id: str) -> ReadableSpan:
    return _one(spans, **{"run.id": run_id, "node.id": None})


def _node_span(spans: list[ReadableSpan], run_id: str, node_id: str) -> ReadableSpan:
    """The workflow's span of a node (not an agent's attempt span)."""
    return _one(spans, **{"run.id": run_id, "node.id": node_id, "node.attempt": None})


def _one(spans: list[ReadableSpan], **attributes: Any) -> ReadableSpan:
    found = [
        s for s in spans if all(_attr(s, f"meta_agent.{k}") == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (attributes, [s.name for s in found])
    return found[0]


async def test_a_run_is_one_trace_from_its_span_down_to_the_http_call_and_the_child_flow(
    traced_worker: TracedWorker, http_peer: HttpPeer
) -> None:
    worker = traced_worker
    http_peer.route("GET", "/orders/7", Reply(200, {"id": 7, "total": 12}))
    child = {
        "nodes": [node("start", "start"), node("double", "transform", {"output": "{{ 2 * 6 }}"})],
        "edges": [edge("start", "double")],
    }
    async with worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"child-{uuid.uuid4().hex[:6]}", definition=child
        )
    definition = {
        "nodes": [
            node("start", "start"),
            node("fetch", "api", {"url": f"{http_peer.base}/orders/7"}, label="Fetch order"),
            node("sub", "workflow", {"workflowId": str(stored.workflow_id)}),
            node("done", "end", {"outputs": {"total": "{{ nodes.fetch.output.json.total }}"}}),
        ],
        "edges": [edge("start", "fetch"), edge("fetch", "sub"), edge("sub", "done")],
    }
    result, run_id = await worker.run(definition)
    assert result.outputs == {"total": 12}

    spans = worker.finished()
    run_span = _run_span(spans, run_id)
    assert _attr(run_span, "meta_agent.status") == "completed"
    trace_id = run_span.context.trace_id
    # Every span of the run and of its child flow is in the run's one trace.
    mine = [s for s in spans if s.context.trace_id == trace_id]
    runs = {run_id, f"{run_id}/sub"}
    assert {_attr(s, "meta_agent.run.id") for s in mine} >= runs
    assert all(s in mine for s in spans if _attr(s, "meta_agent.run.id") in runs)

    # A span per node execution, child of the run's span, with what operators filter on.
    for node_id, node_type in [("start", "start"), ("fetch", "api"), ("sub", "workflow")]:
        span = _node_span(mine, run_id, node_id)
        assert _attr(span, "meta_agent.node.type") == node_type
        assert _parent(span) == run_span.context.span_id
        assert _attr(span, "meta_agent.status") == "completed"
    fetch = _node_span(mine, run_id, "fetch")
    assert fetch.name == "api: Fetch order"
    assert _attr(fetch, "meta_agent.node.attempts") == 1

    # The agent's attempt span under the node's, the HTTP client span under the attempt.
    attempt = _one(mine, **{"node.id": "fetch", "node.attempt": 1})
    assert _parent(attempt) == fetch.context.span_id
    (http,) = [s for s in mine if _parent(s) == attempt.context.span_id]
    assert http.kind.name == "CLIENT"
    # ... and the peer received that span as its parent, in W3C form.
    (request,) = http_peer.calls("GET", "/orders/7")
    header = {k.lower(): v for k, v in request.headers.items()}["traceparent"]
    assert header == f"00-{format_trace_id(trace_id)}-{format_span_id(http.context.span_id)}-01"

    # The child flow's run span hangs under the parent's `sub` node span; its nodes under it.
    child_run = _run_span(mine, f"{run_id}/sub")
    assert _parent(child_run) == _node_span(mine, run_id, "sub").context.span_id
    assert _parent(_node_span(mine, f"{run_id}/sub", "double")) == child_run.context.span_id
    by_id = _by_id(mine)
    assert all(_parent(s) in by_id for s in mine if s is not run_span)

    # Replaying the run's history emits none of its spans again.
    before = len(worker.finished())
    history = await worker.client.get_workflow_handle(run_id).fetch_history()
    await Replayer(
        workflows=list(workflow_classes()),
        data_converter=DATA_CONVERTER,
        plugins=[OpenTelemetryPlugin()],
    ).replay_workflow(history)
    assert len(worker.finished()) == before


async def test_a_failed_node_span_carries_its_error(
    traced_worker: TracedWorker, http_peer: HttpPeer
) -> None:
    worker = traced_worker
    http_peer.route("GET", "/missing", Reply(404, {"error": "no such order"}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("fetch", "api", {"url": f"{http_peer.base}/missing"}),
        ],
        "edges": [edge("start", "fetch")],
    }
    run_id = await worker.fail(definition)
    spans = worker.finished()
    fetch = _node_span(spans, run_id, "fetch")
    assert _attr(fetch, "meta_agent.status") == "failed"
    assert "404" in _attr(fetch, "meta_agent.error")
    assert fetch.status.status_code.name == "ERROR"
    run_span = _run_span(spans, run_id)
    assert _attr(run_span, "meta_agent.status") == "failed"
    assert run_span.status.status_code.name == "ERROR"


async def test_meta_agent_traces_draws_a_runs_tree_from_the_trace_file(
    traced_worker: TracedWorker,
    http_peer: HttpPeer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    http_peer.route("GET", "/orders/3", Reply(200, {"id": 3}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("fetch", "api", {"url": f"{http_peer.base}/orders/3"}, label="Fetch order 3"),
        ],
        "edges": [edge("start", "fetch")],
    }
    _, run_id = await traced_worker.run(definition)
    await traced_worker.run(definition)  # another run of the same flow: not drawn
    file = tmp_path / "traces.jsonl"
    JsonLinesSpanExporter(file).export(traced_worker.finished())
    settings = Settings(traces_file=str(file))

    assert await cmd_traces(argparse.Namespace(run=run_id), settings) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("flow ")  # the run's span is the root
    fetch = next(i for i, line in enumerate(lines) if line.startswith("  api: Fetch order 3"))
    assert lines[fetch + 1].startswith("    api attempt 1")
    assert lines[fetch + 2].strip().startswith("GET")  # the HTTP call, under its attempt
    assert f"{http_peer.base}/orders/3" in lines[fetch + 2]
    assert len([line for line in lines if line.startswith("flow ")]) == 1  # not the other run
    assert await cmd_traces(argparse.Namespace(run="no-such-run"), settings) == 1


async def test_a_runs_trace_id_is_not_its_review_task_id(
    traced_worker: TracedWorker, people: People
) -> None:
    """Span ids come from a random of their own, not the one review task ids come from."""
    handle = await traced_worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
    (task,) = await open_task(handle)
    await decide(handle, task["id"], {"approved": True}, people.finance)
    await handle.result()
    run_span = _run_span(traced_worker.finished(), handle.id)
    trace_hex = format_trace_id(run_span.context.trace_id)
    assert trace_hex[:8] != task["id"].replace("-", "")[:8]
