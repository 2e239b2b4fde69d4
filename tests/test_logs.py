"""The worker's log lines: JSON with the run, node and tenant; expected failures in one line."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator

import pytest

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hitl_support import People
from tests.http_peer import HttpPeer, Reply
from workers.logs import JsonFormatter, RunContext, TextFormatter, use_json


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the worker's handler writes while the test runs (JSON, as off a terminal)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RunContext())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


async def test_an_agents_404_is_one_json_line_naming_run_node_and_tenant(
    flow_worker: FlowWorker, people: People, http_peer: HttpPeer, json_lines: io.StringIO
) -> None:
    http_peer.route("GET", "/gone", Reply(404, {"error": "no such order"}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("fetch", "api", {"url": f"{http_peer.base}/gone"}, retry={"maxAttempts": 1}),
        ],
        "edges": [edge("start", "fetch")],
    }
    run_id = await flow_worker.fail(definition, tenant_id=people.tenant)
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    failures = [
        line
        for line in lines
        if line.get("run_id") == run_id and "Completing activity as failed" in line["message"]
    ]
    assert len(failures) == 1, lines
    (failure,) = failures
    assert failure["node_id"] == "fetch"
    assert failure["tenant_id"] == people.tenant
    assert failure["attempt"] == 1
    assert "Http404" in failure["message"]
    assert "traceback" not in failure  # expected: its type says why


def test_an_unexpected_exception_keeps_its_traceback_and_text_names_the_run() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, None)
    try:
        raise KeyError("surprise")
    except KeyError:
        record.exc_info = sys.exc_info()
    run_id = f"run-{uuid.uuid4().hex[:6]}"
    record.__dict__["run_id"] = run_id  # as `extra={"run_id": ...}` sets it
    RunContext().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert "KeyError" in line["traceback"]
    assert line["run_id"] == run_id
    text = TextFormatter().format(record)
    assert f"[run={run_id}]" in text.splitlines()[0]


def test_json_off_a_terminal_text_on_one_unless_told() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_json(None, io.StringIO())
    assert not use_json(None, Tty())
    assert use_json("json", Tty())
    assert not use_json("text", io.StringIO())
