"""Node rows of concurrent agent attempts, written together (group commit).

Under load many attempts end within the same few milliseconds, and each wrote its row
in a round trip of its own: Postgres and this worker paid per statement. Here a write
goes at once when none is in flight; while one is, the rows that arrive queue up and go
next, all in one transaction. So an idle worker adds no latency, and a busy one pays one
round trip per batch instead of per row.

What an attempt sees does not change: its rows are written (or their write failed) when
`write` returns. A row the database refuses fails only its own attempt (the batch is
retried row set by row set). A cancelled attempt's rows not yet sent are dropped, and
rows already being sent are waited for, so no row of an attempt lands after it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.writeback import progress_of, task_values
from persistence import progress_queries, queries
from persistence.health import database_unreachable
from workflows.contract import TaskRecord

#: The most rows one batch carries (one statement per set of columns).
MAX_BATCH_ROWS = 500
#: How long a batch's write may take before its rows count as not written.
BATCH_WRITE_SECONDS = 10.0


@dataclass(eq=False)
class _Rows:
    """The rows one attempt writes together: its own, and those it carries."""

    run_row_id: uuid.UUID
    records: Sequence[TaskRecord]
    values: list[tuple[str, dict[str, Any]]]
    refresh_usage: bool
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    taken: bool = False

    def keys(self) -> set[tuple[uuid.UUID, str]]:
        return {(self.run_row_id, task_id) for task_id, _ in self.values}

    def settle(self, error: BaseException | None = None) -> None:
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


class RowBatches:
    """The worker's queue of node rows, flushed by one writer at a time."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._queue: list[_Rows] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(
        self,
        run_row_id: uuid.UUID,
        tenant_id: str | None,
        rows: Sequence[TaskRecord],
        *,
        refresh_usage: bool = False,
    ) -> None:
        """Upsert `rows` of one run (atomically together), and the run's token totals."""
        # Converted here, so a value that cannot be stored fails its caller at once.
        values = [(r.orchestrator_task_id, task_values(r, tenant_id)) for r in rows]
        entry = _Rows(run_row_id, rows, values, refresh_usage)
        self._queue.append(entry)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        try:
            await asyncio.shield(entry.done)
        except asyncio.CancelledError:
            if not entry.taken:
                self._queue.remove(entry)
                entry.done.cancel()
            else:  # being sent: let it land (or fail) before the attempt ends
                with contextlib.suppress(BaseException):
                    await asyncio.shield(entry.done)
            if entry.done.done() and not entry.done.cancelled():
                entry.done.exception()  # retrieved: the attempt is gone
            raise

    async def _drain(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                async with asyncio.timeout(BATCH_WRITE_SECONDS):
                    await self._write_together(batch)
            except TimeoutError:
                error = TimeoutError(f"a row write took over {BATCH_WRITE_SECONDS:.0f} s")
                for entry in batch:
                    entry.settle(error)
            except Exception as exc:
                if database_unreachable(exc):
                    for entry in batch:
                        entry.settle(exc)
                else:  # refused data: find whose, without failing the others
                    await self._write_alone(batch)
            else:
                for entry in batch:
                    entry.settle()

    def _take(self) -> list[_Rows]:
        """The next batch: queued entries in order, none writing a row another one writes, and
        none writing a row that an earlier entry left queued writes too.
        """
        batch: list[_Rows] = []
        keys: set[tuple[uuid.UUID, str]] = set()
        rows = 0
        for entry in list(self._queue):
            entry_keys = entry.keys()
            clash = bool(keys & entry_keys)
            # Its rows stay claimed either way: a later write of them must not overtake it.
            keys |= entry_keys
            if clash:
                continue  # the same row twice in a statement: it waits for the next batch
            if batch and rows + len(entry.values) > MAX_BATCH_ROWS:
                break
            batch.append(entry)
            rows += len(entry.values)
        for entry in batch:
            self._queue.remove(entry)
            entry.taken = True
        return batch

    async def _write_together(self, batch: list[_Rows]) -> None:
        async with self._sessions() as session:
            if len(batch) == 1 and len(batch[0].values) == 1 and not batch[0].refresh_usage:
                # One upsert (the run's progress in its WITH) is atomic by itself: no
                # BEGIN/COMMIT round trips around it.
                await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                entry = batch[0]
                (task_id, values), records = entry.values[0], list(entry.records)
                await progress_queries.upsert_task_with_progress(
                    session, entry.run_row_id, task_id, values, progress_of(records)
                )
                return
            await session.begin()
            await _write(session, batch)
            await session.commit()

    async def _write_alone(self, batch: list[_Rows]) -> None:
        for entry in batch:
            try:
                async with asyncio.timeout(BATCH_WRITE_SECONDS):
                    async with self._sessions() as session, session.begin():
                        await _write(session, [entry])
            except Exception as exc:
                entry.settle(exc)
            else:
                entry.settle()


async def _write(session: AsyncSession, batch: list[_Rows]) -> None:
    rows = [(e.run_row_id, task_id, values) for e in batch for task_id, values in e.values]
    await queries.upsert_task_instances(session, rows)
    by_run: dict[uuid.UUID, list[TaskRecord]] = {}
    for entry in batch:
        by_run.setdefault(entry.run_row_id, []).extend(entry.records)
    await progress_queries.record_progress(
        session, [(run, progress_of(records)) for run, records in by_run.items()]
    )
    for run_row_id in dict.fromkeys(e.run_row_id for e in batch if e.refresh_usage):
        await queries.refresh_run_usage(session, run_row_id)
