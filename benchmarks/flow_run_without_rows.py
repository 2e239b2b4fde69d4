"""FlowRun's worker with write-back off, for scenario (d): what the database costs FlowRun.

    python -m benchmarks.flow_run_without_rows      (env as FlowRun's worker's)

FlowRun has no switch to stop writing rows: the platform reads them, so a run that does not
record itself would lie. This process is the real worker, started by `meta-agent worker`'s
own code (`workers.cli.serve_worker`: telemetry, the client, `run_worker` with the same
workflow, sandbox, slots, cache and every activity `activities_for` registers; only the
logging setup of `meta-agent`'s main is repeated here), with three activities swapped for
ones that leave Postgres out: `prepare_flow` checks the inline definition and its inputs as
the real one does but reads and writes no row, `record_run` writes nothing, and the `api`
agent's node rows go nowhere. The bookkeeping activities still run, since FlowRun's commands
do not depend on the database. The benchmark also turns this worker's reconciler and
schedule sync off (they would write rows for its runs, which have none); the real worker's
sweep its own queue in the background. So FlowRun ÷ this side is what the database's reads
and writes cost a run, in the worker and in Postgres.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from temporalio import activity

from activities.agent_runtime import AgentRuntime
from activities.api import ApiAgent
from activities.registry import Dependencies, activities_for
from activities.row_batches import RowBatches
from flow_language.steps_format import read_drawing
from flow_language.validation import DefinitionError, input_problems, parse_definition
from persistence.statuses import RUN_ENDED
from workflows.contract import (
    AGENT_ACTIVITY_PREFIX,
    PREPARE_FLOW,
    RECORD_RUN,
    PreparedFlow,
    PrepareInput,
    RunUpdate,
    TaskRecord,
)


class _NoRows(RowBatches):
    """Node rows that go nowhere (the agent runtime awaits them as written)."""

    def __init__(self) -> None:
        pass

    async def write(
        self,
        run_row_id: uuid.UUID,
        tenant_id: str | None,
        rows: Sequence[TaskRecord],
        *,
        refresh_usage: bool = False,
    ) -> None:
        return None


class _BookkeepingWithoutRows:
    """`prepare_flow` and `record_run` minus their database: the run's row id is made up
    here, and answered by every `record_run` of the run as the real one answers it.
    """

    def __init__(self) -> None:
        self._row_ids: dict[str, str] = {}

    @activity.defn(name=PREPARE_FLOW)
    async def prepare_flow(self, data: PrepareInput) -> PreparedFlow:
        """The inline definition parsed and its inputs checked, as the real activity does."""
        row_id = self._row_ids.setdefault(data.orchestrator_run_id, str(uuid.uuid4()))
        req = data.request
        try:
            definition = parse_definition(read_drawing(req.definition))
        except DefinitionError as exc:
            problems = exc.problems
            return PreparedFlow(run_row_id=row_id, problems=problems, error="; ".join(problems))
        problems = input_problems(definition, req.inputs)
        return PreparedFlow(
            run_row_id=row_id,
            definition=definition.model_dump(mode="json", exclude_defaults=True),
            problems=problems,
            error="; ".join(problems) or None,
        )

    @activity.defn(name=RECORD_RUN)
    async def record_run(self, update: RunUpdate) -> str:
        """Nothing written; the run's row id, as the real activity returns it."""
        run_id = update.run.orchestrator_run_id
        if update.run.status in RUN_ENDED:
            return self._row_ids.pop(run_id, "")
        return self._row_ids.get(run_id, "")


def without_rows(deps: Dependencies) -> Sequence[Callable[..., Any]]:
    """Every activity the real worker registers, with the three that (d)'s chain touches
    Postgres through replaced by ones that do not.
    """
    assert deps.secrets is not None  # set by Dependencies
    bookkeeping = _BookkeepingWithoutRows()
    runtime = AgentRuntime(deps.sessions, deps.secrets, deps.health, rows=_NoRows())
    swapped: dict[str, Callable[..., Any]] = {
        PREPARE_FLOW: bookkeeping.prepare_flow,
        RECORD_RUN: bookkeeping.record_run,
        f"{AGENT_ACTIVITY_PREFIX}api": runtime.activity("api", ApiAgent(deps.http.shared)),
    }
    real = activities_for(deps)  # also what it installs (log scrubbing), as the real worker
    names = {_name(fn) for fn in real}
    assert set(swapped) <= names, f"not registered by the real worker: {set(swapped) - names}"
    return [swapped.get(_name(fn), fn) for fn in real]


def _name(fn: Callable[..., Any]) -> str:
    # The name `activity.defn` gave it, as the SDK's worker reads it (no public accessor).
    defn = activity._Definition.must_from_callable(fn)
    assert defn.name is not None
    return defn.name


async def serve() -> int:
    """Poll the queue in TEMPORAL_TASK_QUEUE until stopped: `meta-agent worker`'s own start
    (`serve_worker`), with `without_rows`.
    """
    from workers.cli import serve_worker
    from workers.logs import configure_logging
    from workers.settings import load_settings

    configure_logging(False, os.environ.get("LOG_FORMAT"))
    return await serve_worker(load_settings(), register=False, activities=without_rows)


if __name__ == "__main__":
    sys.exit(asyncio.run(serve()))
