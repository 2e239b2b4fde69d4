"""Serving the API: its own process (`meta-agent api`) or beside the dev stack's worker.

Bounds (uvicorn's): at most API_MAX_CONCURRENCY requests in progress (more are answered
503 at once), idle keep-alive connections closed after 5 s, request heads over 64 KiB
refused, and bodies read only up to API_MAX_BODY_BYTES. Rates per sender are a front
proxy's job: every request that passes costs a database read and a signature check, and
one that starts a run a Temporal call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from persistence.engine import create_engine, session_factory
from workers.api.app import api_app
from workers.api.callers import ApiContext
from workers.asgi import serving
from workers.settings import Settings

log = logging.getLogger("meta_agent.api")


def api_context(
    settings: Settings, client: Client, sessions: async_sessionmaker[AsyncSession]
) -> ApiContext:
    """The handlers' context from the settings (SECRETS_KEYS opens the signing secrets)."""
    return ApiContext(
        client=client,
        task_queue=settings.temporal_task_queue,
        sessions=sessions,
        keys=settings.secret_keys(),
        max_body_bytes=settings.api_max_body_bytes,
        tenant_secret_name=settings.api_tenant_secret_name,
        tenant_tolerance_seconds=settings.api_signature_tolerance_seconds,
    )


def _limits(settings: Settings) -> dict[str, Any]:
    return {
        "limit_concurrency": settings.api_max_concurrency,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 64 * 1024,
    }


def api_url(settings: Settings) -> str:
    """Where the API listens, as a sender writes it."""
    host = settings.api_host
    return f"http://{'[' + host + ']' if ':' in host else host}:{settings.api_port}"


@contextlib.asynccontextmanager
async def serving_api(
    settings: Settings, client: Client, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[str]:
    """The API on API_HOST:API_PORT while the block runs; yields its URL."""
    app = api_app(api_context(settings, client, sessions))
    async with serving(app, settings.api_host, settings.api_port, **_limits(settings)):
        yield api_url(settings)


async def run_api(settings: Settings, client: Client, stop: asyncio.Event) -> None:
    """`meta-agent api`: serve until `stop` is set (SIGINT, SIGTERM)."""
    engine = create_engine(settings.require_database_url(), pool_size=settings.db_pool_size)
    try:
        async with serving_api(settings, client, session_factory(engine)) as url:
            log.info("webhook and event API on %s", url)
            print(f"webhook and event API on {url}", flush=True)
            await stop.wait()
    finally:
        await engine.dispose()
