"""The `meta-agent` commands a person types, run as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

from flow_language.drawing import edge, node
from persistence import queries
from persistence.engine import one_off_session
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply
from workers.client import FLOW_RUN
from workers.temporal_dev import temporal_cli

ROOT = Path(__file__).resolve().parents[1]


def meta_agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


async def ameta_agent(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """meta_agent() off the event loop, so the in-process test worker keeps running."""
    return await asyncio.to_thread(meta_agent, *args, env=env)


def test_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "nodes": [
                    node("start", "start"),
                    node("x", "api", {"method": "GET"}),
                    node("y", "mystery"),
                ],
                "edges": [edge("start", "x")],
            }
        )
    )
    out = meta_agent("flows", "validate", str(bad))
    assert out.returncode == 1
    assert "node 'x': config: 'url' is a required property" in out.stdout
    assert "node 'y': unknown node type 'mystery'" in out.stdout
    assert "node 'y': unreachable from the start node" in out.stdout

    good = meta_agent("flows", "validate", str(ROOT / "examples" / "flows" / "tour-of-nodes.json"))
    assert good.returncode == 0, good.stdout


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`meta-agent ... | head -1`: the closed pipe ends the command quietly."""
    many = tmp_path / "many.json"
    steps = [{"id": f"s{i}", "type": "mystery", "config": {}} for i in range(5000)]
    many.write_text(json.dumps({"steps": steps, "connections": []}))
    with subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "flows", "validate", str(many)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader leaves after one line
        errors = proc.stderr.read()
        proc.wait(timeout=60)
    assert "5000 problem(s)" in first
    assert "Traceback" not in errors
    assert "BrokenPipe" not in errors


def test_the_executable_keeps_exit_codes_and_output_though_it_skips_teardown() -> None:
    """`entry_point` leaves with os._exit, which drops unflushed output unless it flushes."""
    script = Path(sys.executable).parent / "meta-agent"
    helped = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: meta-agent")

    unknown = meta_agent("no-such-command")
    assert unknown.returncode == 2
    assert "invalid choice: 'no-such-command'" in unknown.stderr

    unset = meta_agent("runs", "list", env={"DATABASE_URL": ""})
    assert unset.returncode == 2
    assert unset.stderr.startswith("meta-agent: ")


def test_every_example_flow_is_valid() -> None:
    from flow_language.validation import problems_of

    paths = sorted((ROOT / "examples" / "flows").glob("*.json"))
    assert len(paths) >= 6
    for path in paths:
        assert problems_of(json.loads(path.read_text())) == [], path.name


def _env(database_url: str, temporal_env: WorkflowEnvironment, queue: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "TEMPORAL_TASK_QUEUE": queue,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
    }


async def test_cancelling_an_unknown_run_says_not_found_rather_than_unreachable(
    database_url: str, temporal_env: WorkflowEnvironment
) -> None:
    env = _env(database_url, temporal_env, "unused")
    out = await ameta_agent("runs", "cancel", "no-such-run", env=env)
    assert out.returncode == 1
    assert out.stderr.startswith("meta-agent: not found in Temporal:"), out.stderr
    assert "no-such-run" in out.stderr


async def test_import_then_run_with_wait_prints_progress_and_outputs(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    flow_worker: FlowWorker,
    http_peer: HttpPeer,
) -> None:
    http_peer.route("GET", "/customers/1", Reply(body={"name": "Ada"}))
    http_peer.route("GET", "/customers/1/orders", Reply(body=[]))
    http_peer.route("GET", "/customers/1/tickets", Reply(body=[{"id": 3}]))
    env = _env(database_url, temporal_env, flow_worker.task_queue)
    name = f"c360-{os.getpid()}-{id(env)}"
    imported = await ameta_agent(
        "flows",
        "import",
        str(ROOT / "examples" / "flows" / "customer-360.json"),
        "--name",
        name,
        env=env,
    )
    assert imported.returncode == 0, imported.stderr
    assert "version 1" in imported.stdout
    again = await ameta_agent(
        "flows",
        "import",
        str(ROOT / "examples" / "flows" / "customer-360.json"),
        "--name",
        name,
        env=env,
    )
    assert "version 2" in again.stdout

    ran = await ameta_agent(
        "run",
        name,
        "--wait",
        "--id",
        f"cli-{name}",
        "--input",
        json.dumps({"api_base": http_peer.base, "customer_id": 1}),
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == f"cli-{name}"
    assert any(line.split() == ["merge", "completed"] for line in lines)
    outputs = json.loads(ran.stdout[ran.stdout.index("{") :])
    assert outputs == {
        "customer": {"profile": {"name": "Ada"}, "orders": [], "tickets": [{"id": 3}]}
    }

    shown = await ameta_agent("runs", "show", f"cli-{name}", env=env)
    assert "status   completed" in shown.stdout
    assert "tickets" in shown.stdout
    listed = await ameta_agent("runs", "list", "--status", "completed", env=env)
    assert f"cli-{name}" in listed.stdout


async def test_a_failed_run_exits_1_with_the_reason(
    database_url: str, temporal_env: WorkflowEnvironment, flow_worker: FlowWorker, tmp_path: Path
) -> None:
    flow = tmp_path / "bad-time.json"
    flow.write_text(
        json.dumps(
            {
                "nodes": [node("start", "start"), node("w", "wait", {"until": "{{ input.at }}"})],
                "edges": [edge("start", "w")],
            }
        )
    )
    out = await ameta_agent(
        "run",
        str(flow),
        "--wait",
        "--input",
        '{"at": "soon"}',
        env=_env(database_url, temporal_env, flow_worker.task_queue),
    )
    assert out.returncode == 1
    assert "config.until: 'soon' is not an ISO 8601 timestamp" in out.stderr


_ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id"],
    "properties": {"order_id": {"type": "integer"}},
}


async def _never_started(
    temporal_env: WorkflowEnvironment, flow_worker: FlowWorker, run_id: str
) -> None:
    """Neither Temporal nor Postgres has heard of `run_id`."""
    from sqlalchemy import text
    from temporalio.service import RPCError, RPCStatusCode

    with pytest.raises(RPCError) as err:
        await temporal_env.client.get_workflow_handle(run_id).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND
    async with flow_worker.sessions() as s:
        rows = await s.scalar(
            text("SELECT count(*) FROM workflow_runs WHERE orchestrator_run_id = :o"),
            {"o": run_id},
        )
    assert rows == 0


async def test_invalid_inputs_of_a_json_flow_start_nothing(
    database_url: str, temporal_env: WorkflowEnvironment, flow_worker: FlowWorker, tmp_path: Path
) -> None:
    flow = tmp_path / "needs-input.json"
    flow.write_text(json.dumps({"nodes": [node("start", "start", inputSchema=_ORDER_SCHEMA)]}))
    run_id = f"cli-inline-{os.getpid()}-{id(flow)}"
    out = await ameta_agent(
        "run",
        str(flow),
        "--id",
        run_id,
        "--input",
        "{}",
        env=_env(database_url, temporal_env, flow_worker.task_queue),
    )
    assert out.returncode == 1
    assert out.stderr == "invalid inputs: inputs: 'order_id' is a required property\n"
    assert out.stdout == ""
    await _never_started(temporal_env, flow_worker, run_id)


async def test_invalid_inputs_of_a_stored_flow_start_nothing(
    database_url: str, temporal_env: WorkflowEnvironment, flow_worker: FlowWorker
) -> None:
    from persistence import queries

    name = f"orders-{os.getpid()}-{id(flow_worker)}"
    definition = {
        "nodes": [
            node("start", "start", inputSchema=_ORDER_SCHEMA),
            node("echo", "transform", {"output": "{{ input.order_id }}"}),
        ],
        "edges": [edge("start", "echo")],
    }
    async with flow_worker.sessions() as s, s.begin():
        await queries.save_workflow_version(s, name=name, definition=definition)
    env = _env(database_url, temporal_env, flow_worker.task_queue)
    run_id = f"cli-stored-{name}"
    out = await ameta_agent("run", name, "--id", run_id, "--input", '{"order_id": "7"}', env=env)
    assert out.returncode == 1
    assert out.stderr == "invalid inputs: inputs.order_id: '7' is not of type 'integer'\n"
    await _never_started(temporal_env, flow_worker, run_id)

    fine = await ameta_agent("run", name, "--wait", "--input", '{"order_id": 7}', env=env)
    assert fine.returncode == 0, fine.stderr
    assert json.loads(fine.stdout[fine.stdout.index("{") :]) == {"echo": 7}


async def test_the_plain_temporal_cli_starts_a_stored_flow_with_json(
    temporal_env: WorkflowEnvironment, flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    from persistence import queries

    http_peer.route("GET", "/products/tea", Reply(body={"price": 4}))
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s,
            name=f"basket-{os.getpid()}",
            definition=json.loads((ROOT / "examples" / "flows" / "basket-loop.json").read_text()),
        )
    payload: dict[str, Any] = {
        "workflow_id": str(stored.workflow_id),
        "inputs": {"api_base": http_peer.base, "lines": [{"sku": "tea", "qty": 3}]},
    }
    address = temporal_env.client.service_client.config.target_host
    run_id = f"plain-cli-{os.getpid()}"
    started = await asyncio.to_thread(
        subprocess.run,
        [
            temporal_cli(),
            "workflow",
            "execute",
            "--address",
            address,
            "--type",
            FLOW_RUN,
            "--task-queue",
            flow_worker.task_queue,
            "--workflow-id",
            run_id,
            "--input",
            json.dumps(payload),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    row = await flow_worker.run_row(run_id)
    assert (row["status"], row["workflow_id"], row["workflow_version"]) == (
        "completed",
        stored.workflow_id,
        1,
    )
    assert row["outputs"] == {"lines": [12], "total": 12}


async def test_flows_import_takes_the_tenant_by_name_as_run_does(
    database_url: str, temporal_env: WorkflowEnvironment
) -> None:
    env = _env(database_url, temporal_env, "unused")
    tenant_id, tenant_name = uuid.uuid4(), f"acme-{uuid.uuid4().hex[:8]}"
    async with one_off_session(database_url) as session, session.begin():
        await session.execute(
            text("INSERT INTO tenants (id, name) VALUES (:i, :n)"),
            {"i": tenant_id, "n": tenant_name},
        )
    flow_file = str(ROOT / "examples" / "flows" / "customer-360.json")
    name = f"by-tenant-name-{tenant_name}"
    imported = await ameta_agent(
        "flows", "import", flow_file, "--name", name, "--tenant", tenant_name, env=env
    )
    assert imported.returncode == 0, imported.stderr
    async with one_off_session(database_url) as session:
        assert await queries.find_workflow_id(session, name, tenant_id=tenant_id)
    unknown = await ameta_agent("flows", "import", flow_file, "--tenant", "no-such-tenant", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("meta-agent: "), unknown.stderr
    assert "Traceback" not in unknown.stderr
