"""The worker's idempotent writes and its definition loading, on real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import queries
from tests.support import fetch_one, make_tenant


async def test_upsert_run_creates_then_updates_one_row(db_session: AsyncSession) -> None:
    key = f"wf-{uuid.uuid4()}"
    started = datetime.now(UTC)
    first = await queries.upsert_run(
        db_session, key, {"status": "running", "started_at": started, "inputs": {"a": 1}}
    )
    second = await queries.upsert_run(
        db_session,
        key,
        {"status": "completed", "outputs": {"b": 2}, "started_at": started + timedelta(hours=1)},
    )
    assert first == second
    row = await fetch_one(
        db_session, "SELECT * FROM workflow_runs WHERE orchestrator_run_id = :k", k=key
    )
    assert row["status"] == "completed"
    assert row["inputs"] == {"a": 1}  # untouched by the second write
    assert row["outputs"] == {"b": 2}
    assert row["started_at"] == started  # the first start time is kept


async def test_a_queued_row_created_by_the_platform_is_picked_up(db_session: AsyncSession) -> None:
    tenant = await make_tenant(db_session)
    key = f"wf-{uuid.uuid4()}"
    platform_id = uuid.uuid4()
    await db_session.execute(
        text(
            "INSERT INTO workflow_runs (id, orchestrator_run_id, status, tenant_id, tags) "
            "VALUES (:id, :k, 'queued', :t, '[\"nightly\"]')"
        ),
        {"id": platform_id, "k": key, "t": tenant},
    )
    got = await queries.upsert_run(db_session, key, {"status": "running"})
    assert got == platform_id
    row = await fetch_one(db_session, "SELECT * FROM workflow_runs WHERE id = :id", id=platform_id)
    assert (row["status"], row["tenant_id"], row["tags"]) == ("running", tenant, ["nightly"])
    count = await fetch_one(
        db_session, "SELECT count(*) AS n FROM workflow_runs WHERE orchestrator_run_id = :k", k=key
    )
    assert count["n"] == 1


async def test_upsert_task_instance_is_idempotent(db_session: AsyncSession) -> None:
    run_id = await queries.upsert_run(db_session, f"wf-{uuid.uuid4()}", {"status": "running"})
    values = {"node_id": "fetch", "status": "running", "agent_type": "api", "retry_count": 0}
    a = await queries.upsert_task_instance(db_session, run_id, "fetch", values)
    b = await queries.upsert_task_instance(
        db_session, run_id, "fetch", {**values, "status": "completed", "retry_count": 2}
    )
    assert a == b
    row = await fetch_one(db_session, "SELECT * FROM task_instances WHERE id = :id", id=a)
    assert (row["status"], row["retry_count"]) == ("completed", 2)


async def test_concurrent_upserts_of_one_task_leave_one_row(
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    """Retries racing each other (a timed-out attempt still running) must not duplicate rows."""
    async with session_maker() as s, s.begin():
        run_id = await queries.upsert_run(s, f"wf-{uuid.uuid4()}", {"status": "running"})

    async def write(attempt: int) -> uuid.UUID:
        async with session_maker() as s, s.begin():
            return await queries.upsert_task_instance(
                s, run_id, "n", {"node_id": "n", "status": "running", "retry_count": attempt}
            )

    ids = await asyncio.gather(*(write(i) for i in range(5)))
    assert len(set(ids)) == 1
    async with session_maker() as s:
        n = (
            await s.execute(
                text("SELECT count(*) FROM task_instances WHERE workflow_run_id = :r"),
                {"r": run_id},
            )
        ).scalar_one()
    assert n == 1


async def test_unknown_columns_are_refused_by_name(db_session: AsyncSession) -> None:
    with pytest.raises(ValueError, match="workflow_runs has no column"):
        await queries.upsert_run(db_session, "x", {"statuz": "running"})


async def test_versions_are_numbered_and_the_current_one_loads_by_default(
    db_session: AsyncSession,
) -> None:
    name = f"flow-{uuid.uuid4().hex[:6]}"
    v1 = await queries.save_workflow_version(db_session, name=name, definition={"nodes": [1]})
    v2 = await queries.save_workflow_version(db_session, name=name, definition={"nodes": [2]})
    assert (v1.version, v2.version) == (1, 2)
    assert v1.workflow_id == v2.workflow_id

    current = await queries.load_definition(db_session, v1.workflow_id)
    assert (current.version, current.definition) == (2, {"nodes": [2]})
    old = await queries.load_definition(db_session, str(v1.workflow_id), version=1)
    assert old.definition == {"nodes": [1]}


async def test_missing_workflows_and_versions_are_clear_errors(db_session: AsyncSession) -> None:
    saved = await queries.save_workflow_version(db_session, name="x", definition={})
    with pytest.raises(queries.NotFoundError, match="has no version 7"):
        await queries.load_definition(db_session, saved.workflow_id, version=7)
    missing = uuid.uuid4()
    with pytest.raises(queries.NotFoundError, match=f"no workflow with id {missing}"):
        await queries.load_definition(db_session, missing)
    with pytest.raises(queries.NotFoundError, match="is not a UUID"):
        await queries.load_definition(db_session, "order-flow")
