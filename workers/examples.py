"""The example flows `meta-agent dev` imports and runs, so a newcomer sees a run at once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from persistence import queries
from workers.client import start_run
from workflows.contract import FlowRunInput

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples" / "flows"


@dataclass(frozen=True)
class SampleRun:
    """A run of an example flow (by name) that `meta-agent dev` starts, with inputs that work."""

    flow: str
    inputs: dict[str, Any]


def sample_runs(api_base: str) -> list[SampleRun]:
    """The sample runs, their inputs pointing at the sample API served at `api_base`."""
    return [
        SampleRun("tour-of-nodes", {"api_base": api_base, "order_id": 42}),
        SampleRun("customer-360", {"api_base": api_base, "customer_id": 1}),
        SampleRun(
            "basket-loop",
            {
                "api_base": api_base,
                "lines": [
                    {"sku": "coffee", "qty": 2},
                    {"sku": "tea", "qty": 1},
                    {"sku": "apple", "qty": 6},
                ],
            },
        ),
    ]


async def import_examples(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """Store each example whose definition changed (or is new); returns the names stored."""
    stored: list[str] = []
    if not EXAMPLES_DIR.is_dir():
        return stored
    async with sessions() as session, session.begin():
        for path in sorted(EXAMPLES_DIR.glob("*.json")):
            definition = json.loads(path.read_text())
            try:
                current = await queries.load_definition(
                    session, await queries.find_workflow_id(session, path.stem)
                )
            except queries.NotFoundError:
                current = None
            if current is None or current.definition != definition:
                await queries.save_workflow_version(
                    session, name=path.stem, definition=definition, comment="example"
                )
                stored.append(path.stem)
    return stored


async def start_sample_runs(
    client: Client, task_queue: str, sessions: async_sessionmaker[AsyncSession], api_base: str
) -> list[str]:
    """Start each sample run on its flow as stored; returns the run ids (tagged `example`)."""
    run_ids = []
    async with sessions() as session:
        for sample in sample_runs(api_base):
            workflow_id = await queries.find_workflow_id(session, sample.flow)
            handle = await start_run(
                client,
                task_queue,
                FlowRunInput(workflow_id=str(workflow_id), inputs=sample.inputs, tags=["example"]),
                run_id=f"example-{sample.flow}-{uuid.uuid4().hex[:8]}",
            )
            run_ids.append(handle.id)
    return run_ids
