"""The rows one attempt of an agent node writes: its running row, its end, the rows it carries.

The rows are the record of the node, not its work: a database outage must never
make an agent do its work again. So an end row the database cannot take when it is
due goes back to the workflow (`AgentOutcome`), whose write-back retries until the
database answers; a failed or cancelled attempt's row is left to the workflow,
which records such an end itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from persistence.health import DatabaseHealth, database_unreachable
from workflows.contract import AgentOutcome, AgentTask, TaskRecord

log = logging.getLogger("meta_agent.agents")

#: How long an agent works before its `running` row is written (sooner: only its end row).
RUNNING_ROW_AFTER = 1.0
#: How long one row write may take: longer, and the database counts as unreachable (cut
#: off without a reset, or stuck), and the row goes back to the workflow.
ROW_WRITE_SECONDS = 10.0


class RowWriteTimedOut(TimeoutError):
    """A row write that did not finish in ROW_WRITE_SECONDS."""


#: Writes a node's row, with the carried rows when `carried` (all in one transaction).
RowWriter = Callable[[TaskRecord, bool], Awaitable[None]]


class AttemptRows:
    """The rows of one attempt: `running` once it has worked a while, then exactly one end."""

    def __init__(
        self, write: RowWriter, task: AgentTask, row: TaskRecord, health: DatabaseHealth
    ) -> None:
        self._write = write
        self._task = task
        self.row = row
        self._health = health
        #: the carried rows still wait for a write (they go with this node's first row)
        self._carrying = bool(task.carried_rows)
        self._unwritten: TaskRecord | None = None
        self._writing_running = False
        self._running = asyncio.create_task(self._running_row_later())

    async def _record(self, row: TaskRecord) -> None:
        try:
            async with asyncio.timeout(ROW_WRITE_SECONDS):
                await self._write(row, self._carrying)
        except TimeoutError:
            exc = RowWriteTimedOut(f"a row write took over {ROW_WRITE_SECONDS:.0f} s")
            self._health.lost(exc)
            raise exc from None
        except Exception as exc:
            if database_unreachable(exc):
                self._health.lost(exc)
            raise
        self._health.answered()
        self._carrying = False

    async def _running_row_later(self) -> None:
        # Off the node's critical path, and only once it has worked a while: a node that
        # ends sooner has one row, its end.
        await asyncio.sleep(RUNNING_ROW_AFTER)
        self._writing_running = True
        await self._record(self.row)

    async def _settle_running_row(self) -> None:
        """Before an end row: drop the running row not yet begun, let one being written land
        first (an end row must never be overwritten by its start).
        """
        if not self._writing_running:
            self._running.cancel()
        await asyncio.wait([self._running])
        if not self._running.cancelled():
            self._running.exception()  # a failed one is superseded by the end row

    async def completed(self, **columns: Any) -> None:
        """Write the node's completed row; if the database is unreachable and the workflow
        takes rows back, keep it (without its outputs, which travel as the output) for it.
        """
        await self._settle_running_row()
        row = self.row.model_copy(update={"status": "completed", "error": None, **columns})
        try:
            await self._record(row)
        except Exception as exc:
            if not (self._task.rows_may_wait and _unreachable(exc)):
                raise
            self._unwritten = row.model_copy(update={"outputs": None})

    async def ended_otherwise(self, **columns: Any) -> None:
        """Write a failed, cancelled or retrying attempt's row. With the database unreachable
        it is not written: the workflow records a node's failure or cancellation itself, and a
        retry's row is superseded by the next attempt's.
        """
        await self._settle_running_row()
        try:
            await self._record(self.row.model_copy(update=columns))
        except Exception as exc:
            if not _unreachable(exc):
                raise
            log.warning(
                "node %s: its %s row waits for the database", self._task.task_id, columns["status"]
            )

    async def close(self) -> None:
        """Stop the running row if the attempt ended without writing an end."""
        await self._settle_running_row()

    def outcome(self, output: Any) -> Any:
        """What the activity returns: the output, as an `AgentOutcome` if the workflow asked."""
        if not self._task.rows_may_wait:
            return output
        return AgentOutcome(
            output=output,
            row=self._unwritten,
            carried_written=not self._carrying,
            attempt=(self.row.retry_count or 0) + 1,
        )


def _unreachable(exc: BaseException) -> bool:
    """An error that says the database is not there, or a write that hung."""
    return isinstance(exc, RowWriteTimedOut) or database_unreachable(exc)
