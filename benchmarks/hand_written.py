"""The baseline each scenario is measured against: the same work written directly on Temporal.

    python -m benchmarks.hand_written --task-queue Q     (a worker process; env as FlowRun's)

A careful Temporal user's version of each scenario: one activity per HTTP call that also
upserts its `task_instances` row (as FlowRun's `api` agent does), the run row written at
start and end, plain asyncio for fan-out and concurrency limits. Its workflows run in the
SDK's sandbox, as `@workflow.defn` does by default, with the activities' libraries passed
through as Temporal's docs advise (as FlowRun's are). The chain and the fan-out also run
unsandboxed (`sandboxed=False`, the fastest a user can make them), a second baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import httpx
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from persistence import queries
    from persistence.engine import create_engine, session_factory
    from persistence.ids import require_uuid

CHAIN = "BenchChain"
FAN_OUT = "BenchFanOut"
CHAIN_UNSANDBOXED = "BenchChainUnsandboxed"
FAN_OUT_UNSANDBOXED = "BenchFanOutUnsandboxed"
LOOP = "BenchLoop"
PARKED = "BenchParked"
DECIDE_UPDATE = "decide"

#: The same per-attempt limit FlowRun gives an agent node that names none.
_TIMEOUT = timedelta(minutes=5)


class Activities:
    """The activities, holding one worker process's Postgres pool and HTTP client."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient):
        self.sessions = sessions
        self.http = http

    @activity.defn(name="bench_record_run")
    async def record_run(self, args: list[str]) -> str:
        """The run row, as FlowRun records its run's status changes."""
        async with self.sessions() as s, s.begin():
            return str(await queries.upsert_run(s, args[0], {"status": args[1]}))

    @activity.defn(name="bench_call")
    async def call(self, args: dict[str, Any]) -> dict[str, Any]:
        """One HTTP GET and, when `rows` is set, its `task_instances` row.

        The row is written once, completed, with the attempt's start time: the fewest writes
        that still give the platform the row FlowRun gives it.
        """
        started = datetime.now(UTC)
        response = await self.http.get(args["url"])
        response.raise_for_status()  # an error answer fails the call, as FlowRun's api agent does
        out = {"status": response.status_code, "json": response.json()}
        if args.get("rows", True):
            async with self.sessions() as s, s.begin():
                await queries.upsert_task_instance(
                    s,
                    require_uuid(args["run_row"], "run_row_id"),
                    args["task_id"],
                    {
                        "node_id": args["task_id"].rsplit(".", 1)[-1],
                        "status": "completed",
                        "outputs": out,
                        "started_at": started,
                        "completed_at": datetime.now(UTC),
                    },
                )
        return out


async def _run_row(status: str) -> str:
    return str(
        await workflow.execute_activity(
            "bench_record_run",
            [workflow.info().workflow_id, status],
            start_to_close_timeout=_TIMEOUT,
        )
    )


async def _call(url: str, run_row: str, task_id: str, rows: bool) -> Any:
    return await workflow.execute_activity(
        "bench_call",
        {"url": url, "run_row": run_row, "task_id": task_id, "rows": rows},
        start_to_close_timeout=_TIMEOUT,
    )


@workflow.defn(name=CHAIN)
class BenchChain:
    """Scenario (a)/(d): `n` calls in sequence; `rows` false drops every row write."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> int:
        """Returns the number of calls made."""
        rows = bool(args.get("rows", True))
        run_row = await _run_row("running") if rows else ""
        for i in range(args["n"]):
            await _call(args["url"], run_row, f"n{i}", rows)
        if rows:
            await _run_row("completed")
        return int(args["n"])


@workflow.defn(name=FAN_OUT)
class BenchFanOut:
    """Scenario (b): `n` calls at once, joined by `asyncio.gather`."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> int:
        """Returns the number of answers joined."""
        run_row = await _run_row("running")
        outs = await asyncio.gather(
            *(_call(args["url"], run_row, f"n{i}", True) for i in range(args["n"]))
        )
        await _run_row("completed")
        return len(outs)


@workflow.defn(name=CHAIN_UNSANDBOXED, sandboxed=False)
class BenchChainUnsandboxed(BenchChain):
    """(a) outside the sandbox."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> int:
        """As BenchChain's."""
        return await super().run(args)


@workflow.defn(name=FAN_OUT_UNSANDBOXED, sandboxed=False)
class BenchFanOutUnsandboxed(BenchFanOut):
    """(b) outside the sandbox."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> int:
        """As BenchFanOut's."""
        return await super().run(args)


@workflow.defn(name=LOOP)
class BenchLoop:
    """Scenario (c): one call per item, at most `concurrency` at a time.

    Past Temporal's continue-as-new suggestion it stops starting calls, lets the running ones
    finish and continues as new from the next item, as FlowRun's loop does; the outputs are
    not carried along (only their count), since the scenario's result is the count.
    """

    @workflow.run
    async def run(self, args: dict[str, Any]) -> int:
        """Returns the number of items done, across every continue-as-new hop."""
        run_row = args.get("run_row") or await _run_row("running")
        items, limit, url = int(args["items"]), int(args["concurrency"]), args["url"]
        done, next_item = int(args.get("done", 0)), int(args.get("next", 0))
        running: set[asyncio.Task[Any]] = set()
        while next_item < items and not workflow.info().is_continue_as_new_suggested():
            if len(running) >= limit:
                finished, pending = await workflow.wait(
                    running, return_when=asyncio.FIRST_COMPLETED
                )
                done, running = done + len(finished), set(pending)
                continue
            task_id = f"loop[{next_item}].call"
            running.add(asyncio.ensure_future(_call(url, run_row, task_id, True)))
            next_item += 1
        if running:
            await asyncio.gather(*running)
            done += len(running)
        if next_item < items:
            workflow.continue_as_new({**args, "run_row": run_row, "done": done, "next": next_item})
        await _run_row("completed")
        return done


@workflow.defn(name=PARKED)
class BenchParked:
    """Scenario (e): waits for a decision sent as an update, then makes one call."""

    def __init__(self) -> None:
        self.decision: dict[str, Any] | None = None

    @workflow.update(name=DECIDE_UPDATE)
    async def decide(self, decision: dict[str, Any]) -> str:
        """Takes the first decision; answers when it was taken, as FlowRun's update does."""
        self.decision = self.decision or decision
        return "accepted"

    @workflow.run
    async def run(self, args: dict[str, Any]) -> bool:
        """Returns the decision's `approved`."""
        run_row = await _run_row("waiting_hitl")
        await workflow.wait_condition(lambda: self.decision is not None)
        assert self.decision is not None
        await _run_row("running")
        await _call(args["url"], run_row, "after", True)
        await _run_row("completed")
        return bool(self.decision.get("approved"))


WORKFLOWS = [
    BenchChain,
    BenchFanOut,
    BenchChainUnsandboxed,
    BenchFanOutUnsandboxed,
    BenchLoop,
    BenchParked,
]


async def serve(address: str, task_queue: str, database_url: str) -> None:
    """Poll `task_queue` until killed, with FlowRun's worker defaults for slots and cache."""
    from workers.settings import Settings
    from workers.temporal_client import connect

    settings = Settings()
    engine = create_engine(database_url, pool_size=settings.db_pool_size)
    client = await connect(address, settings.temporal_namespace)
    async with httpx.AsyncClient() as http:
        acts = Activities(session_factory(engine), http)
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=WORKFLOWS,
            activities=[acts.record_run, acts.call],
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
            max_cached_workflows=settings.max_cached_workflows,
            # A bug here fails the run (and the suite) instead of retrying its task for ever.
            workflow_failure_exception_types=[Exception],
        ):
            print("worker polling task queue", task_queue, flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(serve(os.environ["TEMPORAL_ADDRESS"], args.task_queue, os.environ["DATABASE_URL"]))
