"""Cost per node of FlowRun against a hand-written Temporal workflow doing the same work.

    python benchmarks/per_node.py [--nodes 20] [--runs 5]

Both run N sequential HTTP calls against a local server (the dev stack's sample service) and
record one task row per call in Postgres, plus the run row: the hand-written workflow with one
activity per call (HTTP + row upsert in the activity), as a careful Temporal user would write
it; FlowRun from a stored-style definition of N chained `api` nodes. Same worker process,
same servers, measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio import activity, workflow
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks.support import bench_stack, edge, node
from persistence import queries
from persistence.ids import require_uuid
from workers.client import FLOW_RUN, result, start_run
from workers.sample_service import start_sample_service
from workers.settings import Settings
from workers.worker import build_worker
from workflows.contract import FlowRunInput

SESSIONS = None
HTTP: httpx.AsyncClient | None = None


@activity.defn(name="bench_call_and_record")
async def call_and_record(args: list[str]) -> dict[str, object]:
    """The hand-written side's activity per call: the HTTP call and its task row, as `api` does."""
    run_row, url, task_id = args
    assert HTTP is not None
    assert SESSIONS is not None
    response = await HTTP.get(url)
    out = {"status": response.status_code, "json": response.json()}
    async with SESSIONS() as s, s.begin():
        await queries.upsert_task_instance(
            s,
            require_uuid(run_row, "run_row_id"),
            task_id,
            {"node_id": task_id, "status": "completed", "outputs": out},
        )
    return out


@activity.defn(name="bench_record_run")
async def record_run(args: list[str]) -> str:
    """The run row, written at start and end, as FlowRun records its run."""
    assert SESSIONS is not None
    async with SESSIONS() as s, s.begin():
        return str(await queries.upsert_run(s, args[0], {"status": args[1]}))


@workflow.defn(name="HandWritten", sandboxed=False)
class HandWritten:
    """The baseline: N calls in sequence, written against Temporal as a careful user would."""

    @workflow.run
    async def run(self, args: list[str]) -> int:
        """`args` is [url, n] (strings, as the activities take them); returns n."""
        url, n = args[0], int(args[1])
        timeout = timedelta(seconds=30)
        run_row = await workflow.execute_activity(
            "bench_record_run",
            [workflow.info().workflow_id, "running"],
            start_to_close_timeout=timeout,
        )
        for i in range(n):
            await workflow.execute_activity(
                "bench_call_and_record", [run_row, url, f"n{i}"], start_to_close_timeout=timeout
            )
        await workflow.execute_activity(
            "bench_record_run",
            [workflow.info().workflow_id, "completed"],
            start_to_close_timeout=timeout,
        )
        return n


def chain(n: int, url: str) -> dict[str, object]:
    """FlowRun's side: start, then `n` `api` nodes in a row, each calling `url`."""
    nodes = [node("start", "start")] + [node(f"n{i}", "api", {"url": url}) for i in range(n)]
    edges = [edge("start", "n0")] + [edge(f"n{i}", f"n{i + 1}") for i in range(n - 1)]
    return {"nodes": nodes, "edges": edges}


async def main(n: int, runs: int) -> None:
    """Both sides interleaved round by round, so the shared machine's drift hits them alike."""
    global SESSIONS, HTTP
    peer, api_base = start_sample_service()
    url = f"{api_base}/orders/42"
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    HTTP = httpx.AsyncClient()
    try:
        async with (
            bench_stack() as stack,
            build_worker(stack.client, Settings(temporal_task_queue=queue), stack.deps),
            Worker(
                stack.client,
                task_queue=queue + "-hand",
                workflows=[HandWritten],
                activities=[call_and_record, record_run],
            ),
        ):
            SESSIONS = stack.sessions
            hand, ours = [], []
            for r in range(runs + 1):  # the first round warms up
                t = time.perf_counter()
                await stack.client.execute_workflow(
                    "HandWritten",
                    [url, str(n)],
                    id=f"hand-{uuid.uuid4()}",
                    task_queue=queue + "-hand",
                )
                h = time.perf_counter() - t
                t = time.perf_counter()
                ours_run = await start_run(
                    stack.client, queue, FlowRunInput(definition=chain(n, url))
                )
                await result(stack.client, ours_run.id)
                o = time.perf_counter() - t
                if r:
                    hand.append(h)
                    ours.append(o)
            mh, mo = statistics.median(hand), statistics.median(ours)
            print(f"{n} sequential HTTP nodes, median of {runs} runs each, interleaved:")
            for label, total in (("hand-written workflow", mh), (FLOW_RUN, mo)):
                print(f"  {label:<22} {total * 1000:.0f} ms total, {total * 1000 / n:.1f} ms/node")
            print(f"  FlowRun vs hand-written: {100 * (mo - mh) / mh:+.0f}%")
    finally:
        peer.shutdown()
        await HTTP.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.nodes, args.runs))
