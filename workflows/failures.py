"""How a node fails, stops for continue-as-new, or is refused for its size.

A node's own failure (`NodeError`) is judged by its `onError`; one it does not
absorb becomes `NodeFailed`, which fails the run. Sizes are checked before a
payload leaves the workflow: Temporal would otherwise refuse the workflow task
for ever, wedging the run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import FailureError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import Node
    from flow_language.sizes import json_size, model_size
    from workflows.contract import MAX_OUTPUT_BYTES, MAX_WRITE_BYTES


class NodeFailed(Exception):
    """A node failed and its onError did not absorb it: the run fails with this message."""

    def __init__(self, node: Node, message: str) -> None:
        self.node = node
        super().__init__(f"{node.named} failed: {message}")


class NodeError(Exception):
    """A node's own failure, before its onError decides what it means."""


class Suspended(Exception):
    """A node stopped for continue-as-new; it resumes in the next run from the checkpoint."""


def error_text(exc: BaseException) -> str:
    """The innermost useful message of a Temporal failure chain."""
    while isinstance(exc, FailureError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, TemporalTimeoutError):
        kind = exc.type.name.replace("_", "-").lower() if exc.type else "activity"
        return f"timed out ({kind} timeout): {exc}"
    return str(exc) or type(exc).__name__


def cancelling() -> bool:
    """Whether the current node task is being cancelled (by its run), not merely told so."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def check_payload(argument: BaseModel, what: str, limit: int = MAX_WRITE_BYTES) -> int:
    """The size of an activity's or sub-flow's argument, which must fit in one Temporal payload
    (else the workflow task fails for ever); a node error naming `what` when it does not.
    """
    size = model_size(argument)
    if size > limit:
        raise NodeError(
            f"{what} is {size} bytes, over the {limit} one step may carry; "
            "pass it less (pick the fields it needs)"
        )
    return size


def check_output_size(value: Any, what: str = "the node's output") -> None:
    """An output over the cap would make Temporal refuse the workflow task for ever."""
    size = json_size(value)
    if size > MAX_OUTPUT_BYTES:
        raise NodeError(
            f"{what} is {size} bytes, over the {MAX_OUTPUT_BYTES} a node may return; "
            "make it smaller (reduce each loop item, pick the fields you need)"
        )
