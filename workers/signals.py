"""Turning SIGINT/SIGTERM into an asyncio event, so shutdown runs our cleanup in order."""

from __future__ import annotations

import asyncio
import signal


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for the running loop to await and then shut down."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
