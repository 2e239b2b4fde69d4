"""What the runners of nodes that last (a wait, a review, a loop, a sub-flow) share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from temporalio import workflow

from workflows.failures import Suspended

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import Node

if TYPE_CHECKING:
    from workflows.scheduler import Scope


async def sleep_or_drain(
    scope: Scope,
    seconds: float | None,
    wake: Callable[[], bool] | None = None,
    *,
    summary: str | None = None,
) -> None:
    """Sleep, but give way to continue-as-new (top level only) or to `wake`; `summary` labels
    the timer in the Temporal UI (user metadata, which replay does not compare).
    """

    def woken() -> bool:
        return (scope.top and scope.run.draining) or (wake is not None and wake())

    scope.run.refresh_details()  # what it waits for now (an escalation changes the assignee)

    try:
        await workflow.wait_condition(woken, timeout=seconds, timeout_summary=summary)
    except TimeoutError:
        return
    if scope.top and scope.run.draining:
        raise Suspended()


def running_row(scope: Scope, node: Node, task_id: str, started: datetime) -> None:
    """The row of a node that lasts, written at once (its end may be days away)."""
    scope.run.record_node(task_id, node, "running", started_at=started)
    scope.run.maybe_flush()
