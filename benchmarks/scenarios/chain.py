"""Scenarios (a), (d), (f) and (g): runs of a linear chain of `api` nodes.

(a) FlowRun against the hand-written chain. (d) write-back on vs off: FlowRun against the
same worker with its database writes left out (`benchmarks.flow_run_without_rows`), the
ratio the issue asks for; and the hand-written chain with and without its row writes, what
writing back costs a careful user. (f) FlowRun with one worker process against two on the
same task queue. (g) the chain one run at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from benchmarks.hand_written import CHAIN, CHAIN_UNSANDBOXED
from benchmarks.measure import Measurement
from benchmarks.scenarios.common import (
    FLOW_RUN,
    HAND,
    HAND_UNSANDBOXED,
    Bench,
    Scenario,
    flow_runs,
    hand_runs,
)
from benchmarks.support import edge, node
from benchmarks.worker_processes import WorkerProcess

RUNS = 200
NODES = 10
#: (g): runs of the chain one after the other, for the latency of a run on an idle stack.
ONE_AT_A_TIME = 20

HAND_ROWS = "hand-written, rows"
HAND_NO_ROWS = "hand-written, no rows"
FLOW_RUN_NO_ROWS = "FlowRun, no rows"
ONE_WORKER = "FlowRun, 1 worker"
TWO_WORKERS = "FlowRun, 2 workers"


def chain(n: int, url: str) -> dict[str, Any]:
    """Start, then `n` `api` nodes in a row, each GETting `url`."""
    nodes = [node("start", "start")] + [node(f"n{i}", "api", {"url": url}) for i in range(n)]
    edges = [edge("start", "n0")] + [edge(f"n{i}", f"n{i + 1}") for i in range(n - 1)]
    return {"nodes": nodes, "edges": edges}


async def _flow(
    bench: Bench,
    scenario: str,
    side: str = FLOW_RUN,
    runs: int = RUNS,
    concurrency: int = 0,
    queue: str | None = None,
    workers: Sequence[WorkerProcess] | None = None,
) -> Measurement:
    return await flow_runs(
        bench,
        scenario,
        chain(NODES, bench.url),
        runs=bench.size(runs),
        nodes_per_run=NODES,
        side=side,
        concurrency=concurrency or None,
        queue=queue,
        workers=workers,
    )


async def _hand(
    bench: Bench,
    scenario: str,
    rows: bool,
    side: str = HAND,
    runs: int = RUNS,
    concurrency: int = 0,
) -> Measurement:
    return await hand_runs(
        bench,
        scenario,
        CHAIN_UNSANDBOXED if side == HAND_UNSANDBOXED else CHAIN,
        {"url": bench.url, "n": NODES, "rows": rows},
        runs=bench.size(runs),
        nodes_per_run=NODES,
        side=side,
        concurrency=concurrency or None,
    )


async def _flow_without_rows(bench: Bench) -> Measurement:
    with bench.workers.flow_run_without_rows_worker() as worker:
        # Its process is new: one run first, unmeasured, as the suite's warm-up gives the others.
        queue = bench.workers.no_rows_queue
        await _flow(dataclasses.replace(bench, scale=0), "d", FLOW_RUN_NO_ROWS, queue=queue)
        return await _flow(bench, "d", FLOW_RUN_NO_ROWS, queue=queue, workers=[worker])


async def _two_workers(bench: Bench) -> Measurement:
    with bench.workers.extra_flow_run_worker("flowrun-2") as second:
        # A few unmeasured runs first, which the two workers share: the second one is new.
        await flow_runs(bench, "f", chain(NODES, bench.url), runs=4, nodes_per_run=NODES)
        return await _flow(bench, "f", TWO_WORKERS, workers=[bench.workers.flow_run, second])


CHAIN_RUNS = Scenario(
    "a",
    f"{RUNS} concurrent runs of a {NODES}-node api chain",
    {
        HAND: lambda bench: _hand(bench, "a", rows=True),
        FLOW_RUN: lambda bench: _flow(bench, "a"),
        HAND_UNSANDBOXED: lambda bench: _hand(bench, "a", rows=True, side=HAND_UNSANDBOXED),
    },
    baseline=HAND,
)

WRITE_BACK = Scenario(
    "d",
    "(a) with write-back on vs off",
    {
        FLOW_RUN_NO_ROWS: _flow_without_rows,
        FLOW_RUN: lambda bench: _flow(bench, "d"),
        HAND_NO_ROWS: lambda bench: _hand(bench, "d", rows=False, side=HAND_NO_ROWS),
        HAND_ROWS: lambda bench: _hand(bench, "d", rows=True, side=HAND_ROWS),
    },
    baseline=FLOW_RUN_NO_ROWS,
)

WORKER_PROCESSES = Scenario(
    "f",
    "(a) on 1 vs 2 FlowRun worker processes",
    {
        ONE_WORKER: lambda bench: _flow(bench, "f", side=ONE_WORKER),
        TWO_WORKERS: _two_workers,
    },
    baseline=ONE_WORKER,
)

ONE_RUN_AT_A_TIME = Scenario(
    "g",
    f"{ONE_AT_A_TIME} runs of (a)'s chain one after the other: latency on an idle stack",
    {
        HAND: lambda bench: _hand(bench, "g", rows=True, runs=ONE_AT_A_TIME, concurrency=1),
        FLOW_RUN: lambda bench: _flow(bench, "g", runs=ONE_AT_A_TIME, concurrency=1),
    },
    baseline=HAND,
)
