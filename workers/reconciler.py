"""Closing the rows of runs that ended without running workflow code.

`temporal workflow terminate` and a workflow execution timeout end a `FlowRun` on the
server without another line of it running, so nothing writes the run's end: its rows
would stay `running` / `waiting_hitl` / `paused` / `queued` forever, and its review
tasks open in the inbox. Every worker process runs this reconciler in the background.

Cost: it asks Temporal's visibility store for the *closed* FlowRun executions of its
task queue since its last sweep, never for open ones, so runs parked on reviewers cost
nothing; one SQL statement per page of them keeps those whose row already recorded its
end (the common case) from costing anything more. Only a run whose row is still open is
described (a workflow ID can be reused, so the latest execution decides) and closed.

Bound: each sweep looks back to where the previous successful one started, less an
overlap for visibility lag and clock skew, so a run's rows are terminal within about two
RECONCILE_INTERVAL_SECONDS of its end. A sweep that fails (Temporal or Postgres down) is
logged and retried from the same point at the next interval; the first sweep after
start-up looks back RECONCILE_LOOKBACK_HOURS, which also caps how far any sweep looks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHistoryEventFilterType,
)
from temporalio.plugin import SimplePlugin
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Plugin

from persistence import hitl_queries, reconcile_queries
from workers.client import FLOW_RUN, TIME_LIMIT_ERROR, terminated_text
from workers.settings import Settings
from workflows.contract import error_codes

log = logging.getLogger("meta_agent.reconciler")

WORKFLOW_TYPE = FLOW_RUN
#: How far each sweep reaches behind the start of the previous one: visibility is written
#: asynchronously after a close, and the worker's clock is not the server's.
OVERLAP = timedelta(seconds=60)
#: Closed executions per visibility page, and workflow IDs per SQL statement.
PAGE_SIZE = 500
#: The gauge of review tasks waiting for a decision.
OPEN_REVIEWS = "meta_agent_hitl_open_tasks"


@dataclass(frozen=True)
class Verdict:
    """How a closed execution reads in its run row."""

    status: str
    error: str
    #: `workflow_runs.error_code` (`workflows.contract.error_codes`; None: completed)
    code: str | None = None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def visibility_query(task_queue: str, closed_after: datetime) -> str:
    """Closed FlowRun executions of `task_queue` that closed after `closed_after`.

    Continued-as-new executions are left out: the same workflow ID goes on running.
    """
    since = closed_after.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (
        f"WorkflowType = {_quote(WORKFLOW_TYPE)} AND TaskQueue = {_quote(task_queue)}"
        ' AND ExecutionStatus != "Running" AND ExecutionStatus != "ContinuedAsNew"'
        f" AND CloseTime > {_quote(since)}"
    )


class Reconciler:
    """Sweeps one task queue's closed runs and closes the rows their workflow did not."""

    def __init__(
        self,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
        *,
        task_queue: str,
        interval: timedelta,
        lookback: timedelta,
    ) -> None:
        self._client = client
        self._sessions = sessions
        self.task_queue = task_queue
        self.interval = interval
        self.lookback = lookback
        #: Start of the last successful sweep less the overlap; None before the first.
        self._watermark: datetime | None = None
        #: Tenants the open-review gauge has reported, so one that has none left reads 0.
        self._reported: set[str] = set()

    @property
    def _lock_scope(self) -> str:
        return f"reconcile:{self._client.namespace}:{self.task_queue}"

    def closed_after(self, now: datetime) -> datetime:
        """Where the next sweep starting `now` looks back to."""
        floor = now - self.lookback
        return floor if self._watermark is None else max(self._watermark, floor)

    async def sweep_once(self) -> list[str] | None:
        """One sweep from the watermark, advancing it on success.

        Returns the workflow IDs whose rows it closed, or None when another worker
        process of the queue was sweeping (that one covers the same runs).
        """
        started = datetime.now(UTC)
        closed = await self.sweep(self.closed_after(started))
        if closed is not None:
            self._watermark = started - OVERLAP
        return closed

    async def sweep(self, closed_after: datetime) -> list[str] | None:
        """Close the rows of every run that closed after `closed_after` with open rows."""
        async with self._sessions() as lock, lock.begin():
            # Held for the sweep: the per-run writes below use their own transactions.
            if not await reconcile_queries.try_sweep_lock(lock, self._lock_scope):
                return None
            reconciled: list[str] = []
            page: set[str] = set()
            query = visibility_query(self.task_queue, closed_after)
            async for execution in self._client.list_workflows(query, page_size=PAGE_SIZE):
                if execution.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
                    continue
                page.add(execution.id)
                if len(page) >= PAGE_SIZE:
                    reconciled += await self._settle(lock, page)
                    page = set()
            reconciled += await self._settle(lock, page)
            return reconciled

    async def _settle(self, session: AsyncSession, workflow_ids: set[str]) -> list[str]:
        open_rows = await reconcile_queries.unfinished_runs(session, workflow_ids)
        rowless = await reconcile_queries.runs_without_row(session, workflow_ids)
        return [
            wf_id
            for wf_id in sorted(open_rows | rowless)
            if await self.reconcile(wf_id, has_row=wf_id not in rowless)
        ]

    async def reconcile(self, workflow_id: str, has_row: bool = True) -> bool:
        """Close the rows of `workflow_id` if its latest execution has closed (or, without a
        row, write one saying how it ended); True if it did.
        """
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False  # past Temporal's retention meanwhile: nothing to go by
            raise
        if description.workflow_type != WORKFLOW_TYPE or description.status in (
            None,
            WorkflowExecutionStatus.RUNNING,
            WorkflowExecutionStatus.CONTINUED_AS_NEW,
        ):
            return False  # a newer execution of the ID is running: its rows are its own
        verdict = await self._verdict(description)
        ended_at = description.close_time or datetime.now(UTC)
        if not has_row:
            async with self._sessions() as session, session.begin():
                recorded = await reconcile_queries.record_closed_run(
                    session,
                    workflow_id,
                    status=verdict.status,
                    error=verdict.error,
                    started_at=description.start_time,
                    ended_at=ended_at,
                    error_code=verdict.code,
                )
            if recorded:
                log.info(
                    "recorded run %s, which Temporal closed as %s before it wrote a row (%s)",
                    workflow_id,
                    description.status.name if description.status else "closed",
                    verdict.error,
                )
            return recorded
        async with self._sessions() as session, session.begin():
            closed = await reconcile_queries.close_run(
                session,
                workflow_id,
                status=verdict.status,
                error=verdict.error,
                ended_at=ended_at,
                error_code=verdict.code,
            )
        if closed is None:
            return False
        expected = description.status in (
            WorkflowExecutionStatus.TERMINATED,
            WorkflowExecutionStatus.TIMED_OUT,
        )
        log.log(
            logging.INFO if expected else logging.WARNING,
            "reconciled run %s: Temporal closed it as %s without recording its end; "
            "row %s -> %s (%s), %d node row(s) and %d review task(s) cancelled",
            workflow_id,
            description.status.name if description.status else "closed",
            closed.previous_status,
            verdict.status,
            verdict.error,
            closed.tasks_cancelled,
            closed.hitl_tasks_cancelled,
        )
        return True

    async def _verdict(self, description: WorkflowExecutionDescription) -> Verdict:
        status = description.status
        if status == WorkflowExecutionStatus.TIMED_OUT:
            return Verdict("failed", TIME_LIMIT_ERROR, error_codes.TIMEOUT)
        if status == WorkflowExecutionStatus.TERMINATED:
            event = await self._close_event(description)
            reason = event.workflow_execution_terminated_event_attributes.reason if event else ""
            return Verdict("cancelled", terminated_text(reason), error_codes.TERMINATED)
        # The run's code ran to its end but its record did not land (a bug, or the database
        # refusing even the stripped-down end): a safety net, said as such in the row.
        if status == WorkflowExecutionStatus.FAILED:
            event = await self._close_event(description)
            message = (
                event.workflow_execution_failed_event_attributes.failure.message if event else ""
            )
            return Verdict(
                "failed",
                "the run failed without recording its end (reconciled from Temporal)"
                + (f": {message}" if message else ""),
                error_codes.BOOKKEEPING_FAILED,
            )
        if status == WorkflowExecutionStatus.CANCELED:
            return Verdict(
                "cancelled",
                "the run was cancelled without recording its end (reconciled from Temporal)",
                error_codes.CANCELLED,
            )
        return Verdict(
            "completed",
            "the run completed without recording its end (reconciled from Temporal; "
            "its outputs are in the workflow's history)",
        )

    async def _close_event(self, description: WorkflowExecutionDescription) -> HistoryEvent | None:
        """The execution's closing history event: the only place its terminate reason is kept."""
        handle = self._client.get_workflow_handle(description.id, run_id=description.run_id)
        async for event in handle.fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
        ):
            return event
        return None

    async def run_forever(self) -> None:
        """Sweep every interval until cancelled; a failed sweep is logged, never raised."""
        log.info(
            "reconciler: sweeping closed runs of task queue %r every %ss",
            self.task_queue,
            self.interval.total_seconds(),
        )
        while True:
            try:
                await self.sweep_once()
                await self.report_open_reviews()
            except Exception as exc:  # whatever it was, the next interval retries it
                log.warning(
                    "reconciler: sweep of task queue %r failed, retrying in %ss: %s: %s",
                    self.task_queue,
                    self.interval.total_seconds(),
                    type(exc).__name__,
                    exc,
                )
                log.debug("reconciler sweep failure", exc_info=True)
            await asyncio.sleep(self.interval.total_seconds())

    async def report_open_reviews(self) -> None:
        """Set the open-review gauge from the inbox (every worker process reports the same
        count, so dashboards take the max per tenant, not the sum).
        """
        async with self._sessions() as session:
            counts = await hitl_queries.open_review_counts(session)
        runtime = self._client.service_client.config.runtime or Runtime.default()
        gauge = runtime.metric_meter.create_gauge(
            OPEN_REVIEWS, "Review tasks waiting for a decision, by tenant."
        )
        for tenant in self._reported | set(counts):  # a tenant whose last task closed: 0
            gauge.set(counts.get(tenant, 0), {"tenant": tenant or "(none)"})
        self._reported |= set(counts)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the sweeps in the background for the duration of the block."""
        task = asyncio.create_task(self.run_forever(), name=f"reconciler:{self.task_queue}")
        try:
            yield
        finally:
            task.cancel()
            # wait() returns once it has stopped without re-raising its CancelledError,
            # while a cancellation of the caller itself still propagates.
            await asyncio.wait([task])


def reconciler_plugins(
    client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Sequence[Plugin]:
    """The worker plugin that runs the reconciler while the worker runs (none when it is off).

    A plugin's run context wraps `Worker.run` however the worker is started (`async with`
    in tests and benchmarks, `run_worker` in production) and ends with its shutdown.
    """
    if settings.reconcile_interval_seconds <= 0:
        return []
    reconciler = Reconciler(
        client,
        sessions,
        task_queue=settings.temporal_task_queue,
        interval=timedelta(seconds=settings.reconcile_interval_seconds),
        lookback=timedelta(hours=settings.reconcile_lookback_hours),
    )
    return [SimplePlugin("meta_agent.reconciler", run_context=reconciler.running)]
