"""`FlowRun`: one stored React Flow drawing, interpreted as a durable Temporal execution.

Only the Temporal face: the workflow type and its handlers, by the CONTRACT's names,
each handing its work to `flow_run_body.FlowRunBody`. The SDK's sandbox loads this
module again for every run, so it imports nothing that is not passed through: the
interpreter itself (deterministic, import-linted) is loaded once for the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from workflows.contract import (
        EVENT_SIGNAL,
        FLOW_RUN,
        PAUSE_SIGNAL,
        RESUME_SIGNAL,
        STATUS_QUERY,
        SUBMIT_HITL_DECISION_UPDATE,
        FlowResult,
    )
    from workflows.flow_run_body import FlowRunBody


@workflow.defn(name=FLOW_RUN)
class FlowRun:
    """The one workflow: runs a flow definition to its end, with its signals, update and query
    (names in `workflows.contract`).
    """

    @workflow.init
    def __init__(self, *args: Any) -> None:
        # Taken raw (any number of arguments) and checked by the body: an argument that does
        # not decode would otherwise fail every workflow task for ever.
        self._body = FlowRunBody(*args)

    # Signal handlers take whatever arguments a sender passes (`*_`, `*args`): a handler
    # called with more or fewer than it declares would raise and fail the workflow task,
    # over and over, for a signal anyone can send.

    @workflow.signal(name=PAUSE_SIGNAL)
    def pause(self, *_: Any) -> None:
        """Stop starting nodes (those running go on) until `resume`."""
        self._body.pause()

    @workflow.signal(name=RESUME_SIGNAL)
    def resume(self, *_: Any) -> None:
        """Start nodes again after `pause`."""
        self._body.resume()

    @workflow.signal(name=EVENT_SIGNAL)
    def event(self, *args: Any) -> None:
        """`{"name": ..., "payload": ...}` for `wait` nodes; anything else is logged and ignored."""
        self._body.event(*args)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> dict[str, Any]:
        """The run's status, its node executions, its open review tasks and refused decisions."""
        return self._body.status()

    @workflow.update(name=SUBMIT_HITL_DECISION_UPDATE)
    async def submit_hitl_decision(self, raw: RawValue) -> dict[str, Any]:
        """Record a reviewer's decision; returns the `hitl_decisions` row."""
        return await self._body.submit_hitl_decision(raw)

    @submit_hitl_decision.validator
    def _validate_hitl_decision(self, raw: RawValue) -> None:
        self._body.validate_hitl_decision(raw)

    @workflow.signal(dynamic=True)
    async def _raw_signal(self, name: str, payloads: Sequence[RawValue]) -> None:
        """`hitl_decision`, received raw; any other unknown signal is logged and ignored."""
        await self._body.raw_signal(name, payloads)

    @workflow.run
    async def run(self, *args: Any) -> FlowResult:
        """Run the flow; in runs since `EVERY_END_RECORDED`, however it ends, its rows say so."""
        return await self._body.run()
