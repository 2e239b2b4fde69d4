"""The run invariant, checked on every run once the workload is over.

A run the engine started must complete whatever faults it met: Temporal says COMPLETED, its
`workflow_runs` row says `completed`, its `task_instances` rows are exactly the node rows its
kind leaves (`flows.expected_rows`), each in the status it should end in, and the run's own
`status` query agrees. A review run has one review task, `completed`, with one decision.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus

from chaos.flows import expected_rows
from chaos.retry import Retries
from chaos.stack import Stack
from chaos.workload import Run
from workers.client import get_status

ENDED = {"completed", "failed", "skipped", "cancelled"}
HITL_OPEN = {"pending", "assigned", "in_progress", "escalated"}
#: Status queries in flight at once (each may replay a run on a worker).
QUERIES_AT_ONCE = 4


@dataclass
class Findings:
    """What the check counted and every problem it found, one line each."""

    rows_expected: int = 0
    rows_found: int = 0
    rows_wrong: int = 0
    hitl_tasks: int = 0
    hitl_decisions: int = 0
    queried: int = 0
    problems: list[str] = field(default_factory=list)


_RUNS = """
SELECT orchestrator_run_id AS run, status, completed_at FROM workflow_runs
WHERE orchestrator_run_id LIKE 'chaos-%'
"""
_TASKS = """
SELECT r.orchestrator_run_id AS run, t.orchestrator_task_id AS task, t.status
FROM task_instances t JOIN workflow_runs r ON r.id = t.workflow_run_id
WHERE r.orchestrator_run_id LIKE 'chaos-%'
"""
_HITL = """
SELECT r.orchestrator_run_id AS run, h.id, h.status,
       (SELECT count(*) FROM hitl_decisions d WHERE d.hitl_task_id = h.id) AS decisions,
       (SELECT count(*) FROM hitl_escalations e
         WHERE e.hitl_task_id = h.id AND e.status = 'pending') AS pending
FROM hitl_tasks h JOIN workflow_runs r ON r.id = h.workflow_run_id
WHERE r.orchestrator_run_id LIKE 'chaos-%'
"""


async def _read(stack: Stack, retries: Retries) -> tuple[dict[str, Any], ...]:
    """Every chaos run's rows, by run id (read again from scratch after an outage)."""

    async def attempt() -> tuple[dict[str, Any], ...]:
        async with stack.sessions() as s:
            runs = {r["run"]: dict(r) for r in (await s.execute(text(_RUNS))).mappings()}
            tasks: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for t in (await s.execute(text(_TASKS))).mappings():
                tasks[t["run"]].append(dict(t))
            hitl: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for h in (await s.execute(text(_HITL))).mappings():
                hitl[h["run"]].append(dict(h))
        return runs, tasks, hitl

    return await retries.call("read rows", attempt)


def _check_rows(
    run: Run, row: dict[str, Any] | None, tasks: list[dict[str, Any]], found: Findings
) -> list[str]:
    """Problems of one completed run's rows; counts its rows in `found`."""
    expected = expected_rows(run.kind, run.approve)
    found.rows_expected += 1 + len(expected)
    found.rows_found += (row is not None) + len(tasks)
    problems: list[str] = []
    if row is None:
        return ["no workflow_runs row"]
    if row["status"] != "completed" or row["completed_at"] is None:
        found.rows_wrong += 1
        problems.append(f"workflow_runs row {row['status']!r} (completed_at {row['completed_at']})")
    have = {t["task"]: t["status"] for t in tasks}
    for task, status in sorted(have.items()):
        if task not in expected:
            found.rows_wrong += 1
            problems.append(f"unexpected node row {task!r} ({status})")
        elif status != expected[task]:
            found.rows_wrong += 1
            problems.append(f"node row {task!r} is {status!r}, expected {expected[task]!r}")
    missing = sorted(set(expected) - set(have))
    if missing:
        problems.append(f"missing node rows {missing}")
    return problems


def _check_reviews(run: Run, hitl: list[dict[str, Any]], found: Findings) -> list[str]:
    found.hitl_tasks += len(hitl)
    found.hitl_decisions += sum(h["decisions"] for h in hitl)
    problems = [
        f"review task {h['id']} is {h['status']!r}" for h in hitl if h["status"] in HITL_OPEN
    ]
    problems += [
        f"review task {h['id']} has {h['pending']} pending escalations"
        for h in hitl
        if h["pending"]
    ]
    if not run.kind.review:
        return problems + ([f"{len(hitl)} review tasks in a run without a review"] if hitl else [])
    if len(hitl) != 1:
        problems.append(f"{len(hitl)} review task rows, expected 1")
    for h in hitl:
        if h["status"] != "completed":
            problems.append(f"review task {h['id']} is {h['status']!r}, expected 'completed'")
        if h["decisions"] != 1:
            problems.append(f"review task {h['id']} has {h['decisions']} decisions, expected 1")
    return problems


async def _check_query(
    stack: Stack, retries: Retries, run: Run, gate: asyncio.Semaphore
) -> list[str]:
    """The run's own `status` query must say what its rows say."""
    async with gate:
        view = await retries.call("status query", lambda: get_status(stack.client, run.id))
    problems = []
    if view.get("status") != "completed":
        problems.append(f"status query says {view.get('status')!r}")
    live = {k: v["status"] for k, v in view.get("nodes", {}).items() if v["status"] not in ENDED}
    if live:
        problems.append(f"status query has live nodes {live}")
    if view.get("open_hitl_tasks"):
        problems.append("status query lists open review tasks")
    return problems


async def check(stack: Stack, retries: Retries, runs: list[Run]) -> Findings:
    """Every run of the workload against the invariant; problems are prefixed with the run."""
    found = Findings()
    rows, tasks, hitl = await _read(stack, retries)
    gate = asyncio.Semaphore(QUERIES_AT_ONCE)
    completed = [r for r in runs if r.status == WorkflowExecutionStatus.COMPLETED]
    queries = await asyncio.gather(*(_check_query(stack, retries, r, gate) for r in completed))
    found.queried = len(completed)
    by_run = dict(zip((r.id for r in completed), queries, strict=True))
    for run in runs:
        problems = list(run.notes)
        if not run.started:
            problems.append(f"never started ({run.start_attempts} attempts)")
        elif run.status is None:
            problems.append("still open in Temporal when the driver stopped waiting")
        elif run.status != WorkflowExecutionStatus.COMPLETED:
            problems.append(f"Temporal says {run.status.name}: {run.error}")
            row = rows.get(run.id)
            problems.append(f"its row says {row['status'] if row else 'nothing (no row)'}")
        else:
            problems += _check_rows(run, rows.get(run.id), tasks.get(run.id, []), found)
            problems += by_run[run.id]
        if run.started:
            problems += _check_reviews(run, hitl.get(run.id, []), found)
        found.problems += [f"{run.id}: {p}" for p in problems]
    return found
