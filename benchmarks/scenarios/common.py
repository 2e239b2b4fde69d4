"""What every scenario shares: the suite's context, and one side measured end to end.

FlowRun's side goes through `workers.client` (`start_run`, `result`), as the platform does;
the hand-written side through the plain Temporal client, as its author would.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from benchmarks.measure import Measurement, history_events, measuring, straggler, timed_runs
from benchmarks.support import Reviewer
from benchmarks.worker_processes import WorkerProcess, Workers
from workers.client import FLOW_RUN, result, start_run
from workflows.contract import FlowRunInput

HAND = "hand-written"
#: The same workflow with `sandboxed=False`: the fastest a hand-written one gets.
HAND_UNSANDBOXED = "hand-written, unsandboxed"


@dataclass
class Bench:
    """One suite run: servers, worker processes, the HTTP peer and the size factor."""

    client: Client
    sessions: async_sessionmaker[AsyncSession]
    workers: Workers
    #: Base URL of the HTTP peer; `url` is the resource every `api` call GETs.
    api_base: str
    scale: float
    reviewer: Reviewer

    @property
    def url(self) -> str:
        """A small JSON answer (an order of the sample service)."""
        return f"{self.api_base}/orders/42"

    def size(self, default: int) -> int:
        """A default size scaled by `--scale`, at least 1."""
        return max(1, round(default * self.scale))


#: Measures one side of a scenario in one round.
Side = Callable[[Bench], Awaitable[Measurement]]


@dataclass(frozen=True)
class Scenario:
    """A scenario's sides in the order of the first round (later rounds alternate it);
    `baseline` is the side the ratio column divides by.
    """

    key: str
    title: str
    sides: dict[str, Side]
    baseline: str


def run_id(side: str) -> str:
    """A fresh workflow id naming the side, for finding a run in the Temporal UI."""
    return f"bench-{'flow' if side == FLOW_RUN else 'hand'}-{uuid.uuid4().hex[:12]}"


async def flow_runs(
    bench: Bench,
    scenario: str,
    definition: dict[str, Any],
    *,
    runs: int,
    nodes_per_run: int,
    inputs: dict[str, Any] | None = None,
    side: str = FLOW_RUN,
    workers: Sequence[WorkerProcess] | None = None,
    concurrency: int | None = None,
    queue: str | None = None,
) -> Measurement:
    """`runs` FlowRuns of `definition`, all started at once (or `concurrency` at a time), each
    timed from start to result, on `queue` (FlowRun's workers' unless told).
    """
    ids: list[str] = []

    async def one(_: int) -> str:
        handle = await start_run(
            bench.client,
            queue or bench.workers.flow_queue,
            FlowRunInput(definition=definition, inputs=inputs or {}),
            run_id=run_id(FLOW_RUN),
        )
        ids.append(handle.id)
        await result(bench.client, handle.id)
        return handle.id

    return await _measured(
        bench,
        scenario,
        side,
        runs,
        nodes_per_run,
        workers or [bench.workers.flow_run],
        one,
        ids,
        concurrency,
    )


async def hand_runs(
    bench: Bench,
    scenario: str,
    workflow: str,
    args: dict[str, Any],
    *,
    runs: int,
    nodes_per_run: int,
    side: str = HAND,
    concurrency: int | None = None,
) -> Measurement:
    """`runs` hand-written workflows, all started at once (or `concurrency` at a time), each
    timed from start to result.
    """
    ids: list[str] = []

    async def one(_: int) -> str:
        handle = await bench.client.start_workflow(
            workflow, args, id=run_id(side), task_queue=bench.workers.hand_queue
        )
        ids.append(handle.id)
        await handle.result()
        return handle.id

    return await _measured(
        bench, scenario, side, runs, nodes_per_run, [bench.workers.hand], one, ids, concurrency
    )


async def _measured(
    bench: Bench,
    scenario: str,
    side: str,
    runs: int,
    nodes_per_run: int,
    workers: Sequence[WorkerProcess],
    one: Callable[[int], Awaitable[str]],
    ids: list[str],
    concurrency: int | None = None,
) -> Measurement:
    """`runs` calls of `one` (each returning its run's workflow id) timed on `workers`, with
    the history length of the runs in `ids`; a run far slower than the others is named, with
    the pauses in its history, on stderr and under the table.
    """
    took: dict[str, float] = {}
    async with measuring(workers) as usage:
        wall, latencies = await timed_runs(runs, one, concurrency, took)
    notes = await straggler(bench.client, scenario, side, took)
    return Measurement(
        scenario,
        side,
        runs,
        runs * nodes_per_run,
        wall,
        latencies,
        usage.cpu_seconds,
        usage.peak_rss_mib,
        await history_events(bench.client, ids),
        machine_cpu_seconds=usage.machine_cpu_seconds,
        notes=notes,
    )
