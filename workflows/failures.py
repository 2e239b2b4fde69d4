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
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.exceptions import CancelledError as TemporalCancelledError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import Node
    from flow_language.sizes import json_size, model_size
    from workflows.contract import MAX_OUTPUT_BYTES, MAX_WRITE_BYTES
    from workflows.contract import error_codes as codes


class NodeFailed(Exception):
    """A node failed and its onError did not absorb it: the run fails with this message.

    `code` is the failure's class (`workflows.contract.error_codes`) and `step` the node
    that failed: this one, or the body node of a loop iteration that failed it.
    """

    def __init__(
        self, node: Node, message: str, code: str = codes.NODE_FAILED, step: str | None = None
    ) -> None:
        self.node = node
        self.code = code
        self.step = step or node.id
        super().__init__(f"{node.named} failed: {message}")


class NodeError(Exception):
    """A node's own failure, before its onError decides what it means; `code` classes it for
    the run's row should it fail the run, `step` names the node inside that failed (a loop's).
    """

    def __init__(
        self, message: str, code: str = codes.NODE_FAILED, step: str | None = None
    ) -> None:
        self.code = code
        self.step = step
        super().__init__(message)


def failure_code(exc: BaseException) -> str:
    """The class of a Temporal failure (an activity's, a child's): its innermost cause's
    `ApplicationError` type, a timeout or a cancellation.
    """
    while isinstance(exc, FailureError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, TemporalTimeoutError):
        return codes.TIMEOUT
    if isinstance(exc, TemporalCancelledError):
        return codes.CANCELLED
    if isinstance(exc, ApplicationError):
        return codes.code_of_type(exc.type)
    return codes.NODE_FAILED


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
            "make it smaller (reduce each loop item, pick the fields you need)",
            codes.INVALID_OUTPUT,
        )
