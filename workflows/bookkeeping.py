"""How the workflow runs its bookkeeping activities: write-back and lookups.

Short attempts, retried without limit: a database outage delays a run, it does
not fail it. Runs that recorded `patches.LOCAL_BOOKKEEPING` ran them as local
activities; new runs (`patches.BOOKKEEPING_AS_ACTIVITIES`) run them as regular
activities again, since an oversized update arriving while a local activity was in
flight could get the run terminated. Agent activities are not bookkeeping;
`nodes/agent.py` runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

from workflows import patches

#: Write-back must eventually succeed: retry without limit, backing off to a minute.
BOOKKEEPING_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
BOOKKEEPING_TIMEOUT = timedelta(seconds=60)


async def bookkeeping(
    activity: str, arg: Any, summary: str, result_type: type | None = None
) -> Any:
    """Run a write-back or lookup activity until the database answers.

    Since `patches.EVERY_END_RECORDED`, a cancelled run lets a write it started land
    before it records its end: a cancelled write could otherwise still land after the
    run's final one (a `running` row, an open review task, after `cancelled`).
    """
    local = not patches.patched(patches.BOOKKEEPING_AS_ACTIVITIES) and patches.patched(
        patches.LOCAL_BOOKKEEPING
    )
    start = workflow.start_local_activity if local else workflow.start_activity
    handle = start(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=BOOKKEEPING_TIMEOUT,
        retry_policy=BOOKKEEPING_RETRY,
        summary=summary,
    )
    try:
        if not patches.patched(patches.EVERY_END_RECORDED):
            return await handle
        try:
            return await asyncio.shield(handle)
        except asyncio.CancelledError:
            if not handle.done():
                await handle
            raise
    except FailureError as exc:
        if isinstance(exc, ActivityError):
            raise
        # A local activity's failure arrives bare; callers tell bookkeeping failures from
        # a node's own by their ActivityError (and its activity type), as before.
        raise ActivityError(
            f"{activity} failed",
            scheduled_event_id=0,
            started_event_id=0,
            identity="",
            activity_type=activity,
            activity_id="",
            retry_state=None,
        ) from exc


async def landing(work: Awaitable[None]) -> None:
    """Await `work` to its end even if cancelled meanwhile, then let the cancellation through."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
