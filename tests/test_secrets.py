"""Secrets belong to a tenant: a run resolves `{{ secrets.NAME }}` in its own tenant's store.

Against the real Postgres, inside each test's rolled-back transaction (the CLI's
tests, which commit, are in test_secrets_cli.py).
"""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from activities.secrets import (
    EnvironmentSecrets,
    MissingSecretError,
    SecretUnavailableError,
    TenantSecrets,
)
from flow_language.drawing import edge, node
from persistence import secret_queries
from persistence.models import TenantSecret
from persistence.secret_keys import SecretKeys
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply
from tests.support import make_tenant
from workers.settings import Settings
from workers.worker import build_worker


def key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


@pytest.fixture
def sessions(db_session: AsyncSession) -> async_sessionmaker[AsyncSession]:
    """Sessions on the test's connection: they see its rows, and its rollback undoes all."""
    return async_sessionmaker(
        bind=db_session.bind, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def keys() -> SecretKeys:
    return SecretKeys.parse(key("k1"))


def provider(
    sessions: async_sessionmaker[AsyncSession],
    keys: SecretKeys | None,
    environ: dict[str, str] | None = None,
    tenants: str = "",
) -> TenantSecrets:
    return TenantSecrets(sessions, keys, EnvironmentSecrets(environ or {}), tenants)


async def test_two_tenants_with_a_secret_of_one_name_each_get_their_own(
    db_session: AsyncSession, sessions: async_sessionmaker[AsyncSession], keys: SecretKeys
) -> None:
    acme, globex = await make_tenant(db_session, "Acme"), await make_tenant(db_session, "Globex")
    assert await secret_queries.set_secret(db_session, keys, acme, "TOKEN", "acme-token")
    await secret_queries.set_secret(db_session, keys, globex, "TOKEN", "globex-token")
    secrets = provider(sessions, keys)
    assert await secrets.resolve(str(acme), ["TOKEN"]) == {"TOKEN": "acme-token"}
    assert await secrets.resolve(str(globex), ["TOKEN", "TOKEN"]) == {"TOKEN": "globex-token"}

    # set again: replaced in place, one row, the new value
    assert not await secret_queries.set_secret(db_session, keys, acme, "TOKEN", "rotated")
    assert await secrets.resolve(str(acme), ["TOKEN"]) == {"TOKEN": "rotated"}
    listed = await secret_queries.list_secrets(db_session, acme)
    assert [(s.name, s.key_id) for s in listed] == [("TOKEN", "k1")]
    stored = await db_session.scalar(
        select(TenantSecret.ciphertext).where(TenantSecret.tenant_id == acme)
    )
    assert stored is not None
    assert b"rotated" not in stored
    assert b"acme" not in stored


async def test_another_tenants_secret_reads_exactly_like_an_unknown_name(
    db_session: AsyncSession, sessions: async_sessionmaker[AsyncSession], keys: SecretKeys
) -> None:
    acme, globex = await make_tenant(db_session), await make_tenant(db_session)
    await secret_queries.set_secret(db_session, keys, globex, "GLOBEX_ONLY", "globex-value")
    secrets = provider(sessions, keys, {"SECRET_GLOBEX_ONLY": "worker-value"})

    with pytest.raises(MissingSecretError) as while_globex_has_it:
        await secrets.resolve(str(acme), ["GLOBEX_ONLY", "NOBODY"])
    assert await secret_queries.delete_secret(db_session, globex, "GLOBEX_ONLY")
    with pytest.raises(MissingSecretError) as when_nobody_has_it:
        await secrets.resolve(str(acme), ["GLOBEX_ONLY", "NOBODY"])

    message = str(while_globex_has_it.value)
    assert message == str(when_nobody_has_it.value)
    assert "GLOBEX_ONLY, NOBODY" in message  # every missing name
    assert "globex-value" not in message
    assert "worker-value" not in message
    assert "SECRET_" not in message  # the worker's variables are not this tenant's business
    assert type(while_globex_has_it.value) is MissingSecretError


async def test_environment_variables_reach_only_named_tenants_and_tenantless_runs(
    db_session: AsyncSession, sessions: async_sessionmaker[AsyncSession], keys: SecretKeys
) -> None:
    named, other = await make_tenant(db_session), await make_tenant(db_session)
    environ = {"SECRET_SHARED_TOKEN": "from-env", "SECRET_MINE": "env-mine"}
    await secret_queries.set_secret(db_session, keys, named, "MINE", "store-mine")

    by_default = provider(sessions, keys, environ)
    assert await by_default.resolve(None, ["SHARED_TOKEN"]) == {"SHARED_TOKEN": "from-env"}
    for tenant in (named, other):
        with pytest.raises(MissingSecretError):
            await by_default.resolve(str(tenant), ["SHARED_TOKEN"])

    only_named = provider(sessions, keys, environ, f" {str(named).upper()} ,")
    assert await only_named.resolve(str(named), ["SHARED_TOKEN", "MINE"]) == {
        "SHARED_TOKEN": "from-env",
        "MINE": "store-mine",  # the tenant's own value wins over the worker's
    }
    with pytest.raises(MissingSecretError, match="SHARED_TOKEN"):
        await only_named.resolve(str(other), ["SHARED_TOKEN"])

    everyone = provider(sessions, keys, environ, "*")
    assert await everyone.resolve(str(other), ["SHARED_TOKEN"]) == {"SHARED_TOKEN": "from-env"}

    with pytest.raises(MissingSecretError) as tenantless:
        await by_default.resolve(None, ["UNSET"])
    assert "SECRET_UNSET" in str(tenantless.value)
    with pytest.raises(ValueError, match="not a tenant id"):
        provider(sessions, keys, environ, "acme")


async def test_old_keys_decrypt_and_rotation_moves_every_row_to_the_current_key(
    db_session: AsyncSession, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await db_session.execute(text("DELETE FROM tenant_secrets"))  # rolled back after the test
    tenant = await make_tenant(db_session)
    old, new = key("old"), key("new")
    await secret_queries.set_secret(db_session, SecretKeys.parse(old), tenant, "A", "alpha")
    await secret_queries.set_secret(db_session, SecretKeys.parse(old), tenant, "B", "beta")

    both = SecretKeys.parse(f"{new},{old}")
    assert both.current_id == "new"
    assert await provider(sessions, both).resolve(str(tenant), ["A", "B"]) == {
        "A": "alpha",
        "B": "beta",
    }
    await secret_queries.set_secret(db_session, both, tenant, "C", "gamma")  # new writes: new key

    report = await secret_queries.rotate_secrets(db_session, both)
    assert (report.reencrypted, report.current, report.failed) == (2, 1, [])
    key_ids = (await db_session.scalars(select(TenantSecret.key_id))).all()
    assert set(key_ids) == {"new"}
    again = await secret_queries.rotate_secrets(db_session, both)
    assert (again.reencrypted, again.current) == (0, 3)

    new_only = SecretKeys.parse(new)
    assert await provider(sessions, new_only).resolve(str(tenant), ["A", "B", "C"]) == {
        "A": "alpha",
        "B": "beta",
        "C": "gamma",
    }
    with pytest.raises(SecretUnavailableError, match="key 'new', which is not in SECRETS_KEYS"):
        await provider(sessions, SecretKeys.parse(old)).resolve(str(tenant), ["A"])


async def test_rotation_reports_rows_no_key_opens_and_leaves_them(
    db_session: AsyncSession,
) -> None:
    await db_session.execute(text("DELETE FROM tenant_secrets"))
    tenant = await make_tenant(db_session)
    await secret_queries.set_secret(db_session, SecretKeys.parse(key("lost")), tenant, "X", "x")
    report = await secret_queries.rotate_secrets(db_session, SecretKeys.parse(key("now")))
    assert report.reencrypted == 0
    assert [(t, n) for t, n, _ in report.failed] == [(tenant, "X")]
    assert "key 'lost'" in report.failed[0][2]
    assert await db_session.scalar(select(TenantSecret.key_id)) == "lost"


async def test_a_ciphertext_moved_to_another_tenant_or_name_does_not_decrypt(
    db_session: AsyncSession, sessions: async_sessionmaker[AsyncSession], keys: SecretKeys
) -> None:
    acme, globex = await make_tenant(db_session), await make_tenant(db_session)
    await secret_queries.set_secret(db_session, keys, acme, "TOKEN", "acme-token")
    await secret_queries.set_secret(db_session, keys, globex, "TOKEN", "globex-token")
    row = (
        await db_session.execute(
            select(TenantSecret.ciphertext, TenantSecret.nonce).where(
                TenantSecret.tenant_id == acme
            )
        )
    ).one()
    await db_session.execute(
        update(TenantSecret)
        .where(TenantSecret.tenant_id == globex)
        .values(ciphertext=row.ciphertext, nonce=row.nonce)
    )
    secrets = provider(sessions, keys)
    with pytest.raises(SecretUnavailableError, match="does not decrypt") as err:
        await secrets.resolve(str(globex), ["TOKEN"])
    assert "acme-token" not in str(err.value)

    await db_session.execute(
        update(TenantSecret).where(TenantSecret.tenant_id == acme).values(name="RENAMED")
    )
    with pytest.raises(SecretUnavailableError, match="does not decrypt"):
        await secrets.resolve(str(acme), ["RENAMED"])


async def test_a_worker_without_keys_fails_stored_secrets_naming_secrets_keys(
    db_session: AsyncSession, sessions: async_sessionmaker[AsyncSession], keys: SecretKeys
) -> None:
    tenant = await make_tenant(db_session)
    await secret_queries.set_secret(db_session, keys, tenant, "TOKEN", "t")
    keyless = provider(sessions, None, {"SECRET_TOKEN": "env", "SECRET_ENV_ONLY": "env"}, "*")
    with pytest.raises(SecretUnavailableError, match="set SECRETS_KEYS") as err:
        await keyless.resolve(str(tenant), ["TOKEN"])
    assert "TOKEN" in str(err.value)
    # no store rows: the allowed variables still resolve without a key
    assert await keyless.resolve(str(tenant), ["ENV_ONLY"]) == {"ENV_ONLY": "env"}
    assert await provider(sessions, None, {"SECRET_ENV": "e"}).resolve(None, ["ENV"]) == {
        "ENV": "e"
    }


async def test_a_tenants_run_uses_its_stored_secret_and_never_records_it(
    temporal_env: WorkflowEnvironment,
    session_maker: async_sessionmaker[AsyncSession],
    http_peer: HttpPeer,
) -> None:
    keys = SecretKeys.parse(key("e2e"))
    value = f"tenant-token-{uuid.uuid4().hex}"
    async with session_maker() as s, s.begin():
        tenant, stranger = await make_tenant(s), await make_tenant(s)
        await secret_queries.set_secret(s, keys, tenant, "ORDERS_TOKEN", value)
    http_peer.route(
        "GET", "/orders", lambda r: Reply(200, {"auth": r.headers.get("Authorization")})
    )
    flow = {
        "nodes": [
            node("start", "start"),
            node(
                "call",
                "api",
                {
                    "url": f"{http_peer.base}/orders",
                    "auth": {"type": "bearer", "token": "{{ secrets.ORDERS_TOKEN }}"},
                },
            ),
            node("done", "end", {"outputs": {"body": "{{ nodes.call.output.json }}"}}),
        ],
        "edges": [edge("start", "call"), edge("call", "done")],
    }
    queue = f"test-{uuid.uuid4().hex[:10]}"
    deps = Dependencies(sessions=session_maker, secrets=TenantSecrets(session_maker, keys))
    async with build_worker(temporal_env.client, Settings(temporal_task_queue=queue), deps):
        worker = FlowWorker(temporal_env.client, queue, session_maker)
        result, run_id = await worker.run(flow, tenant_id=str(tenant))
        assert http_peer.calls("GET", "/orders")[0].headers["Authorization"] == f"Bearer {value}"
        assert result.outputs == {"body": {"auth": "Bearer ***"}}
        assert value not in json.dumps((await worker.task_rows(run_id))["call"], default=str)
        # another tenant's run naming the same secret fails as if it were never stored
        failed = await worker.fail(flow, tenant_id=str(stranger))
        error = (await worker.task_rows(failed))["call"]["error"]
        assert "secret(s) not configured for this run's tenant: ORDERS_TOKEN" in error
    await deps.aclose()
