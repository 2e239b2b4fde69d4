"""How the worker fares with many runs parked on HITL tasks (on demand, not part of the tests).

    python benchmarks/parked_hitl.py [--runs 1000] [--cache 500]

Measures, in one process against a real Postgres and Temporal dev server:
- baseline: worker RSS and the latency of a small flow with nothing parked;
- then N runs each parked on a HITL task: RSS, status-query latency on a parked run,
  the same small flow's latency, and the time to decide one parked run to completion.
Figures are printed; the machine is shared and noisy, so compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text
from temporalio.client import Client

from benchmarks.support import REVIEW_FLOW, bench_stack, edge, make_reviewer, node, open_task
from workers.client import cancel, decide, get_status, result, start_run
from workers.settings import Settings
from workers.worker import build_worker
from workflows.contract import FlowRunInput

SMALL = {
    "nodes": [node("start", "start"), node("t", "transform", {"output": "{{ 6 * 7 }}"})],
    "edges": [edge("start", "t")],
}


def rss_mb() -> float:
    """Resident memory of the process the worker runs in, in MiB."""
    return psutil.Process().memory_info().rss / 2**20


async def small_flow_ms(client: Client, queue: str, samples: int = 10) -> float:
    """Median start-to-result time of SMALL: what a backlog of parked runs may slow down."""
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        handle = await start_run(client, queue, FlowRunInput(definition=SMALL))
        await result(client, handle.id)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def main(runs: int, cache: int) -> None:
    """Measure with nothing parked and with `runs` parked; then decide one, cancel the rest."""
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    settings = Settings(temporal_task_queue=queue, max_cached_workflows=cache)
    async with bench_stack() as stack, build_worker(stack.client, settings, stack.deps):
        client = stack.client
        reviewer = await make_reviewer(stack.sessions)
        await small_flow_ms(client, queue, 3)  # warm up
        base_rss, base_ms = rss_mb(), await small_flow_ms(client, queue)
        print(f"baseline: RSS {base_rss:.0f} MiB, small flow {base_ms:.0f} ms (median of 10)")

        t = time.perf_counter()
        run_ids: list[str] = []
        for batch in range(0, runs, 100):
            handles = await asyncio.gather(
                *(
                    start_run(
                        client,
                        queue,
                        FlowRunInput(
                            definition=REVIEW_FLOW, inputs={"what": i}, tenant_id=reviewer.tenant
                        ),
                    )
                    for i in range(batch, min(runs, batch + 100))
                )
            )
            run_ids += [h.id for h in handles]
        while True:
            async with stack.sessions() as s:
                # fully parked: the task is in the inbox and the run row says so
                tasks = (
                    await s.execute(
                        text("SELECT count(*) FROM hitl_tasks WHERE status = 'assigned'")
                    )
                ).scalar_one()
                waiting = (
                    await s.execute(
                        text("SELECT count(*) FROM workflow_runs WHERE status = 'waiting_hitl'")
                    )
                ).scalar_one()
            if min(tasks, waiting) >= runs:
                break
            await asyncio.sleep(0.5)
        print(f"parked {runs} runs on HITL tasks in {time.perf_counter() - t:.1f}s")
        await asyncio.sleep(2)
        parked_rss = rss_mb()
        q = []
        for run_id in run_ids[:: max(1, runs // 10)]:
            t = time.perf_counter()
            await get_status(client, run_id)
            q.append((time.perf_counter() - t) * 1000)
        parked_ms = await small_flow_ms(client, queue)
        t = time.perf_counter()
        task = await open_task(client, run_ids[0])
        await decide(client, run_ids[0], task["id"], {"approved": True}, reviewer.user)
        await result(client, run_ids[0])
        wake_ms = (time.perf_counter() - t) * 1000
        print(
            f"with {runs} parked (workflow cache {cache}): RSS {parked_rss:.0f} MiB "
            f"(+{parked_rss - base_rss:.0f} MiB, "
            f"{1024 * (parked_rss - base_rss) / runs:.0f} KiB/run), "
            f"small flow {parked_ms:.0f} ms, status query median "
            f"{statistics.median(q):.0f} ms, decide-to-completion {wake_ms:.0f} ms"
        )
        for run_id in run_ids[1:]:
            await cancel(client, run_id)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--cache", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.cache))
