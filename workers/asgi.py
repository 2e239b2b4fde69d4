"""Serving a small ASGI app (health, codec) inside a process that has its own main job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the process handles its own signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: Any, host: str, port: int, **options: Any) -> AsyncIterator[None]:
    """Serve `app` on `host:port` while the block runs; refused ports fail at once.

    `options` go to uvicorn's Config (limits such as `limit_concurrency`).
    """
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", **options
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():  # it could not bind: say so now, not at shutdown
            task.result()
            raise OSError(f"could not serve on {host}:{port}")
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
