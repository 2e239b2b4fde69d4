"""The worker's health endpoint (`HEALTH_PORT`): alive, and able to work right now.

A database outage is waited out, not fatal, so the worker stays alive through one;
what changes is that it is not *ready*: `/health` answers 503 and says since when
the database has been unreachable, while `/health/live` keeps answering 200 so an
orchestrator does not restart a worker that is only waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client

from persistence.health import DatabaseHealth
from workers.asgi import serving

log = logging.getLogger("meta_agent.health")

#: How long the Temporal check may take before the frontend counts as unreachable.
TEMPORAL_CHECK_SECONDS = 3.0


def health_app(health: DatabaseHealth, client: Client) -> Starlette:
    """The endpoint's routes: `/health` (ready: database and Temporal answer) and `/health/live`."""

    async def ready(_request: Request) -> JSONResponse:
        try:
            temporal_ok = await asyncio.wait_for(
                client.service_client.check_health(), TEMPORAL_CHECK_SECONDS
            )
        except Exception:
            temporal_ok = False
        database = health.report()
        ok = temporal_ok and health.reachable
        body = {
            "status": "ok" if ok else "unavailable",
            "database": database,
            "temporal": {"status": "reachable" if temporal_ok else "unreachable"},
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    async def live(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/health", ready), Route("/health/live", live)])


@contextlib.asynccontextmanager
async def watching_health(
    health: DatabaseHealth,
    sessions: async_sessionmaker[AsyncSession],
    client: Client,
    port: int | None,
    host: str = "127.0.0.1",
) -> AsyncIterator[None]:
    """While the block runs, probe the database (so an outage, and its end, are noticed even
    with no work under way) and serve the endpoint on `port` (None: no endpoint).
    """
    watching = asyncio.create_task(health.watch(sessions))
    try:
        async with _serving(health, client, port, host):
            yield
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


@contextlib.asynccontextmanager
async def _serving(
    health: DatabaseHealth, client: Client, port: int | None, host: str
) -> AsyncIterator[None]:
    if port is None:
        yield
        return
    async with serving(health_app(health, client), host, port):
        log.info("health endpoint on http://%s:%d/health", host, port)
        yield
