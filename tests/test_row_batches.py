"""Agents' node rows written together (group commit) against a real Postgres: rows that
queue while a write is in flight go in one transaction, and each attempt still sees its
own rows written, or its own failure, exactly as if it had written alone.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.row_batches import RowBatches
from persistence import queries
from persistence.models import TaskInstance, WorkflowRun
from workflows.contract import TaskRecord


class CountingSessions:
    """The sessions a RowBatches opens, counted: one per transaction it writes."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.opened = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        self.opened += 1
        async with self._sessions() as session:
            yield session


async def _run_row(sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    async with sessions() as session, session.begin():
        return await queries.upsert_run(
            session, f"batch-{uuid.uuid4().hex[:12]}", {"status": "running"}
        )


async def _rows(sessions: async_sessionmaker[AsyncSession], run: uuid.UUID) -> dict[str, Any]:
    async with sessions() as session:
        found = await session.execute(
            select(
                TaskInstance.orchestrator_task_id, TaskInstance.status, TaskInstance.outputs
            ).where(TaskInstance.workflow_run_id == run)
        )
        return {task_id: (status, outputs) for task_id, status, outputs in found}


def _row(task_id: str, status: str = "completed", **columns: Any) -> TaskRecord:
    return TaskRecord.model_validate(
        {"orchestrator_task_id": task_id, "node_id": task_id, "status": status, **columns}
    )


async def test_rows_that_queue_meanwhile_go_together(
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    run = await _run_row(session_maker)
    counting = CountingSessions(session_maker)
    batches = RowBatches(counting)  # type: ignore[arg-type]
    await asyncio.gather(
        *(batches.write(run, None, [_row(f"t{i}", outputs={"i": i})]) for i in range(60))
    )
    rows = await _rows(session_maker, run)
    assert rows == {f"t{i}": ("completed", {"i": i}) for i in range(60)}
    # All 60 queue before the writer first runs: one transaction instead of 60.
    assert counting.opened == 1


async def test_a_refused_row_fails_its_own_attempt_only(
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    run = await _run_row(session_maker)
    batches = RowBatches(session_maker)
    first = asyncio.ensure_future(batches.write(run, None, [_row("first")]))
    await asyncio.sleep(0)  # it is in flight: the next ones queue behind it
    writes = [batches.write(run, None, [_row(f"ok{i}")]) for i in range(5)]
    # A status the table's CHECK constraint refuses (past the model's own check).
    bad = _row("bad").model_copy(update={"status": "exploded"})
    results = await asyncio.gather(
        first, *writes, batches.write(run, None, [bad]), return_exceptions=True
    )
    assert results[:-1] == [None] * 6
    assert isinstance(results[-1], DBAPIError)
    rows = await _rows(session_maker, run)
    assert set(rows) == {"first", *(f"ok{i}" for i in range(5))}


async def test_an_attempt_cancelled_before_its_rows_are_sent_writes_none(
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    run = await _run_row(session_maker)
    batches = RowBatches(session_maker)
    first = asyncio.ensure_future(batches.write(run, None, [_row("first")]))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(batches.write(run, None, [_row("cancelled")]))
    kept = asyncio.ensure_future(batches.write(run, None, [_row("kept")]))
    await asyncio.sleep(0)
    queued.cancel()
    await asyncio.gather(first, kept)
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert set(await _rows(session_maker, run)) == {"first", "kept"}


async def test_carried_rows_go_with_the_row_that_carries_them(
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    run = await _run_row(session_maker)
    batches = RowBatches(session_maker)
    # The carried row is refused, so the carrying row must not land without it.
    carried = _row("carried").model_copy(update={"status": "exploded"})
    first = asyncio.ensure_future(batches.write(run, None, [_row("first")]))
    await asyncio.sleep(0)
    with pytest.raises(DBAPIError):
        await batches.write(run, None, [carried, _row("carrier")])
    await first
    assert set(await _rows(session_maker, run)) == {"first"}


@pytest.mark.parametrize("seed", range(5))
async def test_concurrent_writes_of_the_same_rows_end_as_written_last(
    session_maker: async_sessionmaker[AsyncSession], seed: int
) -> None:
    """Reference model: each row ends as the last write of it that was issued, whatever
    batches the writes fell into (the same row twice never shares a statement).
    """
    rng = random.Random(seed)
    run = await _run_row(session_maker)
    batches = RowBatches(session_maker)
    expected: dict[str, Any] = {}
    pending: list[asyncio.Future[None]] = []
    for step in range(80):
        rows = [
            _row(f"t{rng.randrange(8)}", rng.choice(["running", "completed"]), outputs={"s": step})
            for _ in range(rng.randint(1, 3))
        ]
        rows = list({r.orchestrator_task_id: r for r in rows}.values())
        for r in rows:
            expected[r.orchestrator_task_id] = (r.status, {"s": step})
        pending.append(asyncio.ensure_future(batches.write(run, None, rows)))
        if rng.random() < 0.2:
            await asyncio.sleep(0)
    await asyncio.gather(*pending)
    assert await _rows(session_maker, run) == expected


async def test_a_batch_keeps_each_runs_progress(
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    runs = [await _run_row(session_maker) for _ in range(3)]
    batches = RowBatches(session_maker)
    first = asyncio.ensure_future(batches.write(runs[0], None, [_row("warm")]))
    await asyncio.sleep(0)  # in flight: what follows goes as one batch of three runs
    await asyncio.gather(
        first,
        *(batches.write(run, None, [_row("a"), _row("b")]) for run in runs),
        *(batches.write(run, None, [_row("c", "running")]) for run in runs),
    )
    async with session_maker() as session:
        found = await session.execute(
            select(WorkflowRun.id, WorkflowRun.completed_steps, WorkflowRun.current_step).where(
                WorkflowRun.id.in_(runs)
            )
        )
        progress = {run: (steps, current) for run, steps, current in found}
    assert progress[runs[0]] == (["warm", "a", "b"], "c")
    assert progress[runs[1]] == (["a", "b"], "c")
    assert progress[runs[2]] == (["a", "b"], "c")
