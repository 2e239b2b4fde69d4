"""The mixed workload: runs of the four kinds started at a steady rate, a bounded number in
flight, each followed to its end; a reviewer decides every review after a random delay.

Every call may meet an outage and is retried (see `chaos.retry`). A start that failed may
still have reached Temporal, so it is retried under the same run id, and a refusal of that
id as already used means an earlier attempt got through: the run is counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from chaos.flows import Kind
from chaos.log import Timeline
from chaos.retry import GaveUp, Retries
from chaos.stack import Stack
from workers.client import (
    DecisionRefused,
    RunIdRefused,
    decide,
    failure_text,
    get_status,
    start_run,
)
from workflows.contract import FlowRunInput

#: A reviewer looks at a task this many seconds after it opens (at random within).
REVIEW_DELAY = (1.0, 15.0)
#: How often a reviewer whose decision is refused tries again, and how long it waits first.
REFUSALS_TRIED = 5
REFUSAL_PAUSE = 5.0


@dataclass
class Run:
    """One run of the workload, as the driver saw it."""

    id: str
    kind: Kind
    #: The reviewer's answer, for review runs (chosen when the run is started).
    approve: bool | None = None
    #: Temporal accepted the start (perhaps on a retry whose earlier attempt got through).
    started: bool = False
    start_attempts: int = 0
    #: How Temporal closed it (None: not closed when the driver stopped waiting).
    status: WorkflowExecutionStatus | None = None
    error: str | None = None
    decided: bool = False
    #: Decision calls that failed without an answer (one of them may have been recorded).
    decide_errors: int = 0
    #: Timeline seconds of the first start attempt, and of the driver seeing the run closed.
    begun_at: float | None = None
    closed_at: float | None = None
    #: What went wrong on the driver's side of this run, for the problem list.
    notes: list[str] = field(default_factory=list)


class Workload:
    """Starts runs at `rate` per second, at most `max_in_flight` at once, until `stop`."""

    def __init__(
        self,
        stack: Stack,
        kinds: dict[str, Kind],
        rng: random.Random,
        timeline: Timeline,
        retries: Retries,
        rate: float,
        max_in_flight: int,
    ) -> None:
        self.stack = stack
        self.kinds = kinds
        self.rng = rng
        self.timeline = timeline
        self.retries = retries
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.runs: list[Run] = []
        #: The most runs in flight at once.
        self.peak = 0
        self._lives: set[asyncio.Task[None]] = set()

    def in_flight(self) -> int:
        """Runs started (or being started) and not yet seen closed."""
        return len(self._lives)

    async def drive(self, stop: asyncio.Event) -> None:
        """Start a run every 1/rate seconds while there is room, until `stop` is set."""
        names = sorted(self.kinds)
        while not stop.is_set():
            if self.in_flight() < self.max_in_flight:
                kind = self.kinds[self.rng.choice(names)]
                run = Run(f"chaos-{len(self.runs) + 1:05d}-{kind.name}", kind)
                if kind.review:
                    run.approve = self.rng.random() < 0.5
                self.runs.append(run)
                life = asyncio.create_task(self._life(run, self.rng.uniform(*REVIEW_DELAY)))
                self._lives.add(life)
                life.add_done_callback(self._lives.discard)
                self.peak = max(self.peak, self.in_flight())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1 / self.rate)

    async def drain(self, seconds: float) -> None:
        """Wait for every run to close; after `seconds`, failing calls give up, and 30 s later
        the runs still open are no longer followed (they are reported as open).
        """
        self.retries.deadline = asyncio.get_running_loop().time() + seconds
        if self._lives:
            await asyncio.wait(set(self._lives), timeout=seconds + 30)
        await self.cancel()

    async def cancel(self) -> None:
        """Stop following every run (on the way out after an error or Ctrl-C)."""
        for life in list(self._lives):
            life.cancel()
        await asyncio.gather(*self._lives, return_exceptions=True)

    async def _life(self, run: Run, review_delay: float) -> None:
        try:
            await self._start(run)
            closed = asyncio.create_task(self._closed(run))
            try:
                if run.kind.review:
                    await self._review(run, review_delay, closed)
                await closed
            finally:
                closed.cancel()
        except GaveUp as exc:
            run.notes.append(str(exc))
        except Exception as exc:  # the driver's own bug: say so, on the run it hit
            run.notes.append(f"driver error: {exc!r}"[:300])
            self.timeline.say(f"{run.id}: driver error {exc!r}"[:300])

    async def _start(self, run: Run) -> None:
        run.begun_at = self.timeline.now()
        client, queue = self.stack.client, self.stack.task_queue
        request = FlowRunInput(
            definition=run.kind.definition,
            inputs=run.kind.inputs,
            tenant_id=self.stack.reviewer.tenant,
        )

        async def attempt() -> None:
            run.start_attempts += 1
            try:
                await start_run(client, queue, request, run_id=run.id)
            except RunIdRefused:
                if run.start_attempts == 1:
                    raise  # our own id clash, not an earlier attempt
                self.retries.counts["start: refused as already started"] += 1

        await self.retries.call("start", attempt)
        run.started = True

    async def _closed(self, run: Run) -> None:
        handle = self.stack.client.get_workflow_handle(run.id)

        async def attempt() -> WorkflowExecutionStatus:
            try:
                await handle.result()
                return WorkflowExecutionStatus.COMPLETED
            except WorkflowFailureError as exc:
                run.error = failure_text(exc)[:300]
                status = (await handle.describe()).status
                assert status is not None
                return status

        run.status = await self.retries.call("result", attempt)
        run.closed_at = self.timeline.now()

    async def _review(self, run: Run, delay: float, closed: asyncio.Task[None]) -> None:
        """Decide the run's review `delay` seconds after the run lists it.

        A refused decision is a problem (noted on the run); the reviewer then tries again a
        few times, as a person would, so that the run can still finish and be checked.
        """
        task = await self._open_task(run, closed)
        if task is None:
            return
        seen = self.timeline.now()
        await asyncio.sleep(delay)
        for _ in range(REFUSALS_TRIED):
            try:
                await self.retries.call("decide", lambda: self._decide(run, task["id"]))
                run.decided = True
                return
            except DecisionRefused as exc:
                run.notes.append(
                    f"decision refused at +{self.timeline.now():.1f}s (the run listed the task "
                    f"open at +{seen:.1f}s) ({exc.kind}): {exc.reason}"[:400]
                )
                if closed.done():
                    return
                await asyncio.sleep(REFUSAL_PAUSE)

    async def _decide(self, run: Run, task_id: str) -> None:
        """One decision; a refusal after a call whose answer was lost is that call's success."""
        try:
            await decide(
                self.stack.client,
                run.id,
                task_id,
                {"approved": run.approve},
                self.stack.reviewer.user,
                f"chaos {'approves' if run.approve else 'rejects'}",
            )
        except DecisionRefused as exc:
            # An earlier call was recorded after all (its answer was lost to a fault): the
            # run says the task is already completed, or has completed with it. The final
            # check counts the decision rows.
            done = exc.kind == "RunEnded" or f"{task_id} is already completed" in exc.reason
            if not (run.decide_errors and done):
                raise
            self.retries.counts[f"decide: {exc.kind} after a lost answer"] += 1
        except Exception:
            run.decide_errors += 1
            raise

    async def _open_task(self, run: Run, closed: asyncio.Task[None]) -> dict[str, Any] | None:
        """The run's review task once the run lists it (None if the run closes first)."""
        while not closed.done():
            status = await self.retries.call(
                "status", lambda: get_status(self.stack.client, run.id)
            )
            if status["open_hitl_tasks"]:
                return dict(status["open_hitl_tasks"][0])
            await asyncio.sleep(0.5)
        return None
