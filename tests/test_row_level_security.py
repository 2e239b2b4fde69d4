"""Row-level security, seen through a real second role that does not own the tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from persistence.engine import create_engine, session_factory, tenant_session
from tests.support import make_tenant

APP_ROLE = "platform_api_test"


@pytest.fixture(scope="module")
async def tenants(engine: AsyncEngine) -> tuple[uuid.UUID, uuid.UUID]:
    """Two tenants with a run and a task each, written by the owner (the worker)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            )
        )
        await conn.execute(
            text(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
        )
    factory = session_factory(engine)
    async with factory() as session, session.begin():
        a = await make_tenant(session, "Acme")
        b = await make_tenant(session, "Globex")
        for tenant in (a, b):
            run_id = uuid.uuid4()
            await session.execute(
                text(
                    "INSERT INTO workflow_runs (id, orchestrator_run_id, tenant_id, status) "
                    "VALUES (:id, :o, :t, 'running')"
                ),
                {"id": run_id, "o": f"rls-{tenant}", "t": tenant},
            )
            await session.execute(
                text(
                    "INSERT INTO task_instances "
                    "(workflow_run_id, node_id, orchestrator_task_id, tenant_id) "
                    "VALUES (:r, 'n1', 'n1', :t)"
                ),
                {"r": run_id, "t": tenant},
            )
            await session.execute(
                text(
                    "INSERT INTO tenant_secrets (tenant_id, name, ciphertext, nonce, key_id) "
                    "VALUES (:t, 'TOKEN', 'x', 'n', 'k1')"
                ),
                {"t": tenant},
            )
    return a, b


@pytest.fixture
async def app_sessions(database_url: str) -> AsyncIterator[async_sessionmaker]:
    url = make_url(database_url).set(username=APP_ROLE, password=None)
    app_engine = create_engine(url.render_as_string(hide_password=False), pool_size=1)
    yield session_factory(app_engine)
    await app_engine.dispose()


async def test_a_tenant_sees_only_its_own_rows(tenants, app_sessions) -> None:
    acme, globex = tenants
    async with tenant_session(app_sessions, acme) as session:
        runs = (await session.execute(text("SELECT tenant_id FROM workflow_runs"))).scalars().all()
        tasks = (
            (await session.execute(text("SELECT tenant_id FROM task_instances"))).scalars().all()
        )
        names = (await session.execute(text("SELECT name FROM tenants"))).scalars().all()
    assert set(runs) == {acme}
    assert set(tasks) == {acme}
    assert names == ["Acme"]

    async with tenant_session(app_sessions, globex) as session:
        runs = (await session.execute(text("SELECT tenant_id FROM workflow_runs"))).scalars().all()
    assert set(runs) == {globex}


async def test_without_a_tenant_the_role_sees_nothing(tenants, app_sessions) -> None:
    async with app_sessions() as session:
        count = (await session.execute(text("SELECT count(*) FROM workflow_runs"))).scalar_one()
        secrets = (await session.execute(text("SELECT count(*) FROM tenant_secrets"))).scalar_one()
    assert count == 0
    assert secrets == 0


async def test_a_tenant_sees_and_writes_only_its_own_secrets(tenants, app_sessions) -> None:
    acme, globex = tenants
    async with tenant_session(app_sessions, acme) as session:
        owners = (await session.execute(text("SELECT tenant_id FROM tenant_secrets"))).scalars()
        assert set(owners) == {acme}
        changed = await session.execute(
            text("UPDATE tenant_secrets SET key_id = 'k2' WHERE tenant_id = :t"), {"t": globex}
        )
        assert changed.rowcount == 0  # type: ignore[attr-defined]
    with pytest.raises(ProgrammingError, match="row-level security"):
        async with tenant_session(app_sessions, acme) as session:
            await session.execute(
                text(
                    "INSERT INTO tenant_secrets (tenant_id, name, ciphertext, nonce, key_id) "
                    "VALUES (:t, 'PLANTED', 'x', 'n', 'k1')"
                ),
                {"t": globex},
            )


async def test_a_tenant_cannot_write_another_tenants_rows(tenants, app_sessions) -> None:
    acme, globex = tenants
    with pytest.raises(ProgrammingError, match="row-level security"):
        async with tenant_session(app_sessions, acme) as session:
            await session.execute(
                text("INSERT INTO workflow_runs (orchestrator_run_id, tenant_id) VALUES (:o, :t)"),
                {"o": f"sneaky-{uuid.uuid4()}", "t": globex},
            )
    async with tenant_session(app_sessions, acme) as session:
        changed = await session.execute(
            text("UPDATE workflow_runs SET status = 'failed' WHERE tenant_id = :t"), {"t": globex}
        )
    assert changed.rowcount == 0  # type: ignore[attr-defined]


async def test_the_owner_role_used_by_the_worker_sees_every_tenant(tenants, engine) -> None:
    acme, globex = tenants
    async with engine.connect() as conn:
        seen = set((await conn.execute(text("SELECT tenant_id FROM workflow_runs"))).scalars())
    assert {acme, globex} <= seen
