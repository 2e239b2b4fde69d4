"""What the worker registers: the activity objects and the dependencies they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@dataclass
class Dependencies:
    """Long-lived clients shared by every activity of one worker process."""

    sessions: async_sessionmaker[AsyncSession]

    async def aclose(self) -> None:
        return None


def activities_for(deps: Dependencies) -> Sequence[Callable[..., Any]]:
    from activities.writeback import WriteBack

    writeback = WriteBack(deps.sessions)
    return [writeback.record_run, writeback.record_tasks]
