"""Whether the worker can reach its database, and for how long it has not.

An outage must delay runs, never fail them: writes that meet one are retried (or
handed back to the workflow) until the database answers again. This module tells
such an error from Postgres refusing the data, keeps the process-wide view of the
database that the health endpoint reports, and says when an outage has lasted
longer than the worker is told to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence.engine import DatabaseConnectError

log = logging.getLogger("meta_agent.database")

#: How long the health probe waits for `SELECT 1`.
PROBE_SECONDS = 5.0

#: SQLSTATE classes of a server that is not there right now: connection exception (08),
#: operator intervention (57: shutting down, starting up, crashed).
_UNREACHABLE_SQLSTATE_CLASSES = ("08", "57")


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database is not there (a refused or lost connection, a server
    shutting down or starting up), rather than anything about the data.
    """
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        if sqlstate:
            return sqlstate[:2] in _UNREACHABLE_SQLSTATE_CLASSES
        # The driver's own errors carry no SQLSTATE: a socket error, or asyncpg's
        # "connection is closed" / "connection was closed in the middle of operation".
        cause = getattr(exc.orig, "__cause__", None) or exc.orig
        if isinstance(cause, OSError | ConnectionError | TimeoutError):
            return True
        return "connection is closed" in str(cause) or "connection was closed" in str(cause)
    return isinstance(exc, DatabaseConnectError)


@dataclass
class DatabaseHealth:
    """The worker's view of its database: reachable, or unreachable since when and why."""

    #: How long an outage may last before the writes waiting for it give up (their runs fail).
    outage_limit_seconds: float = 3600.0
    _down_since: float | None = field(default=None, init=False)
    _down_wall: float | None = field(default=None, init=False)
    _reason: str = field(default="", init=False)

    def lost(self, exc: BaseException) -> None:
        """Note an error that says the database is unreachable (the first one starts the clock)."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._down_wall = time.time()
            self._reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.warning("database unreachable (%s); runs wait for it", self._reason)

    def answered(self) -> None:
        """Note that the database answered."""
        if self._down_since is not None:
            log.warning(
                "database reachable again after %.0f s", time.monotonic() - self._down_since
            )
            self._down_since = None
            self._down_wall = None
            self._reason = ""

    @property
    def reachable(self) -> bool:
        """Whether the last word on the database was that it answered."""
        return self._down_since is None

    def unreachable_for(self) -> float:
        """Seconds since the database was first found unreachable (0 when it is reachable)."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    def gave_up(self) -> bool:
        """Whether the outage has lasted longer than the worker waits."""
        return self.unreachable_for() > self.outage_limit_seconds

    def report(self) -> dict[str, object]:
        """What the health endpoint says of the database."""
        if self._down_since is None:
            return {"status": "reachable"}
        return {
            "status": "unreachable",
            "since": self._down_wall,
            "seconds": round(self.unreachable_for(), 1),
            "error": self._reason,
            "gives_up_after_seconds": self.outage_limit_seconds,
        }

    async def probe(self, sessions: async_sessionmaker[AsyncSession]) -> bool:
        """Ask the database once (`SELECT 1`); note and return the answer."""
        try:
            async with asyncio.timeout(PROBE_SECONDS), sessions() as session:
                await session.execute(text("SELECT 1"))
        except TimeoutError:
            # Connected but silent: a database cut off without a reset, or stuck.
            self.lost(TimeoutError(f"no answer to SELECT 1 within {PROBE_SECONDS:.0f} s"))
            return False
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            self.lost(exc)
            return False
        self.answered()
        return True

    async def watch(self, sessions: async_sessionmaker[AsyncSession], every: float = 5.0) -> None:
        """Probe for ever, every `every` seconds (an idle worker notices an outage too)."""
        while True:
            with contextlib.suppress(Exception):
                await self.probe(sessions)
            await asyncio.sleep(every)
