"""Scenario (e): many runs parked on a review, then all decided.

FlowRun: start → `hitl` approval (no assignee: any active user of the run's tenant may
decide) → an `api` node. Hand-written: a workflow that writes its run row, waits for an
update, then makes the same call. A run counts as parked once its `workflow_runs` row says
`waiting_hitl` and, for FlowRun, its `hitl_tasks` row exists. The first 50 runs are
decided one at a time (a reviewer's pace: the path's own latency), the rest 20 at a time
(a burst: the table's p50/p95, which then include waiting for the two cores), FlowRun's
through `workers.client.decide`; the latency is from just before a decision is sent to
the `started_at` of the next node's `task_instances` row (the time its activity began,
taken on the worker's clock, which is this machine's).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from benchmarks.hand_written import DECIDE_UPDATE, PARKED
from benchmarks.measure import Measurement, history_events, measuring, percentile, timed_runs
from benchmarks.scenarios.common import FLOW_RUN, HAND, Bench, Scenario, run_id
from benchmarks.support import edge, node
from workers.client import decide, result, start_run
from workflows.contract import FlowRunInput

RUNS = 1000
#: Decisions in flight at once: reviewers decide one by one, not in a burst of a thousand.
DECIDING = 20
#: Runs decided first one at a time, each run's end awaited before the next decision: the
#: latency of the decision path itself, without 19 others competing for the two cores.
ONE_AT_A_TIME = 50
#: Runs started at once while parking.
STARTING = 100


def review(url: str) -> dict[str, Any]:
    """An approval nobody in particular is assigned, then one `api` node on approval."""
    return {
        "nodes": [
            node("start", "start"),
            node("review", "hitl", {"title": "Review {{ input.n }}", "decisionType": "approval"}),
            node("after", "api", {"url": url}),
        ],
        "edges": [edge("start", "review"), edge("review", "after", "approved")],
    }


async def _count(bench: Bench, ids: list[str], sql: str) -> list[Any]:
    async with bench.sessions() as s:
        return list((await s.execute(text(sql), {"ids": ids})).all())


async def _parked(bench: Bench, ids: list[str], tasks: bool) -> None:
    """Until every run's row says `waiting_hitl` and, with `tasks`, its review task exists
    (FlowRun may record the status before `hitl_open` commits the task).
    """
    while True:
        rows = await _count(
            bench,
            ids,
            "SELECT count(*) FILTER (WHERE r.status = 'waiting_hitl'), "
            "(SELECT count(*) FROM hitl_tasks h JOIN workflow_runs w "
            "ON w.id = h.workflow_run_id WHERE w.orchestrator_run_id = ANY(:ids)) "
            "FROM workflow_runs r WHERE r.orchestrator_run_id = ANY(:ids)",
        )
        waiting, opened = rows[0]
        if waiting >= len(ids) and (opened >= len(ids) or not tasks):
            return
        await asyncio.sleep(0.25)


async def _measure(bench: Bench, side: str) -> Measurement:
    flow = side == FLOW_RUN
    worker = bench.workers.flow_run if flow else bench.workers.hand
    runs = bench.size(RUNS)
    ids = [run_id(side) for _ in range(runs)]

    async def start(i: int) -> None:
        if flow:
            params = FlowRunInput(
                definition=review(bench.url), inputs={"n": i}, tenant_id=bench.reviewer.tenant
            )
            await start_run(bench.client, bench.workers.flow_queue, params, run_id=ids[i])
        else:
            await bench.client.start_workflow(
                PARKED, {"url": bench.url}, id=ids[i], task_queue=bench.workers.hand_queue
            )

    sent: dict[str, datetime] = {}
    base_rss = worker.rss_mib()
    async with measuring([worker]) as usage:
        t0 = time.perf_counter()
        await timed_runs(runs, start, STARTING)
        await _parked(bench, ids, tasks=flow)
        park_seconds = time.perf_counter() - t0
        await asyncio.sleep(1)
        parked_rss = worker.rss_mib()
        tasks = dict(
            await _count(
                bench,
                ids,
                "SELECT r.orchestrator_run_id, h.id::text FROM hitl_tasks h "
                "JOIN workflow_runs r ON r.id = h.workflow_run_id "
                "WHERE r.orchestrator_run_id = ANY(:ids)",
            )
        )

        async def decide_one(i: int) -> None:
            sent[ids[i]] = datetime.now(UTC)
            if flow:
                await decide(
                    bench.client, ids[i], tasks[ids[i]], {"approved": True}, bench.reviewer.user
                )
                await result(bench.client, ids[i])
            else:
                handle = bench.client.get_workflow_handle(ids[i])
                await handle.execute_update(DECIDE_UPDATE, {"approved": True})
                await handle.result()

        alone = min(bench.size(ONE_AT_A_TIME), runs - 1)
        for i in range(alone):
            await decide_one(i)
        await timed_runs(runs - alone, lambda i: decide_one(alone + i), DECIDING)
        wall = time.perf_counter() - t0
    started = await _count(
        bench,
        ids,
        "SELECT r.orchestrator_run_id, t.started_at FROM task_instances t "
        "JOIN workflow_runs r ON r.id = t.workflow_run_id "
        "WHERE r.orchestrator_run_id = ANY(:ids) AND t.node_id = 'after'",
    )
    latency = {rid: (at - sent[rid]).total_seconds() for rid, at in started}
    one_by_one = [latency.pop(rid) for rid in ids[:alone] if rid in latency]
    return Measurement(
        "e",
        side,
        runs,
        runs,
        wall,
        list(latency.values()),
        usage.cpu_seconds,
        usage.peak_rss_mib,
        await history_events(bench.client, ids),
        machine_cpu_seconds=usage.machine_cpu_seconds,
        notes={
            "parked in (s)": park_seconds,
            "RSS parked +MiB": parked_rss - base_rss,
            "KiB per parked run": 1024 * (parked_rss - base_rss) / runs,
            "one at a time: decision → next node p50 s": percentile(one_by_one, 50),
            "one at a time p95 s": percentile(one_by_one, 95),
        },
    )


PARKED_RUNS = Scenario(
    "e",
    f"{RUNS:,} runs parked on a hitl node, then all decided",
    {
        HAND: lambda bench: _measure(bench, HAND),
        FLOW_RUN: lambda bench: _measure(bench, FLOW_RUN),
    },
    baseline=HAND,
)
