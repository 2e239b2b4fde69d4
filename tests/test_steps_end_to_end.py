"""One flow written in both formats, run on the dev server and Postgres: the steps/connections
document, stored or inline, gives the same outputs and the same node rows as its drawing.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply, Request
from tests.invariant import assert_run_tells_the_truth
from tests.test_cli import ameta_agent
from workers.client import start_run
from workflows.contract import FlowRunInput

#: A variable named like a scope name: it is `variables.input`, and `input` stays the run's.
VARIABLES = {"limit": 1000, "input": "a variable, not the run's input"}
_ORDER_URL = "{{ input.api_base }}/orders/{{ input.order_id }}"
_FLAG_BODY = {"order": "{{ input.order_id }}", "why": "{{ variables.input }}"}
_NOTE = {
    "order": "{{ input.order_id }}",
    "shadow": "{{ variables.input }}",
    "limit": "{{ variables.limit }}",
}
_BIG = "nodes.fetch.output.json.total > variables.limit"

STEPS = {
    "workflowId": "orders-steps",
    "name": "orders (steps)",
    "version": 1,
    "variables": VARIABLES,
    "steps": [
        {
            "id": "fetch",
            "type": "webhook",
            "config": {"method": "GET", "url": _ORDER_URL},
            "errorHandling": {"strategy": "retry", "maxRetries": 2, "retryDelay": 100},
        },
        {"id": "big", "type": "condition", "config": {}},
        {
            "id": "flag",
            "type": "agent",
            "config": {
                "agentType": "api",
                "method": "POST",
                "url": "{{ input.api_base }}/flags",
                "body": _FLAG_BODY,
            },
            "errorHandling": {"strategy": "skip"},
        },
        {"id": "fan", "type": "parallel", "config": {}},
        {
            "id": "lines",
            "type": "loop",
            "config": {
                "items": "{{ nodes.fetch.output.json.lines }}",
                "maxConcurrency": 2,
                "body": ["price"],
            },
        },
        {"id": "price", "type": "transform", "config": {"output": "{{ item.qty * item.price }}"}},
        {"id": "note", "type": "transform", "config": {"output": _NOTE}},
    ],
    "connections": [
        {"from": "fetch", "to": "big"},
        {"from": "big", "to": "flag", "condition": {"expression": _BIG}},
        {"from": "big", "to": "fan"},
        {"from": "fan", "to": "lines"},
        {"from": "fan", "to": "note"},
    ],
    "triggers": [{"type": "manual", "config": {}}],
}

DRAWING = {
    "nodes": [
        node("start", "start"),
        node(
            "fetch",
            "api",
            {"method": "GET", "url": _ORDER_URL},
            retry={"maxAttempts": 3, "initialIntervalSeconds": 0.1},
        ),
        node(
            "big",
            "condition",
            {"branches": [{"handle": "flag", "when": "{{ " + _BIG + " }}"}], "default": "fan"},
        ),
        node(
            "flag",
            "api",
            {"method": "POST", "url": "{{ input.api_base }}/flags", "body": _FLAG_BODY},
            onError="continue",
            retry={"maxAttempts": 1},
        ),
        node("fan", "transform", {"output": None}),
        node(
            "lines", "loop", {"items": "{{ nodes.fetch.output.json.lines }}", "maxConcurrency": 2}
        ),
        {
            **node("price", "transform", {"output": "{{ item.qty * item.price }}"}),
            "parentId": "lines",
        },
        node("note", "transform", {"output": _NOTE}),
    ],
    "edges": [
        edge("fetch", "big"),
        edge("big", "flag", "flag"),
        edge("big", "fan", "fan"),
        edge("fan", "lines"),
        edge("fan", "note"),
        edge("start", "fetch"),
    ],
    "variables": VARIABLES,
}

_COLUMNS = (
    "node_id",
    "agent_type",
    "status",
    "outputs",
    "error",
    "retry_count",
    "inputs",
    "agent_config",
)


def _serve(http_peer: HttpPeer, order_id: int, total: float) -> None:
    """The order, whose every other call answers 503 (so each run's first fetch is retried;
    the runs go one after the other), and a flags endpoint that fails (so `skip` is used).
    """
    calls: list[Request] = []

    def order(request: Request) -> Reply:
        calls.append(request)
        if len(calls) % 2:
            return Reply(503, {"error": "warming up"})
        lines = [{"qty": 2, "price": 2.5}, {"qty": 1, "price": total - 5}]
        return Reply(body={"total": total, "lines": lines})

    http_peer.route("GET", f"/orders/{order_id}", order)
    http_peer.route("POST", "/flags", Reply(500, {"error": "flags are down"}))


def _undated(value: Any) -> Any:
    """`value` without HTTP `Date` headers: the only part of a reply that tells two runs apart."""
    if isinstance(value, dict):
        return {k: _undated(v) for k, v in value.items() if k.lower() != "date"}
    if isinstance(value, list):
        return [_undated(v) for v in value]
    return value


async def _ran(flow_worker: FlowWorker, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's outputs and its node rows by task id (the columns that say what happened);
    `fields` are FlowRunInput's (`workflow_id` names a stored flow).
    """
    handle = await start_run(
        flow_worker.client,
        flow_worker.task_queue,
        FlowRunInput(**fields),
        run_id=f"steps-{uuid.uuid4().hex[:12]}",
    )
    flow_worker.started.append(handle.id)
    result, run_id = await handle.result(), handle.id
    assert await assert_run_tells_the_truth(flow_worker.client, flow_worker.sessions, run_id) == (
        "completed"
    )
    run_row = await flow_worker.run_row(run_id)
    assert run_row["outputs"] == result.outputs
    rows = await flow_worker.task_rows(run_id)
    return _undated(result.outputs), {
        task: _undated({c: row[c] for c in _COLUMNS}) for task, row in rows.items()
    }


async def _stored(flow_worker: FlowWorker, definition: dict[str, Any]) -> str:
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"steps-{uuid.uuid4().hex[:8]}", definition=definition
        )
    return str(stored.workflow_id)


async def test_a_small_order_runs_the_same_from_a_stored_steps_flow_and_its_drawing(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    _serve(http_peer, 1, 100)
    inputs = {"api_base": http_peer.base, "order_id": 1}
    steps_outputs, steps_rows = await _ran(
        flow_worker, workflow_id=await _stored(flow_worker, STEPS), inputs=inputs
    )
    drawn_outputs, drawn_rows = await _ran(flow_worker, definition=DRAWING, inputs=inputs)
    assert (
        steps_outputs
        == drawn_outputs
        == {
            "lines": [5.0, 95.0],
            "note": {"order": 1, "shadow": VARIABLES["input"], "limit": 1000},
        }
    )
    assert steps_rows == drawn_rows
    assert {t: r["status"] for t, r in steps_rows.items()} == {
        "start": "completed",
        "fetch": "completed",
        "big": "completed",
        "flag": "skipped",
        "fan": "completed",
        "lines": "completed",
        "lines[0].price": "completed",
        "lines[1].price": "completed",
        "note": "completed",
    }
    assert steps_rows["fetch"]["retry_count"] == 1  # maxRetries 2: the 503 was retried
    assert steps_rows["big"]["outputs"] == {"handle": "fan"}
    assert len(http_peer.calls("GET", "/orders/1")) == 4  # two runs, each retried once


async def test_a_large_order_runs_the_same_inline_as_a_steps_document_and_stored_as_a_drawing(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    _serve(http_peer, 3, 2400)
    inputs = {"api_base": http_peer.base, "order_id": 3}
    steps_outputs, steps_rows = await _ran(flow_worker, definition=STEPS, inputs=inputs)
    drawn_outputs, drawn_rows = await _ran(
        flow_worker, workflow_id=await _stored(flow_worker, DRAWING), inputs=inputs
    )
    assert steps_outputs == drawn_outputs
    assert "500" in steps_outputs["flag"]["error"]
    assert steps_rows == drawn_rows
    assert {t: r["status"] for t, r in steps_rows.items()} == {
        "start": "completed",
        "fetch": "completed",
        "big": "completed",
        "flag": "failed",
        "fan": "skipped",
        "lines": "skipped",
        "note": "skipped",
    }
    assert steps_rows["flag"]["retry_count"] == 0  # skip: no retry, and the run went on
    assert steps_rows["flag"]["inputs"]["body"] == {"order": 3, "why": VARIABLES["input"]}
    assert steps_rows["big"]["outputs"] == {"handle": "flag"}


async def test_a_steps_file_is_imported_run_and_shown_by_the_cli(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    flow_worker: FlowWorker,
    http_peer: HttpPeer,
    tmp_path: Path,
) -> None:
    _serve(http_peer, 5, 100)
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(STEPS))
    env = {
        "DATABASE_URL": database_url,
        "TEMPORAL_TASK_QUEUE": flow_worker.task_queue,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
    }
    name = f"steps-cli-{uuid.uuid4().hex[:8]}"
    imported = await ameta_agent("flows", "import", str(path), "--name", name, env=env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    async with flow_worker.sessions() as s:
        found = await queries.find_workflow_id(s, name)
        stored = await queries.load_definition(s, found, None)
    assert stored.definition == STEPS  # stored as written; each run reads it again

    run_id = f"steps-cli-{uuid.uuid4().hex[:8]}"
    inputs = json.dumps({"api_base": http_peer.base, "order_id": 5})
    ran = await ameta_agent("run", name, "--wait", "--id", run_id, "--input", inputs, env=env)
    flow_worker.started.append(run_id)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads(ran.stdout[ran.stdout.index("{") :])["lines"] == [5.0, 95.0]
    shown = await ameta_agent("runs", "show", run_id, env=env)
    order = [
        line.split()[0]
        for line in shown.stdout.splitlines()
        if line.split()[1:2] in (["completed"], ["skipped"])
    ]
    # graph order of the steps, read from the stored document
    assert order.index("start") < order.index("fetch") < order.index("big") < order.index("note")


async def test_an_imported_documents_triggers_become_the_flows_keeping_its_hooks(
    database_url: str, flow_worker: FlowWorker, tmp_path: Path
) -> None:
    """The schedules and events read `workflows.triggers`: importing a steps document puts
    its triggers there (a webhook `hooks add` gave the flow stays, since the document cannot
    know its id and secret); a document without `triggers` leaves them alone.
    """
    env = {"DATABASE_URL": database_url}
    name = f"steps-triggers-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "flow.json"
    hook = {"type": "webhook", "id": "wh_" + "x" * 30, "config": {"secretName": "S"}}

    async def imported(document: dict[str, Any]) -> list[Any]:
        path.write_text(json.dumps(document))
        done = await ameta_agent("flows", "import", str(path), "--name", name, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        async with flow_worker.sessions() as s:
            flow_id = await queries.find_workflow_id(s, name)
            found = await s.scalar(
                text("SELECT triggers FROM workflows WHERE id = :id"), {"id": flow_id}
            )
            if not any(t.get("type") == "webhook" for t in found):
                await s.execute(
                    text(
                        "UPDATE workflows SET triggers = triggers || CAST(:t AS jsonb) "
                        "WHERE id = :id"
                    ),
                    {"t": json.dumps([hook]), "id": flow_id},
                )
                await s.commit()
        return list(found)

    event = {"type": "event", "config": {"event": "order.placed"}}
    cron = {"type": "schedule", "config": {"cron": "0 8 * * *"}}
    assert await imported({**STEPS, "triggers": [event]}) == [event]
    assert await imported({**STEPS, "triggers": [cron]}) == [hook, cron]
    without = {k: v for k, v in STEPS.items() if k != "triggers"}
    assert await imported(without) == [hook, cron]
