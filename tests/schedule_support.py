"""Scheduled flows in tests: a tenant of the test's own, its flows, and their schedules.

The tests share one database and one Temporal namespace, so every sync here is scoped to
the test's tenant (as `meta-agent schedules sync --tenant` is), and the test's schedules
and flows are removed at its end whatever happened.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, ScheduleDescription, ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.support import make_tenant
from workers.schedule_diff import SyncReport
from workers.schedule_sync import ScheduleSync

T = TypeVar("T")

#: A flow that returns what its input says, so a run shows the inputs its schedule sent.
FLOW = {
    "nodes": [
        node("start", "start"),
        node("double", "transform", {"output": "{{ input.n * 2 }}"}),
        node("end", "end", {"outputs": {"doubled": "{{ nodes.double.output }}"}}),
    ],
    "edges": [edge("start", "double"), edge("double", "end")],
}
#: A cron that fires once a year: tests that need no fire of their own get none.
YEARLY = "0 0 1 1 *"


def schedule_trigger(**config: Any) -> dict[str, Any]:
    """A `workflows.triggers` entry of type schedule."""
    return {"type": "schedule", "config": config}


@dataclass
class Scheduling:
    """One test's tenant, flows and sync; `cleanup` removes their schedules and rows."""

    worker: FlowWorker
    tenant_id: uuid.UUID
    tenant_name: str
    flows: list[str] = field(default_factory=list)

    @property
    def client(self) -> Client:
        """The test worker's Temporal client."""
        return self.worker.client

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """Sessions that commit (the worker must see the flows)."""
        return self.worker.sessions

    def sync_of(self, task_queue: str | None = None) -> ScheduleSync:
        """The schedule sync of this test's tenant, on the worker's task queue."""
        return ScheduleSync(
            self.client,
            self.sessions,
            task_queue=task_queue or self.worker.task_queue,
            tenant_id=self.tenant_id,
        )

    async def sync(self) -> SyncReport:
        """One sync of the tenant's schedules."""
        report = await self.sync_of().sync()
        assert report is not None
        return report

    async def flow(self, triggers: list[Any] | None = None, **columns: Any) -> str:
        """A published flow of the tenant with these triggers and columns; its id."""
        async with self.sessions() as s, s.begin():
            stored = await queries.save_workflow_version(
                s,
                name=f"sched-{uuid.uuid4().hex[:6]}",
                definition=FLOW,
                tenant_id=self.tenant_id,
            )
        flow_id = str(stored.workflow_id)
        self.flows.append(flow_id)
        await self.set(flow_id, triggers=triggers or [], **columns)
        return flow_id

    async def set(self, flow_id: str, **columns: Any) -> None:
        """Change the flow's row as the platform would (triggers as JSON)."""
        if "triggers" in columns:
            columns["triggers"] = json.dumps(columns["triggers"])
        assignments = ", ".join(
            f"{name} = CAST(:{name} AS jsonb)" if name == "triggers" else f"{name} = :{name}"
            for name in columns
        )
        async with self.sessions() as s, s.begin():
            await s.execute(
                text(f"UPDATE workflows SET {assignments} WHERE id = :id"),
                {**columns, "id": flow_id},
            )

    async def name(self, flow_id: str) -> str:
        """The flow's name."""
        async with self.sessions() as s:
            found = await s.scalar(text("SELECT name FROM workflows WHERE id = :i"), {"i": flow_id})
        return str(found)

    async def describe(self, schedule_id: str) -> ScheduleDescription | None:
        """The schedule as Temporal has it (None: there is none)."""
        try:
            return await self.client.get_schedule_handle(schedule_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def listed(self, schedule_id: str) -> None:
        """Wait until visibility lists the schedule (the sync finds the ones to delete so)."""
        await eventually(lambda: self._is_listed(schedule_id), what=f"{schedule_id} listed")

    async def _is_listed(self, schedule_id: str) -> bool:
        return any([e.id == schedule_id async for e in await self.client.list_schedules()])

    async def fire(self, schedule_id: str, count: int = 1) -> list[str]:
        """Fire the schedule now `count` times; the workflow ids of the runs it started
        (counted from its recent actions), each added to the runs the invariant checks.
        """
        handle = self.client.get_schedule_handle(schedule_id)
        started: list[str] = []
        before = await self.describe(schedule_id)
        assert before is not None
        seen = len(before.info.recent_actions)
        for fired in range(1, count + 1):
            # A fire's workflow id ends in its time to the second: one fire a second.
            await asyncio.sleep(1.1 if fired > 1 else 0)
            await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
            started = await self.started_by(schedule_id, seen + fired)
        return started

    async def started_by(self, schedule_id: str, at_least: int, within: float = 20) -> list[str]:
        """The workflow ids the schedule started, once it has started `at_least` runs."""

        async def enough() -> list[str] | None:
            described = await self.describe(schedule_id)
            assert described is not None
            actions = described.info.recent_actions
            return (
                [a.action.workflow_id for a in actions]  # type: ignore[attr-defined]
                if len(actions) >= at_least
                else None
            )

        ids = await eventually(enough, what=f"{at_least} runs of {schedule_id}", within=within)
        for workflow_id in ids:
            if workflow_id not in self.worker.started:
                self.worker.started.append(workflow_id)
        return ids

    async def cleanup(self) -> None:
        """Delete the test's schedules (and any runs they still have open), then its flows."""
        for flow_id in self.flows:
            for suffix in ("", "-2", "-3"):
                described = await self.describe(f"flow-{flow_id}{suffix}")
                if described is None:
                    continue
                await self.client.get_schedule_handle(described.id).delete()
        async with self.sessions() as s, s.begin():
            await s.execute(
                text("DELETE FROM workflows WHERE tenant_id = :t"), {"t": self.tenant_id}
            )


async def scheduling(flow_worker: FlowWorker) -> AsyncIterator[Scheduling]:
    """A new tenant for one test's scheduled flows; their schedules and rows go at its end
    (the `sched` fixture).
    """
    name = f"sched-tenant-{uuid.uuid4().hex[:6]}"
    async with flow_worker.sessions() as s, s.begin():
        tenant = await make_tenant(s, name)
    scheduling = Scheduling(flow_worker, tenant, name)
    try:
        yield scheduling
    finally:
        await scheduling.cleanup()


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, what: str, within: float = 20
) -> T:
    """`probe`'s first truthy answer, asked every 0.2 s until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def run_row(worker: FlowWorker, workflow_id: str) -> dict[str, Any]:
    """The run's row once it has one (a scheduled run starts on its own time)."""

    async def row() -> dict[str, Any] | None:
        async with worker.sessions() as s:
            found = (
                (
                    await s.execute(
                        text("SELECT * FROM workflow_runs WHERE orchestrator_run_id = :o"),
                        {"o": workflow_id},
                    )
                )
                .mappings()
                .one_or_none()
            )
        return dict(found) if found and found["completed_at"] else None

    return await eventually(row, what=f"the ended row of {workflow_id}")
