"""`meta-agent runs list|show` as plain text (not a terminal): graph order, columns, children.

The rows are written directly, as the worker would have written them, so the order the
command prints cannot come from the order they were written in.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import People, decide, open_task, review_flow
from tests.test_cli import ameta_agent
from workers.run_progress import graph_ranks

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _basket_drawn_backwards() -> dict[str, Any]:
    """basket-loop with its nodes listed last to first, so drawing order is not graph order."""
    flow = json.loads((ROOT / "examples" / "flows" / "basket-loop.json").read_text())
    flow["nodes"].reverse()
    return dict(flow)


async def _tenant(s: AsyncSession) -> str:
    tenant = str(uuid.uuid4())
    await s.execute(
        text("INSERT INTO tenants (id, name) VALUES (:i, :n)"), {"i": tenant, "n": f"t-{tenant}"}
    )
    return tenant


async def _run(s: AsyncSession, run_id: str, **columns: Any) -> str:
    row_id = str(uuid.uuid4())
    values = {"id": row_id, "orchestrator_run_id": run_id, "status": "running", **columns}
    names = ", ".join(values)
    await s.execute(
        text(f"INSERT INTO workflow_runs ({names}) VALUES ({', '.join(':' + n for n in values)})"),
        values,
    )
    return row_id


async def _node(
    s: AsyncSession, run_row: str, task_id: str, node_id: str, kind: str, status: str, **extra: Any
) -> None:
    values = {
        "workflow_run_id": run_row,
        "orchestrator_task_id": task_id,
        "node_id": node_id,
        "agent_type": kind,
        "status": status,
        **extra,
    }
    names = ", ".join(values)
    await s.execute(
        text(f"INSERT INTO task_instances ({names}) VALUES ({', '.join(':' + n for n in values)})"),
        values,
    )


def test_graph_order_is_topological_within_each_container() -> None:
    ranks = graph_ranks(_basket_drawn_backwards())
    assert sorted(["done", "sum", "start", "each"], key=ranks.__getitem__) == [
        "start",
        "each",
        "sum",
        "done",
    ]
    assert ranks["price"] < ranks["line"]  # inside the loop's body


async def test_runs_show_prints_a_live_run_in_graph_order_with_columns(
    database_url: str, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    run_id = f"show-{uuid.uuid4().hex[:10]}"
    async with session_maker() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"basket-{run_id}", definition=_basket_drawn_backwards()
        )
        row = await _run(
            s, run_id, workflow_id=stored.workflow_id, workflow_version=1, started_at=T0
        )
        at = T0.__add__
        # Written in an order that is neither graph order nor start order.
        await _node(
            s, row, "sum", "sum", "transform", "running", started_at=at(timedelta(seconds=9))
        )
        await _node(
            s, row, "each[1].line", "line", "transform", "completed",
            started_at=at(timedelta(seconds=5)), completed_at=at(timedelta(seconds=5.2)),
        )  # fmt: skip
        await _node(
            s, row, "each[10].price", "price", "api", "completed", retry_count=2,
            started_at=at(timedelta(seconds=1)), completed_at=at(timedelta(seconds=4)),
        )  # fmt: skip
        await _node(
            s, row, "each[1].price", "price", "api", "completed",
            started_at=at(timedelta(seconds=1)), completed_at=at(timedelta(seconds=1.5)),
        )  # fmt: skip
        await _node(s, row, "each", "each", "loop", "running", started_at=T0)
        await _node(s, row, "start", "start", "start", "completed", started_at=T0, completed_at=T0)

    shown = await ameta_agent("runs", "show", run_id, env={"DATABASE_URL": database_url})
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "completed None" not in out
    assert re.search(r"^started  2026-01-05 09:00:00   \(still running\)$", out, re.M), out
    assert f"flow     basket-{run_id} v1" in out
    table = out[out.index("nodes\n") + 6 : out.index("outputs\n")].splitlines()
    assert table[0].split() == ["NODE", "STATUS", "TYPE", "DURATION", "ATTEMPTS", "LABEL"]
    assert [line.split()[0] for line in table[1:]] == [
        "start",
        "each",
        "each[1].price",
        "each[1].line",
        "each[10].price",
        "sum",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert rows["each[10].price"] == ["completed", "api", "3.0s", "3", "Price"]
    assert rows["each[1].line"] == ["completed", "transform", "0.2s", "1", "Line", "total"]
    assert rows["sum"][:2] == ["running", "transform"]  # a duration still counting
    assert table[1].startswith("  start ")
    assert table[3].startswith("    each[1].price ")  # iterations indented under their loop


async def test_runs_list_names_flows_and_hides_sub_flow_runs_unless_asked(
    database_url: str, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    parent_id = f"parent-{uuid.uuid4().hex[:10]}"
    async with session_maker() as s, s.begin():
        tenant = await _tenant(s)
        stored = await queries.save_workflow_version(
            s, name=f"orders-{parent_id}", definition=_basket_drawn_backwards()
        )
        parent = await _run(
            s, parent_id, tenant_id=tenant, workflow_id=stored.workflow_id,
            workflow_version=1, started_at=T0, status="completed",
        )  # fmt: skip
        await _run(
            s, f"{parent_id}/lines[0].price", tenant_id=tenant, parent_run_id=parent,
            workflow_id=stored.workflow_id, workflow_version=1, started_at=T0,
        )  # fmt: skip
        await _run(s, f"inline-{parent_id}", tenant_id=tenant, started_at=T0)

    env = {"DATABASE_URL": database_url}
    listed = await ameta_agent("runs", "list", "--tenant", tenant, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "STARTED", "FLOW"]
    by_run = {line.split()[0]: line for line in lines[1:]}
    assert set(by_run) == {parent_id, f"inline-{parent_id}"}
    assert by_run[parent_id].endswith(f"orders-{parent_id} v1")
    assert str(stored.workflow_id) not in listed.stdout
    assert by_run[f"inline-{parent_id}"].endswith("(inline)")
    # Aligned: every column starts at the same place on every line.
    assert len({line.index("2026-01-05") for line in lines[1:]}) == 1
    assert len({line.index("STARTED") for line in lines[:1]} | {lines[1].index("2026")}) == 1

    every = await ameta_agent("runs", "list", "--tenant", tenant, "--all", env=env)
    assert f"{parent_id}/lines[0].price" in every.stdout
    assert "(sub-flow)" in every.stdout


async def test_runs_show_follow_prints_plain_progress_and_the_review_when_piped(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    flow_worker: FlowWorker,
    people: People,
) -> None:
    handle = await flow_worker.start(
        review_flow(), {"what": "a piped order"}, tenant_id=people.tenant
    )
    [task] = await open_task(handle)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
    }
    shown = await ameta_agent("runs", "show", handle.id, env=env)
    assert f"decide    meta-agent hitl decide {task['id']} --approve --as finance-" in shown.stdout
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", "runs", "show", handle.id, "--follow",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert follower.stdout is not None
    before: list[str] = []
    while not any(line.lstrip().startswith("decide ") for line in before):
        line = (await asyncio.wait_for(follower.stdout.readline(), 60)).decode()
        assert line, "the follower ended before it showed the review:\n" + "".join(before)
        before.append(line)
    # Shown while the run waits: the task, who decides, and the line that decides it.
    text_before = "".join(before)
    assert "waiting for review: Review a piped order" in text_before
    assert f"task      {task['id']}" in text_before
    assert "assignee  role finance" in text_before
    assert f"meta-agent hitl decide {task['id']} --approve --as finance-" in text_before
    assert ["review", "running"] in [line.split() for line in before]

    await decide(handle, task["id"], {"approved": True}, people.finance)
    rest = (await asyncio.wait_for(follower.communicate(), 60))[0].decode()
    assert follower.returncode == 0
    lines = rest.splitlines()
    assert ["review", "completed"] in [line.split() for line in lines]
    assert ["on_rejected", "skipped"] in [line.split() for line in lines]
    assert f"run {handle.id} completed" in lines
    assert "\x1b[" not in text_before + rest  # no terminal control codes in a pipe
