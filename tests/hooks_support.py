"""The webhook and event API served for a test, over real HTTP, on the test's worker."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text

from persistence import queries, secret_queries, trigger_queries
from persistence.secret_keys import SecretKeys
from tests.flows import FlowWorker
from workers.api.app import api_app
from workers.api.callers import ApiContext
from workers.api.signing import event_message, sign
from workers.asgi import serving
from workers.processes import free_port

#: The tenant secret that signs `POST /events` and `GET /runs` in the tests' API.
TENANT_SECRET_NAME = "META_API_KEY"


def keys() -> SecretKeys:
    """The session's secret-store keys (conftest sets SECRETS_KEYS)."""
    return SecretKeys.parse(os.environ["SECRETS_KEYS"])


@dataclass
class Api:
    """The API at `base`, and an HTTP client for it."""

    base: str
    http: httpx.AsyncClient
    worker: FlowWorker

    async def post(
        self,
        path: str,
        body: bytes | Any,
        secret: str | None,
        *,
        at: int | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        """POST `body` (JSON-encoded unless bytes), signed with `secret` at time `at`."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": content_type}
        if secret is not None:
            event = path.removeprefix("/events/")
            over = event_message(event, raw) if event != path else raw
            sent.update(signed(secret, over, at))
        sent.update(headers or {})  # a test's own headers win over the signature's
        response = await self.http.post(f"{self.base}{path}", content=raw, headers=sent)
        if response.status_code == 202 and "run_id" in response.json():
            self.worker.started.append(response.json()["run_id"])
        return response

    async def get_run(
        self, run_id: str, secret: str, *, headers: dict[str, str], path: str | None = None
    ) -> httpx.Response:
        """GET /runs/ID signed over `GET <path>` (by default the path itself)."""
        target = f"/runs/{run_id}"
        signed_over = f"GET {path or target}".encode()
        return await self.http.get(
            f"{self.base}{target}", headers={**headers, **signed(secret, signed_over)}
        )


def signed(secret: str, body: bytes, at: int | None = None) -> dict[str, str]:
    """The signature headers of `body` sent at `at` (default: now)."""
    timestamp = str(int(time.time()) if at is None else at)
    return {"X-Meta-Timestamp": timestamp, "X-Meta-Signature": sign(secret, timestamp, body)}


@asynccontextmanager
async def serving_api(worker: FlowWorker, **limits: Any) -> AsyncIterator[Api]:
    """The API on a free loopback port, starting runs on the worker's task queue."""
    ctx = ApiContext(
        client=worker.client,
        task_queue=worker.task_queue,
        sessions=worker.sessions,
        keys=keys(),
        max_body_bytes=limits.get("max_body_bytes", 4096),
        tenant_secret_name=TENANT_SECRET_NAME,
        tenant_tolerance_seconds=300,
        body_seconds=limits.get("body_seconds", 10.0),
    )
    port = free_port()
    async with serving(api_app(ctx), "127.0.0.1", port), httpx.AsyncClient(timeout=30) as http:
        yield Api(f"http://127.0.0.1:{port}", http, worker)


async def make_tenant(worker: FlowWorker, api_secret: str | None = None) -> uuid.UUID:
    """A committed tenant, with its API secret stored when given."""
    tenant = uuid.uuid4()
    async with worker.sessions() as s, s.begin():
        await s.execute(
            text("INSERT INTO tenants (id, name) VALUES (:i, :n)"),
            {"i": tenant, "n": f"hooks-{tenant.hex[:8]}"},
        )
        if api_secret is not None:
            await secret_queries.set_secret(s, keys(), tenant, TENANT_SECRET_NAME, api_secret)
    return tenant


@dataclass(frozen=True)
class Hooked:
    """A stored flow with a webhook: its id, the hook's id and its signing secret."""

    flow_id: str
    trigger_id: str
    secret: str


async def store_flow(
    worker: FlowWorker,
    tenant: uuid.UUID | None,
    definition: dict[str, Any],
    triggers: list[dict[str, Any]],
    *sql: str,
) -> str:
    """A published flow of `tenant` with `triggers`, changed by `sql` (`:id`); its id."""
    async with worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"hooked-{uuid.uuid4().hex[:8]}", definition=definition, tenant_id=tenant
        )
        for trigger in triggers:
            await trigger_queries.add_trigger(s, stored.workflow_id, trigger)
        for statement in sql:
            await s.execute(text(statement), {"id": stored.workflow_id})
    return str(stored.workflow_id)


async def hooked_flow(
    worker: FlowWorker,
    tenant: uuid.UUID,
    definition: dict[str, Any],
    *sql: str,
    trigger_id: str | None = None,
    config: dict[str, Any] | None = None,
) -> Hooked:
    """A flow of `tenant` with one webhook whose secret is in the tenant's store."""
    trigger_id = trigger_id or "wh_" + secrets.token_urlsafe(24)
    secret = secrets.token_urlsafe(16)
    name = f"HOOK_{secrets.token_hex(6).upper()}"
    async with worker.sessions() as s, s.begin():
        await secret_queries.set_secret(s, keys(), tenant, name, secret)
    trigger = {
        "type": "webhook",
        "id": trigger_id,
        "config": {"secretName": name, **(config or {})},
    }
    flow_id = await store_flow(worker, tenant, definition, [trigger], *sql)
    return Hooked(flow_id, trigger_id, secret)


async def runs_of_flow(worker: FlowWorker, flow_id: str) -> int:
    """How many `workflow_runs` rows the flow has."""
    async with worker.sessions() as s:
        count = await s.scalar(
            text("SELECT count(*) FROM workflow_runs WHERE workflow_id = :f"), {"f": flow_id}
        )
    return int(count or 0)


async def queue_runs(worker: FlowWorker) -> list[str]:
    """The workflow ids Temporal lists on the worker's task queue."""
    query = f'TaskQueue = "{worker.task_queue}"'
    return [w.id async for w in worker.client.list_workflows(query)]
