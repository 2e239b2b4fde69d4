"""A stored flow runs only while it may: not archived, inactive or paused, and a published
version unless the caller asks for a draft run. Refused by the client and the CLI before
anything starts, and by the run itself (a failed row, `flow_unavailable`) when started any
other way; and a run that starts marks its flow's `last_run_at`.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.test_cli import _env, _never_started, ameta_agent
from workers import client
from workflows.contract import FlowResult, FlowRunInput

_FLOW = {
    "nodes": [node("start", "start"), node("t", "transform", {"output": "{{ 1 + 1 }}"})],
    "edges": [edge("start", "t")],
}


async def _stored(flow_worker: FlowWorker, *sql: str) -> tuple[str, str]:
    """A flow stored as `flows import` stores it, then changed by the `sql` statements (`:id`
    is the flow's id); its name and id.
    """
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(s, name=name, definition=_FLOW)
        for statement in sql:
            await s.execute(text(statement), {"id": stored.workflow_id})
    return name, str(stored.workflow_id)


async def _start(
    flow_worker: FlowWorker, flow_id: str, **fields: Any
) -> WorkflowHandle[Any, FlowResult]:
    """A run of the stored flow, started without the client's check (as any Temporal client
    may start one).
    """
    handle = await client.start_run(
        flow_worker.client, flow_worker.task_queue, FlowRunInput(workflow_id=flow_id, **fields)
    )
    flow_worker.started.append(handle.id)
    return handle


async def _outputs(flow_worker: FlowWorker, flow_id: str, **fields: Any) -> dict[str, Any]:
    return (await (await _start(flow_worker, flow_id, **fields)).result()).outputs


async def _refused_by_the_run(flow_worker: FlowWorker, flow_id: str, **fields: Any) -> str:
    """The run's own refusal: a failed row saying why, and no node run."""
    handle = await _start(flow_worker, flow_id, **fields)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "FlowUnavailable", cause
    row = await flow_worker.run_row(handle.id)
    assert row["status"] == "failed"
    assert row["error_code"] == "flow_unavailable"
    assert row["completed_at"] is not None
    assert row["current_step"] is None
    assert await flow_worker.task_rows(handle.id) == {}  # no node ran
    assert row["error"] == cause.message
    return str(row["error"])


async def _refused_by_the_client(flow_worker: FlowWorker, flow_id: str, **fields: Any) -> str:
    run_id = f"never-{uuid.uuid4().hex[:8]}"
    with pytest.raises(client.FlowUnavailable) as refused:
        await client.start_run(
            flow_worker.client,
            flow_worker.task_queue,
            FlowRunInput(workflow_id=flow_id, **fields),
            run_id=run_id,
            sessions=flow_worker.sessions,
        )
    async with flow_worker.sessions() as s:
        rows = await s.scalar(
            text("SELECT count(*) FROM workflow_runs WHERE orchestrator_run_id = :o"),
            {"o": run_id},
        )
    assert rows == 0
    return str(refused.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("UPDATE workflows SET status = 'archived' WHERE id = :id", "is archived: restore it"),
        ("UPDATE workflows SET is_active = false WHERE id = :id", "is inactive: activate it"),
        ("UPDATE workflows SET is_paused = true WHERE id = :id", "is paused: resume it"),
    ],
    ids=["archived", "inactive", "paused"],
)
async def test_a_flow_switched_off_is_refused_before_anything_runs(
    flow_worker: FlowWorker, change: str, message: str
) -> None:
    name, flow_id = await _stored(flow_worker, change)
    expected = f"flow {name!r} {message} before running it"
    assert await _refused_by_the_client(flow_worker, flow_id) == expected
    assert await _refused_by_the_client(flow_worker, flow_id, draft=True) == expected
    assert await _refused_by_the_run(flow_worker, flow_id) == expected


async def test_a_draft_version_runs_only_when_asked_for(flow_worker: FlowWorker) -> None:
    name, flow_id = await _stored(
        flow_worker, "UPDATE workflow_versions SET status = 'draft' WHERE workflow_id = :id"
    )
    expected = (
        f"version 1 of flow {name!r} is a draft: publish it, run a published version, "
        "or ask for a draft run (`draft: true`, `meta-agent run --draft`)"
    )
    assert await _refused_by_the_client(flow_worker, flow_id) == expected
    assert await _refused_by_the_run(flow_worker, flow_id) == expected
    assert await _outputs(flow_worker, flow_id, draft=True) == {"t": 2}


async def test_a_draft_flow_without_versions_runs_only_when_asked_for(
    flow_worker: FlowWorker,
) -> None:
    name, flow_id = await _stored(
        flow_worker,
        "DELETE FROM workflow_versions WHERE workflow_id = :id",
        "UPDATE workflows SET status = 'draft' WHERE id = :id",
    )
    expected = f"flow {name!r} is a draft, with no published version: ask for a draft run"
    assert (await _refused_by_the_client(flow_worker, flow_id)).startswith(expected)
    assert (await _refused_by_the_run(flow_worker, flow_id)).startswith(expected)
    assert await _outputs(flow_worker, flow_id, draft=True) == {"t": 2}


async def test_a_draft_flow_row_with_a_published_version_runs(flow_worker: FlowWorker) -> None:
    """A builder may leave the flow's row `draft` (its server default) while the version
    row is published: the version row decides.
    """
    _, flow_id = await _stored(flow_worker, "UPDATE workflows SET status = 'draft' WHERE id = :id")
    assert await _outputs(flow_worker, flow_id) == {"t": 2}


async def test_inline_definitions_are_drafts_and_run(flow_worker: FlowWorker) -> None:
    _, flow_id = await _stored(
        flow_worker, "UPDATE workflow_versions SET status = 'draft' WHERE workflow_id = :id"
    )
    assert await _outputs(flow_worker, flow_id, definition=_FLOW) == {"t": 2}


async def test_a_run_marks_its_flow_last_run_at(flow_worker: FlowWorker) -> None:
    _, flow_id = await _stored(flow_worker)
    handle = await client.start_run(
        flow_worker.client,
        flow_worker.task_queue,
        FlowRunInput(workflow_id=flow_id),
        sessions=flow_worker.sessions,
    )
    flow_worker.started.append(handle.id)
    await handle.result()
    row = await flow_worker.run_row(handle.id)
    async with flow_worker.sessions() as s:
        flow = (
            (
                await s.execute(
                    text("SELECT last_run_at, updated_at, created_at FROM workflows WHERE id = :i"),
                    {"i": flow_id},
                )
            )
            .mappings()
            .one()
        )
    assert flow["last_run_at"] == row["started_at"]
    assert flow["updated_at"] == flow["created_at"]  # a run is not an edit of the flow


async def test_the_cli_refuses_a_paused_flow_and_runs_a_draft_when_asked(
    database_url: str, temporal_env: WorkflowEnvironment, flow_worker: FlowWorker
) -> None:
    name, _ = await _stored(flow_worker, "UPDATE workflows SET is_paused = true WHERE id = :id")
    env = _env(database_url, temporal_env, flow_worker.task_queue)
    run_id = f"cli-paused-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    out = await ameta_agent("run", name, "--id", run_id, env=env)
    assert out.returncode == 1
    assert out.stderr == (f"meta-agent: flow {name!r} is paused: resume it before running it\n"), (
        out.stderr
    )
    await _never_started(temporal_env, flow_worker, run_id)

    draft, _ = await _stored(
        flow_worker, "UPDATE workflow_versions SET status = 'draft' WHERE workflow_id = :id"
    )
    out = await ameta_agent("run", draft, "--id", run_id, env=env)
    assert out.returncode == 1
    assert "is a draft" in out.stderr
    out = await ameta_agent(
        "run",
        draft,
        "--draft",
        "--wait",
        "--trigger-type",
        "webhook",
        "--trigger-metadata",
        '{"path": "/hooks/x"}',
        env=env,
    )
    assert out.returncode == 0, out.stderr
    started = out.stdout.splitlines()[0]
    flow_worker.started.append(started)
    row = await flow_worker.run_row(started)
    assert (row["trigger_type"], row["trigger_metadata"]) == ("webhook", {"path": "/hooks/x"})
