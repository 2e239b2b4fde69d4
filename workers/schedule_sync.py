"""Keeping one Temporal Schedule per scheduled flow in step with the flows' rows.

The platform edits a flow's schedule, pauses, archives or deletes the flow in Postgres;
nothing tells Temporal. So the worker syncs: every SCHEDULE_SYNC_INTERVAL_SECONDS (and on
`meta-agent schedules sync`) it reads the scheduled flows (`persistence.schedule_queries`)
and, for each schedule they want (`workers.schedule_spec`), creates the Temporal Schedule,
updates it where it differs (cron, time zone, inputs, policies, the flow's name), pauses
it with a note saying why when the flow may not run, unpauses it when it may again, and
deletes the engine's schedules no flow wants any more.

Only the engine's own schedules are touched: an id starting `flow-` and a memo naming
OWNER and this task queue; anything else in the namespace is left alone (and a foreign
schedule under a flow's id is reported, not taken over). Every step is idempotent (a
creation racing another process finds the schedule made and compares it; an update goes
through the SDK's conflict loop; a delete of a gone schedule is a no-op), and a Postgres
advisory lock lets one process sync at a time. A problem with one flow's schedule (a
cron Temporal refuses) is reported and the schedule, if any, paused with the problem as
its note; the others are synced all the same.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.plugin import SimplePlugin
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Plugin

from persistence import schedule_queries
from workers.schedule_diff import (
    OwnedSchedule,
    SyncReport,
    differences,
    made_from,
    owned_by,
    refused,
)
from workers.schedule_spec import (
    MEMO_KEY,
    OWNER,
    PAUSED_NOTE_PREFIX,
    SCHEDULE_ID_PREFIX,
    FlowSchedule,
    active_note,
    build_schedule,
    flow_label,
    flow_schedules,
    owner_memo,
    paused_note,
)
from workers.settings import Settings

log = logging.getLogger("meta_agent.schedules")

#: Temporal unreachable: the whole sync stops and is tried again, rather than reporting
#: every flow as a problem.
_OUTAGE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)


class ScheduleSync:
    """Syncs the Temporal Schedules of one task queue (and optionally one tenant)."""

    def __init__(
        self,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
        *,
        task_queue: str,
        tenant_id: uuid.UUID | None = None,
    ) -> None:
        self._client = client
        self._sessions = sessions
        self.task_queue = task_queue
        self.tenant_id = tenant_id

    async def sync(self, *, wait: bool = True) -> SyncReport | None:
        """One sync of every scheduled flow; None when another process holds the lock and
        `wait` is false (that one is doing the same work).
        """
        scope = f"schedules:{self._client.namespace}:{self.task_queue}"
        async with self._sessions() as session, session.begin():
            if not await schedule_queries.sync_lock(session, scope, wait=wait):
                return None
            flows = await schedule_queries.scheduled_flows(session, self.tenant_id)
            report = SyncReport()
            wanted: set[str] = set()
            for flow in flows:
                for want in flow_schedules(flow):
                    wanted.add(want.schedule_id)
                    await self._guarded(want.schedule_id, report, self._sync_one(want, report))
            for owned in await self.owned():
                if owned.schedule_id not in wanted:
                    await self._guarded(owned.schedule_id, report, self._delete(owned, report))
            return report

    async def _guarded(
        self, schedule_id: str, report: SyncReport, step: Coroutine[Any, Any, None]
    ) -> None:
        """Run one schedule's step; its failure is that schedule's problem, not the sync's
        (unless Temporal is unreachable, which stops the sync).
        """
        try:
            await step
        except RPCError as exc:
            if exc.status in _OUTAGE:
                raise
            report.problems.append(f"schedule {schedule_id}: Temporal refused: {exc.message}")
        except Exception as exc:  # one schedule's surprise must not stop the others' sync
            log.debug("schedule %s: sync failed", schedule_id, exc_info=True)
            report.problems.append(f"schedule {schedule_id}: {type(exc).__name__}: {exc}")

    async def owned(self) -> list[OwnedSchedule]:
        """The engine's schedules of this task queue (and tenant), as visibility lists them
        (eventually consistent: a schedule made a moment ago may be missing).
        """
        found = []
        async for entry in await self._client.list_schedules():
            if not entry.id.startswith(SCHEDULE_ID_PREFIX):
                continue
            try:
                record = (await entry.memo()).get(MEMO_KEY)
            except Exception:  # a memo we cannot read is not one we wrote
                continue
            if not owned_by(record, self.task_queue) or not self._of_tenant(record):
                continue
            state = entry.schedule.state if entry.schedule else None
            found.append(
                OwnedSchedule(
                    schedule_id=entry.id,
                    record=record,
                    paused=bool(state and state.paused),
                    note=state.note if state else None,
                    next_times=entry.info.next_action_times if entry.info else [],
                )
            )
        return found

    def _of_tenant(self, record: dict[str, Any]) -> bool:
        """Whether an owned schedule is in this sync's scope (`--tenant`, or every tenant)."""
        return self.tenant_id is None or record.get("tenant_id") == str(self.tenant_id)

    async def _sync_one(self, want: FlowSchedule, report: SyncReport, again: bool = True) -> None:
        handle = self._client.get_schedule_handle(want.schedule_id)
        described = await _describe(handle)
        if described is None:
            if want.config is None:
                report.problems.append(want.problem or want.schedule_id)
                return
            try:
                await self._client.create_schedule(
                    want.schedule_id,
                    build_schedule(want, want.config, self.task_queue),
                    memo=owner_memo(want.flow, self.task_queue),
                )
            except ScheduleAlreadyRunningError:
                if again:  # another process made it meanwhile: compare with that one
                    await self._sync_one(want, report, again=False)
                return
            except RPCError as exc:
                if exc.status != RPCStatusCode.INVALID_ARGUMENT:
                    raise
                report.problems.append(refused(want, want.config, exc))
                return
            reason = want.paused_reason
            report.created[want.schedule_id] = (
                f"{flow_label(want.flow)}: cron {want.config.cron!r} in {want.config.timezone}"
                + (f" (paused: {reason})" if reason else "")
            )
            return
        record = (await described.memo()).get(MEMO_KEY)
        if not owned_by(record, self.task_queue):
            report.problems.append(
                f"{flow_label(want.flow)}: the schedule {want.schedule_id} in the namespace is "
                f"not this engine's (its memo does not name {OWNER} and task queue "
                f"{self.task_queue!r}); left alone"
            )
            return
        expected_tenant = str(want.flow.tenant_id) if want.flow.tenant_id else None
        if record.get("tenant_id") != expected_tenant:
            # The memo says whose runs these are, and cannot be updated: make it anew.
            await handle.delete()
            report.deleted[want.schedule_id] = "the flow changed tenant: made anew"
            if again:
                await self._sync_one(want, report, again=False)
            return
        state = described.schedule.state
        if want.config is None:
            report.problems.append(want.problem or want.schedule_id)
            await self._set_state(handle, state, want, report)
            return
        changes = await differences(
            self._client.data_converter, want, want.config, described, self.task_queue
        )
        if changes:
            try:
                await handle.update(lambda given: self._updated(given, want))
            except RPCError as exc:
                if exc.status != RPCStatusCode.INVALID_ARGUMENT:
                    raise
                problem = refused(want, want.config, exc)
                report.problems.append(problem)
                await self._set_state(handle, state, want, report, problem=problem)
                return
            report.updated[want.schedule_id] = changes
        if not await self._set_state(handle, state, want, report) and not changes:
            report.unchanged.append(want.schedule_id)

    def _updated(self, given: ScheduleUpdateInput, want: FlowSchedule) -> ScheduleUpdate:
        """The update of `want`'s schedule: everything as wanted but its paused state and
        note, which `_set_state` judges (a pause by someone else stays).
        """
        assert want.config is not None
        schedule = build_schedule(want, want.config, self.task_queue)
        schedule.state = given.description.schedule.state
        return ScheduleUpdate(schedule=schedule)

    async def _set_state(
        self,
        handle: ScheduleHandle,
        state: ScheduleState,
        want: FlowSchedule,
        report: SyncReport,
        problem: str | None = None,
    ) -> bool:
        """Pause the schedule (with why as its note) or unpause it as the flow says; True if
        it changed anything.
        """
        reason = problem or want.paused_reason
        if reason:
            note = paused_note(reason)
            if state.paused and state.note == note:
                return False
            await handle.pause(note=note)
            report.paused[handle.id] = reason
            return True
        note = active_note(want)
        if state.paused:
            if not (state.note or "").startswith(PAUSED_NOTE_PREFIX):
                report.held[handle.id] = state.note or "(no note)"
                return False
            await handle.unpause(note=note)
            report.unpaused[handle.id] = f"{flow_label(want.flow)} may run again"
            return True
        if state.note == note:
            return False
        await handle.unpause(note=note)  # a running schedule: only its note changes
        report.updated.setdefault(handle.id, []).append("note")
        return True

    async def _delete(self, owned: OwnedSchedule, report: SyncReport) -> None:
        """Delete a schedule no flow wants, once Temporal confirms it is still ours."""
        handle = self._client.get_schedule_handle(owned.schedule_id)
        described = await _describe(handle)
        if described is None:
            return
        record = (await described.memo()).get(MEMO_KEY)
        if not owned_by(record, self.task_queue) or not self._of_tenant(record):
            return
        try:
            await handle.delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return
        report.deleted[owned.schedule_id] = (
            f"flow {owned.record.get('flow')!r}: the flow is gone or no longer has this schedule"
        )

    async def describe_owned(self) -> list[tuple[OwnedSchedule, dict[str, Any]]]:
        """The engine's schedules as Temporal describes them now, each with what it was
        made from (cron, time zone, flow), for `meta-agent schedules list`.
        """
        described = []
        for owned in await self.owned():
            found = await _describe(self._client.get_schedule_handle(owned.schedule_id))
            if found is None:
                continue  # deleted since it was listed
            state = found.schedule.state
            current = OwnedSchedule(
                owned.schedule_id,
                owned.record,
                state.paused,
                state.note,
                found.info.next_action_times,
            )
            described.append((current, await made_from(self._client.data_converter, found)))
        return described

    async def run_forever(self, interval: timedelta) -> None:
        """Sync every interval until cancelled; a failed sync is logged, never raised, and a
        problem is logged when it first appears rather than at every interval.
        """
        log.info(
            "schedules: syncing task queue %r every %ss",
            self.task_queue,
            interval.total_seconds(),
        )
        known: set[str] = set()
        while True:
            try:
                report = await self.sync(wait=False)
                if report is not None:
                    for line in report.lines()[:-1]:
                        if line.startswith("problem") and line not in known:
                            log.warning("schedules: %s", line)
                        elif not line.startswith("problem"):
                            log.info("schedules: %s", line)
                    known = {line for line in report.lines() if line.startswith("problem")}
            except Exception as exc:  # the next interval tries again
                log.warning("schedules: sync failed, retrying: %s: %s", type(exc).__name__, exc)
                log.debug("schedule sync failure", exc_info=True)
            await asyncio.sleep(interval.total_seconds())

    def running(self, interval: timedelta) -> Any:
        """An async context manager syncing in the background while its block runs."""

        @asynccontextmanager
        async def background() -> AsyncIterator[None]:
            task = asyncio.create_task(self.run_forever(interval), name="schedule-sync")
            try:
                yield
            finally:
                task.cancel()
                await asyncio.wait([task])

        return background()


async def _describe(handle: ScheduleHandle) -> ScheduleDescription | None:
    try:
        return await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def schedule_sync_plugins(
    client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Sequence[Plugin]:
    """The worker plugin that syncs schedules while the worker runs (none when it is off)."""
    if settings.schedule_sync_interval_seconds <= 0:
        return []
    sync = ScheduleSync(client, sessions, task_queue=settings.temporal_task_queue)
    interval = timedelta(seconds=settings.schedule_sync_interval_seconds)
    return [SimplePlugin("meta_agent.schedules", run_context=lambda: sync.running(interval))]
