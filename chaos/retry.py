"""Calls the driver makes across faults: retried until they answer, each retry counted.

The driver is a client like any other: while Temporal or Postgres is down its calls fail,
and it tries again. Which errors it met is kept (by call and error type) for the summary,
rather than logged one line per retry.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Seconds between attempts: short, since most outages last seconds.
PAUSE = 1.0


class GaveUp(RuntimeError):
    """A call still failed at its deadline; the message names the call and its last error."""


class Retries:
    """Counts of retried calls, keyed `call: ErrorType`."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        #: The loop time after which failing calls give up (None: they never do). Set once
        #: the workload is over, so that a run that never closes cannot hold the driver.
        self.deadline: float | None = None

    async def call(
        self,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        keep: tuple[type[BaseException], ...] = (),
    ) -> T:
        """`attempt()` until it returns; errors in `keep` are raised at once (they are
        answers, not outages). GaveUp once the loop's clock passes `deadline`.
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await attempt()
            except keep:
                raise
            except Exception as exc:  # an outage looks like anything: refused, reset, timeout
                self.counts[f"{what}: {type(exc).__name__}"] += 1
                if self.deadline is not None and loop.time() > self.deadline:
                    raise GaveUp(f"{what}: still failing at the deadline: {exc!r}"[:300]) from exc
            await asyncio.sleep(PAUSE)

    def lines(self) -> list[str]:
        """`call: ErrorType xN`, most frequent first."""
        return [f"{key} x{n}" for key, n in self.counts.most_common()]
