"""A run's progress on its `workflow_runs` row, kept by the statements that write its node rows.

`current_step` is the node whose `running` row was written last and is still running (a
review waiting for its decision included); `completed_steps` the node ids that completed, in
the order their rows were written, each once (a loop's body node is listed at its first
completed iteration). Both change only with the node rows, so they are computed in the very
statement that writes a run's last node row of a batch: an UPDATE of the run row in a
`WITH` before the upsert. An agent's row stays one statement and one round trip, and a run
issues nothing more to Temporal.

At the run's end (`run_ended`, in the transaction that writes it) `current_step` is cleared
and `execution_time_ms` set; `error_step` and `error_code` come with the end's own values.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, column, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import bindparam

from persistence import queries
from persistence.models import TaskInstance

_ENDED = "('completed', 'failed', 'cancelled')"

#: The progress a batch of node rows makes. Parameters: the run's row id, the node ids the
#: batch completed (JSON), the node of its latest running row, the node ids it ended, and
#: every task id it writes (the statement does not see their new rows: they are as given).
_PROGRESS = f"""
UPDATE workflow_runs SET
  completed_steps = COALESCE(completed_steps, '[]'::jsonb) || COALESCE((
    SELECT jsonb_agg(step.value ORDER BY step.n)
    FROM jsonb_array_elements(:p_completed) WITH ORDINALITY AS step(value, n)
    WHERE NOT COALESCE(workflow_runs.completed_steps, '[]'::jsonb)
      @> jsonb_build_array(step.value)
  ), '[]'::jsonb),
  current_step = CASE
    WHEN status IN {_ENDED} THEN NULL
    WHEN CAST(:p_started AS varchar) IS NOT NULL THEN CAST(:p_started AS varchar)
    WHEN current_step = ANY(CAST(:p_ended AS varchar[])) THEN (
      SELECT t.node_id FROM task_instances t
      WHERE t.workflow_run_id = workflow_runs.id AND t.status = 'running'
        AND t.orchestrator_task_id <> ALL(CAST(:p_tasks AS varchar[]))
      ORDER BY t.started_at DESC NULLS LAST LIMIT 1)
    ELSE current_step END
WHERE id = :p_run AND (
  NOT COALESCE(completed_steps, '[]'::jsonb) @> :p_completed
  OR (status IN {_ENDED} AND current_step IS NOT NULL)
  OR (status NOT IN {_ENDED} AND (
    current_step IS DISTINCT FROM CAST(:p_started AS varchar)
      AND CAST(:p_started AS varchar) IS NOT NULL
    OR CAST(:p_started AS varchar) IS NULL
      AND current_step = ANY(CAST(:p_ended AS varchar[])))))
"""
_PROGRESS_CTE = (
    text(_PROGRESS + "RETURNING id")
    .bindparams(bindparam("p_completed", type_=JSONB))
    .columns(column("id"))
    .cte("progress")
)


@dataclass(frozen=True)
class Progress:
    """What a batch of node rows says of the run's progress."""

    #: node ids whose rows completed, in completion order, each once
    completed: tuple[str, ...] = ()
    #: the node of the batch's latest `running` row
    started: str | None = None
    #: node ids whose rows ended (completed, failed, skipped, cancelled)
    ended: tuple[str, ...] = ()
    #: every task id the batch writes
    task_ids: tuple[str, ...] = ()

    def params(self, run_row_id: uuid.UUID) -> dict[str, Any]:
        """The statement's parameters."""
        return {
            "p_run": run_row_id,
            "p_completed": list(self.completed),
            "p_started": self.started,
            "p_ended": list(self.ended),
            "p_tasks": list(self.task_ids),
        }


async def upsert_task_with_progress(
    session: AsyncSession,
    workflow_run_id: uuid.UUID,
    orchestrator_task_id: str,
    values: Mapping[str, Any],
    progress: Progress,
) -> uuid.UUID:
    """`queries.upsert_task_instance`, updating the run's progress in the same statement."""
    key = {"workflow_run_id": workflow_run_id, "orchestrator_task_id": orchestrator_task_id}
    table: Table = TaskInstance.__table__  # type: ignore[assignment]
    columns = queries.checked_columns(table, values, keys=tuple(key))
    stmt = _with_progress(table, tuple(key), tuple(sorted(columns)))
    params = {**key, **columns, **progress.params(workflow_run_id)}
    row_id: uuid.UUID = (await session.execute(stmt, params)).scalar_one()
    return row_id


#: The same update on its own, for node rows already written in the transaction.
_PROGRESS_ALONE = text(_PROGRESS).bindparams(bindparam("p_completed", type_=JSONB))


async def record_progress(
    session: AsyncSession, progress_by_run: Sequence[tuple[uuid.UUID, Progress]]
) -> None:
    """The progress of several runs whose node rows this transaction just wrote (a batch of
    agents' rows): one statement per run, sent together.
    """
    if progress_by_run:
        await session.execute(_PROGRESS_ALONE, [p.params(run) for run, p in progress_by_run])


@functools.lru_cache(maxsize=256)
def _with_progress(table: Table, key: tuple[str, ...], columns: tuple[str, ...]) -> Any:
    """The upsert of `columns`, with the progress update in its `WITH`; built once per shape."""
    return queries.upsert_statement(table, key, columns).add_cte(_PROGRESS_CTE)


async def run_ended(session: AsyncSession, run_row_id: uuid.UUID) -> None:
    """The ended run's duration, and no current step (nothing runs any more)."""
    await session.execute(
        text(
            "UPDATE workflow_runs SET current_step = NULL, execution_time_ms = CASE "
            "WHEN started_at IS NULL OR completed_at IS NULL THEN NULL ELSE GREATEST(0, "
            "round(extract(epoch FROM completed_at - started_at) * 1000))::integer END "
            f"WHERE id = :run AND status IN {_ENDED}"
        ),
        {"run": run_row_id},
    )
