"""The run's write-back buffer: node rows and the run's status, written in the background.

Rows of nodes evaluated inside the workflow (condition, transform, wait, loop, ...)
are buffered and written by `record_run` while the run goes on, so bookkeeping adds
no round trip to the path from one node to the next. An activity about to run
anyway (opening a review task) can carry them instead (`take_bookkeeping`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.bookkeeping import bookkeeping

with workflow.unsafe.imports_passed_through():
    from flow_language.sizes import json_size, model_size
    from workflows.contract import (
        MAX_WRITE_BYTES,
        NODE_ENDED,
        RECORD_RUN,
        RunRecord,
        RunStatus,
        RunUpdate,
        TaskRecord,
    )

#: The most rows one write carries.
ROWS_PER_WRITE = 500
#: The most finished rows, and bytes of them, an agent's activity carries beside its own.
ROWS_PER_AGENT = 50
BYTES_PER_AGENT = 64 * 1024


class RunHeader(Protocol):
    """What a write needs to know of the run besides its rows."""

    status: RunStatus
    tenant_id: str | None
    finished: bool
    records_every_end: bool
    agents_carry_rows: bool


class WriteBack:
    """Buffered rows (the latest per node execution) and whether the run's status changed."""

    def __init__(self, run: RunHeader) -> None:
        self._run = run
        self._pending: dict[str, TaskRecord] = {}
        self._bytes: dict[str, int] = {}
        self._status_dirty = False
        self._flush_task: asyncio.Task[None] | None = None
        #: how many write-backs have been taken (each carries the run's status)
        self.takes = 0
        #: `record_run` writes under way (in the background or awaited)
        self._writing = 0

    def add(self, row: TaskRecord) -> None:
        """Buffer a row, replacing any earlier one of the same node execution."""
        self._pending[row.orchestrator_task_id] = row
        if self._run.records_every_end:
            self._bytes[row.orchestrator_task_id] = json_size(row.outputs) + len(row.error or "")

    def status_changed(self) -> None:
        """Have the next write carry the run's status even if no row is buffered."""
        self._status_dirty = True

    @property
    def settled(self) -> bool:
        """Whether the run's status as last taken is all there is: no write in flight, none due."""
        return not self._status_dirty and not self._writing

    def maybe_flush(self) -> None:
        """Start a background write of buffered rows unless one is already under way."""
        if (self._pending or self._status_dirty) and (
            self._flush_task is None or self._flush_task.done()
        ):
            self._flush_task = asyncio.create_task(self.flush_once())

    def take(self, room: int = MAX_WRITE_BYTES, **run_fields: Any) -> RunUpdate:
        """The buffered rows (up to a batch, and under Temporal's payload limit) and the run
        status, as one write-back.
        """
        rows = list(self._pending.values())[:ROWS_PER_WRITE]
        if self._run.records_every_end:
            room -= json_size(run_fields.get("outputs"))
            for i, row in enumerate(rows):
                room -= self._bytes.get(row.orchestrator_task_id, 0)
                if room < 0 and i > 0:
                    rows = rows[:i]
                    break
        for row in rows:
            del self._pending[row.orchestrator_task_id]
            self._bytes.pop(row.orchestrator_task_id, None)
        self._status_dirty = False
        self.takes += 1
        return RunUpdate(
            run=RunRecord(
                orchestrator_run_id=workflow.info().workflow_id,
                status=self._run.status,
                **run_fields,
            ),
            tenant_id=self._run.tenant_id,
            tasks=rows,
        )

    def take_finished(self, room: int) -> list[TaskRecord]:
        """Finished rows for an agent's activity to write with its own: a bounded few, within
        the `room` its own argument leaves in the payload.

        Only finished rows: they never change again, so the activity writing one late, or
        again on a retry, cannot overwrite a newer state of it.
        """
        if not self._run.agents_carry_rows:
            return []
        taken: list[TaskRecord] = []
        room = min(room, BYTES_PER_AGENT)
        for task_id, row in list(self._pending.items()):
            if len(taken) == ROWS_PER_AGENT:
                break
            if row.status not in NODE_ENDED or self._bytes.get(task_id, 0) > room:
                continue
            size = model_size(row)  # the whole row, as it travels
            if size > room:
                continue
            room -= size
            taken.append(row)
            del self._pending[task_id]
            self._bytes.pop(task_id, None)
        return taken

    def restore(self, rows: list[TaskRecord]) -> None:
        """Buffer again rows an activity carried but may not have written (it failed or was
        cancelled); a later write converges on the same rows.
        """
        for row in rows:
            if row.orchestrator_task_id not in self._pending:
                self.add(row)

    async def take_bookkeeping(self, room: int = MAX_WRITE_BYTES) -> RunUpdate:
        """Hand buffered write-back to an activity about to run anyway (after any in flight),
        as much as fits in `room` bytes beside that activity's own argument.
        """
        await self.flushed()
        return self.take(room)

    async def flushed(self) -> None:
        """Wait for the background write in flight, and for any it chained after itself."""
        while self._flush_task is not None and not self._flush_task.done():
            await self._flush_task
        if self._flush_task is not None:
            await self._flush_task  # re-raises its failure

    async def flush_once(self, **run_fields: Any) -> None:
        """One write of what is buffered; rows it could not write are kept for the run's last
        record, and rows buffered meanwhile are written next.
        """
        if self._run.agents_carry_rows and not (self._pending or self._status_dirty or run_fields):
            return  # an agent's activity took what was buffered
        update = self.take(**run_fields)
        rows = update.tasks
        self._writing += 1
        try:
            await bookkeeping(
                RECORD_RUN,
                update,
                f"Record {len(rows)} node rows" if rows else "Record run status",
                result_type=str,
            )
        except ActivityError:
            if self._run.records_every_end:  # keep them for the run's last, stripped record
                for row in rows:
                    self._pending.setdefault(row.orchestrator_task_id, row)
            raise
        finally:
            self._writing -= 1
        # Rows buffered while this write was in flight (e.g. a wait that has just begun) must
        # not sit in memory until some later node ends: write them next.
        if (
            self._run.records_every_end
            and not self._run.finished
            and (self._pending or self._status_dirty)
            and not run_fields
        ):
            self._flush_task = asyncio.create_task(self.flush_once())

    async def flush_all(self, **final_run_fields: Any) -> None:
        """Write everything buffered, in as many writes as it takes; the last carries
        `final_run_fields` (the run's outputs, error, end time).
        """
        await self.flushed()
        while len(self._pending) > ROWS_PER_WRITE or (
            self._run.records_every_end
            and self._pending
            and sum(self._bytes.values()) + json_size(final_run_fields.get("outputs"))
            > MAX_WRITE_BYTES
        ):
            await self.flush_once()
        if self._pending or self._status_dirty or final_run_fields:
            await self.flush_once(**final_run_fields)

    def take_stripped(self) -> list[TaskRecord]:
        """Every buffered row without its payloads (for a run whose rows the database
        refused: the payloads are the likeliest cause).
        """
        rows = [
            row.model_copy(update={"outputs": None, "inputs": None, "agent_config": None})
            for row in self._pending.values()
        ]
        self._pending.clear()
        self._status_dirty = False
        return rows
