"""Starting flows in tests and reading back what they wrote."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from workers.client import FLOW_RUN, start_run
from workflows.contract import FlowResult, FlowRunInput

#: The platform's example flows, kept verbatim in the repo (so it tests on its own).
EXAMPLE_FLOWS = Path(__file__).resolve().parents[1] / "examples" / "flows"


def shared_flow(name: str) -> dict[str, Any]:
    """An example flow from `examples/flows`, so tests check what newcomers are shown."""
    data: dict[str, Any] = json.loads((EXAMPLE_FLOWS / f"{name}.json").read_text())
    return data


@dataclass
class FlowWorker:
    """The test's worker and task queue, and the runs it started, which the run invariant checks."""

    client: Client
    task_queue: str
    sessions: async_sessionmaker[AsyncSession]
    #: workflow IDs this worker's tests started, checked by the run invariant at the end
    started: list[str] = field(default_factory=list)

    async def start(
        self,
        definition: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        workflow_id: str | None = None,
        **fields: Any,
    ) -> WorkflowHandle[Any, FlowResult]:
        """Start a run as the product does (`workers.client.start_run`)."""
        params = FlowRunInput(definition=definition, inputs=inputs or {}, **fields)
        handle = await start_run(
            self.client,
            self.task_queue,
            params,
            run_id=workflow_id or f"run-{uuid.uuid4().hex[:12]}",
        )
        self.started.append(handle.id)
        return handle

    async def start_raw(
        self, argument: Any, workflow_id: str | None = None
    ) -> WorkflowHandle[Any, FlowResult]:
        """Start a run as plain `temporal workflow start` can: any argument, no check of its
        inputs, under an id that may have been used before.
        """
        handle = await self.client.start_workflow(
            FLOW_RUN,
            argument,
            id=workflow_id or f"run-{uuid.uuid4().hex[:12]}",
            task_queue=self.task_queue,
            result_type=FlowResult,
        )
        self.started.append(handle.id)
        return handle

    async def run(
        self,
        definition: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **fields: Any,
    ) -> tuple[FlowResult, str]:
        """Run a flow that must complete: its result and workflow ID (a failure raises)."""
        handle = await self.start(definition, inputs, **fields)
        return await handle.result(), handle.id

    async def fail(
        self,
        definition: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        """Runs a flow that must fail; its workflow ID, for reading its rows."""
        handle = await self.start(definition, inputs, **fields)
        try:
            await handle.result()
        except WorkflowFailureError:
            return handle.id
        raise AssertionError(f"run {handle.id} was expected to fail but completed")

    async def cancel_and_wait(self, handle: WorkflowHandle[Any, Any]) -> float:
        """Cancels a started run, which must then fail; seconds from the cancel to its end."""
        began = time.monotonic()
        await handle.cancel()
        try:
            await handle.result()
        except WorkflowFailureError:
            return time.monotonic() - began
        raise AssertionError(f"run {handle.id} completed although it was cancelled")

    async def failed_row(self, definition: dict[str, Any], node_id: str) -> dict[str, Any]:
        """The `task_instances` row of `node_id` in a run that must fail."""
        return (await self.task_rows(await self.fail(definition)))[node_id]

    async def run_row(self, orchestrator_run_id: str) -> dict[str, Any]:
        """The run's `workflow_runs` row, as the worker last wrote it."""
        async with self.sessions() as s:
            row = (
                (
                    await s.execute(
                        text("SELECT * FROM workflow_runs WHERE orchestrator_run_id = :o"),
                        {"o": orchestrator_run_id},
                    )
                )
                .mappings()
                .one()
            )
            return dict(row)

    async def scheduled_activities(self, run_id: str) -> list[str]:
        """The activity types a run scheduled, in the order of its history."""
        history = await self.client.get_workflow_handle(run_id).fetch_history()
        return [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]

    async def task_rows(self, orchestrator_run_id: str) -> dict[str, dict[str, Any]]:
        """task_instances of a run, by orchestrator_task_id."""
        async with self.sessions() as s:
            rows = (
                (
                    await s.execute(
                        text(
                            "SELECT t.* FROM task_instances t JOIN workflow_runs r "
                            "ON r.id = t.workflow_run_id WHERE r.orchestrator_run_id = :o"
                        ),
                        {"o": orchestrator_run_id},
                    )
                )
                .mappings()
                .all()
            )
            return {r["orchestrator_task_id"]: dict(r) for r in rows}
