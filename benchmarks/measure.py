"""What one measurement of one side records, and how the figures are taken.

Worker CPU is the user + system time of the worker processes (psutil, all their threads);
machine CPU the busy time of every core (all but idle and iowait), which counts Temporal,
Postgres, the HTTP peer and the driver too;
peak RSS is the kernel's VmHWM of each worker process, reset (clear_refs) when the
measurement starts; history events are Temporal's history length of a sample of runs,
summed over a run's continue-as-new hops.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psutil
from temporalio.client import Client

from benchmarks.worker_processes import WorkerProcess

#: Runs whose histories are read per measurement: enough for a mean, cheap to fetch.
HISTORY_SAMPLE = 5


@dataclass
class Measurement:
    """One side of one scenario in one round."""

    scenario: str
    side: str
    runs: int
    nodes: int
    wall_seconds: float
    latencies: list[float]
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    history_events: float = 0.0
    #: busy core-seconds of the whole machine over the measurement
    machine_cpu_seconds: float = 0.0
    #: Scenario-specific figures, printed beside the table (e.g. RSS while parked).
    notes: dict[str, float] = field(default_factory=dict)

    @property
    def runs_per_second(self) -> float:
        """Runs finished per second of the measured interval."""
        return self.runs / self.wall_seconds

    @property
    def nodes_per_second(self) -> float:
        """Node executions (the scenario's unit of work) per second."""
        return self.nodes / self.wall_seconds

    @property
    def machine_busy(self) -> float:
        """The share of the machine's cores busy over the measurement, 0-1."""
        return self.machine_cpu_seconds / (self.wall_seconds * (psutil.cpu_count() or 1))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Usage:
    """CPU seconds and peak RSS of the measured workers, and the machine's busy CPU seconds,
    over one `measuring` block.
    """

    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    machine_cpu_seconds: float = 0.0


def machine_busy_seconds() -> float:
    """Core-seconds the machine has spent on anything since boot (all cores)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


@asynccontextmanager
async def measuring(workers: Sequence[WorkerProcess]) -> AsyncIterator[Usage]:
    """Worker CPU and peak RSS over the block; with several workers, CPU is their sum and
    the peak the largest single process's.
    """
    usage = Usage()
    before = [w.cpu_seconds() for w in workers]
    for w in workers:
        w.reset_peak()
    machine_before = machine_busy_seconds()
    yield usage
    usage.machine_cpu_seconds = machine_busy_seconds() - machine_before
    usage.cpu_seconds = sum(w.cpu_seconds() - b for w, b in zip(workers, before, strict=True))
    usage.peak_rss_mib = max(w.peak_rss_mib() for w in workers)


async def timed_runs(
    count: int,
    one: Callable[[int], Awaitable[Any]],
    concurrency: int | None = None,
    latency_of: dict[Any, float] | None = None,
) -> tuple[float, list[float]]:
    """Run `one(i)` for each i, all at once (or `concurrency` at a time); returns the wall time
    and each call's latency, in seconds. With `latency_of`, each call's latency is also kept
    under what the call returned (a run's workflow id).
    """
    gate = asyncio.Semaphore(concurrency or count or 1)
    latencies: list[float] = []

    async def timed(i: int) -> None:
        async with gate:
            t = time.perf_counter()
            returned = await one(i)
            latencies.append(time.perf_counter() - t)
            if latency_of is not None:
                latency_of[returned] = latencies[-1]

    start = time.perf_counter()
    await asyncio.gather(*(timed(i) for i in range(count)))
    return time.perf_counter() - start, latencies


async def history_events(client: Client, workflow_ids: Sequence[str]) -> float:
    """Mean history length of the first few runs, every continue-as-new hop included."""
    lengths = []
    for workflow_id in list(workflow_ids)[:HISTORY_SAMPLE]:
        total, run_id = 0, None
        while True:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            total += (
                await handle.describe()
            ).raw_description.workflow_execution_info.history_length
            run_id = await _continued_from(handle)
            if not run_id:
                break
        lengths.append(total)
    return statistics.mean(lengths) if lengths else 0.0


async def _continued_from(handle: Any) -> str | None:
    """The run this one continued as new from: its first event names it."""
    with suppress(StopAsyncIteration):
        async for event in handle.fetch_history_events(page_size=1):
            attrs = event.workflow_execution_started_event_attributes
            return str(attrs.continued_execution_run_id) or None
    return None


#: A run this many times slower than the median of its measurement (and at least
#: STRAGGLER_SECONDS) is reported with the pauses in its history.
STRAGGLER_FACTOR = 5.0
STRAGGLER_SECONDS = 5.0
#: A pause between two of its history events this long is listed.
PAUSE_SECONDS = 1.0


async def straggler(
    client: Client, scenario: str, side: str, took: dict[str, float]
) -> dict[str, float]:
    """The slowest run's latency as a note when it is far off the others, and its history's
    pauses (which events it waited between) on stderr, so a stall can be traced afterwards.
    """
    if len(took) < 2:
        return {}
    slowest = max(took, key=took.__getitem__)
    median = statistics.median(took.values())
    if took[slowest] < max(STRAGGLER_FACTOR * median, STRAGGLER_SECONDS):
        return {}
    print(
        f"({scenario}) {side}: run {slowest} took {took[slowest]:.1f} s (median {median:.1f} s); "
        "pauses in its history:",
        file=sys.stderr,
    )
    for line in await history_pauses(client, slowest):
        print(f"    {line}", file=sys.stderr)
    return {"slowest run s": took[slowest], "median run s": median}


async def history_pauses(client: Client, workflow_id: str) -> list[str]:
    """Each wait of PAUSE_SECONDS or more between two events of the run's latest history, and
    every event that says something timed out or failed.
    """
    lines: list[str] = []
    before: Any = None
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        at = event.event_time.ToDatetime()
        kind = str(event.WhichOneof("attributes") or "").removesuffix("_event_attributes")
        waited = (at - before).total_seconds() if before is not None else 0.0
        if waited >= PAUSE_SECONDS or "timed_out" in kind or "failed" in kind:
            lines.append(f"event {event.event_id} {kind} after {waited:.1f} s")
        before = at
    return lines
