"""What `FlowRun` does: one stored React Flow drawing, interpreted as a durable run.

Deterministic by construction: the definition arrives once through the
`prepare_flow` activity (so replays never read the database), nodes are
visited in drawing order, and every side effect (HTTP, Postgres) is an
activity. This module holds how a run starts, ends and continues as new, and
what each handler does; `flow_run` is only the Temporal face (the decorated
class the sandbox loads for every run, kept tiny: loading this module per run
was a tenth of the worker's CPU). The rest lives in modules of its own:
`run_state` (what the run knows), `write_back` (its rows), `scheduler` (which
node runs when), `nodes/` (what each node type does), `decisions` (reviewers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import CancelledError as TemporalCancelledError

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import FlowDefinition
    from flow_language.sizes import json_size
    from workflows import patches, run_metrics, search_attributes, tracing
    from workflows.bookkeeping import bookkeeping
    from workflows.contract import (
        HITL_DECISION_SIGNAL,
        MAX_OUTPUT_BYTES,
        PREPARE_FLOW,
        Checkpoint,
        EventMessage,
        FlowResult,
        NodeState,
        PreparedFlow,
        PrepareInput,
    )
    from workflows.contract import error_codes as codes
    from workflows.decisions import Decisions
    from workflows.failures import NodeFailed, Suspended, error_text
    from workflows.nodes import RUNNERS
    from workflows.run_argument import decode_argument, too_deep
    from workflows.run_details import FlowIdentity
    from workflows.run_state import RunState
    from workflows.scheduler import Scope

#: The fields of an open review task the `status` query shows.
_OPEN_TASK_FIELDS = {
    "id",
    "node_id",
    "title",
    "decision_type",
    "options",
    "assignee_id",
    "assignee_role",
    "deadline",
    "approvals",
    "required_approvals",
}


def _ended_by(exc: BaseException) -> str:
    """The status a run ends in when it ends by `exc` before recording its end."""
    if isinstance(exc, asyncio.CancelledError) or isinstance(exc.__cause__, TemporalCancelledError):
        return "cancelled"
    return "failed"


class FlowRunBody:
    """One run of a flow definition to its end, and what its signals, update and query do
    (`flow_run.FlowRun` hands each to it).
    """

    def __init__(self, *args: Any) -> None:
        # Taken raw and judged by `run_argument`: a bad one is recorded as the run's failure.
        #: How the run ended, once its final row says so: what Temporal must say too.
        self._recorded_end: FlowResult | ApplicationError | None = None
        continued = workflow.info().continued_run_id is not None
        params, self._bad_input = decode_argument(args, continued)
        self._state = RunState(params)
        self._decisions = Decisions(self._state)
        checkpoint = params.checkpoint
        self._flow_name = checkpoint.flow_name if checkpoint else None
        #: the metrics' `flow` label: a stored flow's name (inline names would be unbounded)
        self._metric_flow = self._flow_name if checkpoint and checkpoint.workflow_id else None
        self._span = tracing.WorkflowSpan.none()  # the run's span, once it runs

    # -- signals, queries -------------------------------------------------------------------------

    # Signal handlers take whatever arguments a sender passes (`*_`, `*args`): a handler
    # called with more or fewer than it declares would raise and fail the workflow task,
    # over and over, for a signal anyone can send.

    def pause(self, *_: Any) -> None:
        """Stop starting nodes (those running go on) until `resume`."""
        self._state.paused = True
        self._state.refresh_details()

    def resume(self, *_: Any) -> None:
        """Start nodes again after `pause`."""
        self._state.paused = False
        self._state.refresh_details()

    def event(self, *args: Any) -> None:
        """`{"name": ..., "payload": ...}` for `wait` nodes; anything else is logged and ignored."""
        try:
            if len(args) != 1:
                raise ValueError(f"an event is one JSON object, not {len(args)} values")
            message = EventMessage.model_validate(args[0])
        except ValueError as exc:  # pydantic's ValidationError included
            workflow.logger.warning("ignored event signal: %s", str(exc)[:500])
            return
        self._state.events.append(message)

    def status(self) -> dict[str, Any]:
        """The run's status, its node executions, its open review tasks and the decisions
        refused.
        """
        run = self._state
        return {
            "status": run.status,
            "error": run.error,
            "run_id": run.run_row_id,
            "paused": run.paused,
            "continued_as_new": run.continued,
            "nodes": run.task_view,
            "open_hitl_tasks": [
                t.model_dump(mode="json", include=_OPEN_TASK_FIELDS)
                for t in run.reviews.values()
                if t.status == "open"
            ],
            "rejected_decisions": self._decisions.rejected,
            "rejected_total": self._decisions.rejected_total,
        }

    async def submit_hitl_decision(self, raw: RawValue) -> dict[str, Any]:
        """Record a reviewer's decision; returns the `hitl_decisions` row."""
        return await self._decisions.submit(raw)

    def validate_hitl_decision(self, raw: RawValue) -> None:
        """The update's validator: refuse a malformed decision before it reaches history."""
        self._decisions.validate(raw)

    async def raw_signal(self, name: str, payloads: Sequence[RawValue]) -> None:
        """`hitl_decision`, received raw; any other unknown signal is logged and ignored."""
        if name != HITL_DECISION_SIGNAL:
            workflow.logger.warning("ignored signal %r: FlowRun has no such signal", name[:100])
            return
        await self._decisions.signalled(payloads)

    # -- the run ----------------------------------------------------------------------------------

    async def run(self) -> FlowResult:
        """Run the flow inside the run's span, which ends as the run's record does."""
        run = self._state
        self._span = tracing.run_span(run.params, self._flow_name)
        with self._span.current():
            try:
                result = await self._run()
            except workflow.ContinueAsNewError:
                self._span.end("continued")  # the next run of the chain goes on in this trace
                raise
            except (ApplicationError, asyncio.CancelledError) as exc:
                status = run.status if run.finished else _ended_by(exc)
                self._span.end(status, run.error or str(exc))
                run_metrics.run_ended(self._metric_flow, status)
                raise
        self._span.end("completed")
        run_metrics.run_ended(self._metric_flow, "completed")
        return result

    async def _run(self) -> FlowResult:
        """In runs since `EVERY_END_RECORDED`, a cancellation or a failure of the run's own
        bookkeeping still ends with the run's row saying so.
        """
        run = self._state
        run.strict_templates = patches.patched(patches.STRICT_TEMPLATES)
        run.records_every_end = patches.patched(patches.EVERY_END_RECORDED)
        run.agents_carry_rows = run.records_every_end and patches.patched(patches.AGENTS_CARRY_ROWS)
        if self._bad_input is None and patches.patched(patches.VALUE_DEPTH_BOUND):
            self._bad_input = too_deep(run.params)
        if self._bad_input is not None:
            await self._refuse_argument(self._bad_input)
        if run.params.retry_of and run.params.reuse_outputs:  # only retries take the marker
            run.reuses = patches.patched(patches.REUSE_RETRIED_OUTPUTS)
        if not run.records_every_end:
            return await self._run_flow()
        try:
            return await self._run_flow()
        except asyncio.CancelledError:
            if self._ends_as_recorded():
                return self._end_as_recorded()
            if not run.finished:
                await run.finish("cancelled", error="cancelled")
            raise
        except ActivityError as exc:
            # A bookkeeping step failed for good (the database refused what it was given).
            if isinstance(exc.cause, TemporalCancelledError):
                if self._ends_as_recorded():
                    return self._end_as_recorded()
                if not run.finished:
                    await run.finish("cancelled", error="cancelled")
                raise asyncio.CancelledError() from None
            message = f"the run could not record its progress: {error_text(exc)}"
            if not run.finished:
                await run.finish("failed", error=message, error_code=codes.BOOKKEEPING_FAILED)
            raise ApplicationError(message, type="BookkeepingFailed", non_retryable=True) from None

    def _ends_as_recorded(self) -> bool:
        """Whether a cancellation arrived after the run's final row was written (or while it
        was): the row is the record, so the run ends as it says, not as cancelled.
        """
        return self._recorded_end is not None and patches.patched(patches.ENDS_AS_RECORDED)

    def _end_as_recorded(self) -> FlowResult:
        """The recorded end: its result, or its failure raised."""
        ended = self._recorded_end
        if isinstance(ended, FlowResult):
            return ended
        assert ended is not None
        raise ended

    async def _refuse_argument(self, problems: str) -> None:
        """Record and fail a run whose argument is not a FlowRunInput (CONTRACT section 2)."""
        message = f"invalid FlowRun argument: {problems}"
        run = self._state
        run.status, run.finished, run.error = "failed", True, message
        self._recorded_end = ApplicationError(
            message, type="InvalidRunArgument", non_retryable=True
        )
        run_metrics.run_started(None)
        await run.record_end_only(
            "failed", message, refused_start=True, error_code=codes.INVALID_INPUT
        )
        raise self._recorded_end

    async def _prepare(self) -> Checkpoint:
        """Load and validate the flow (the activity writes the run's row): the start of a
        checkpoint, or the run fails here with every problem found.
        """
        run = self._state
        # Read from the start event, not a command: no run's history changes for it.
        attributes = workflow.info().typed_search_attributes
        prepared: PreparedFlow = await bookkeeping(
            PREPARE_FLOW,
            PrepareInput(
                orchestrator_run_id=workflow.info().workflow_id,
                request=run.params.model_copy(update={"checkpoint": None}),
                started_at=workflow.now(),
                scheduled_by=attributes.get(search_attributes.SCHEDULED_BY_ID),
                scheduled_time=attributes.get(search_attributes.SCHEDULED_START_TIME),
            ),
            "Load and validate the flow",
            result_type=PreparedFlow,
        )
        run.run_row_id = prepared.run_row_id
        run.tenant_id = prepared.tenant_id
        self._flow_name = prepared.flow_name
        run.flow = FlowIdentity(
            name=prepared.flow_name,
            flow_id=prepared.workflow_id,
            version=prepared.version,
            tenant_id=prepared.tenant_id,
            triggered_by=run.params.triggered_by,
        )
        self._span.prepared(prepared)
        self._metric_flow = prepared.flow_name if prepared.workflow_id else None
        run_metrics.run_started(self._metric_flow)
        started = run.agents_carry_rows and not (prepared.problems or prepared.error)
        with_status = started and patches.patched(patches.STATUS_WITH_IDENTITY)
        run.set_search_attributes(prepared, status="running" if with_status else None)
        if started:  # prepare_flow's row says so
            run.set_status("running", written=True, announce=not with_status)
        if prepared.problems or prepared.error:
            # prepare_flow has written the failed run row; no node has started.
            run.set_status("failed")
            run.finished = True
            run.error = prepared.error or (
                f"invalid flow ({len(prepared.problems)} problems):\n- "
                + "\n- ".join(prepared.problems)
            )
            raise ApplicationError(run.error, type=prepared.error_type, non_retryable=True)
        return Checkpoint(
            run_row_id=prepared.run_row_id,
            definition=prepared.definition,
            workflow_id=prepared.workflow_id,
            flow_name=prepared.flow_name,
            version=prepared.version,
            tenant_id=prepared.tenant_id,
            workspace_id=prepared.workspace_id,
            reuse_run_id=prepared.reuse_run_id,
        )

    async def _run_flow(self) -> FlowResult:
        run = self._state
        base = run.params.checkpoint
        if base is None:
            base = await self._prepare()
        run.definition = FlowDefinition.model_validate(base.definition)
        if run.reuses and base.reuse_run_id:
            await run.load_reused(base.reuse_run_id)
        run.set_status("paused" if run.paused else "running")
        top = Scope(
            run, RUNNERS, parent=None, prefix="", local={}, outer={}, states=run.nodes, top=True
        )
        try:
            await top.run_all()
        except asyncio.CancelledError:
            await run.finish("cancelled", error="cancelled")
            raise
        except NodeFailed as failure:
            self._recorded_end = ApplicationError(
                str(failure), type="NodeFailed", non_retryable=True
            )
            await run.finish(
                "failed", error=str(failure), error_step=failure.step, error_code=failure.code
            )
            raise self._recorded_end from None
        except Suspended:
            await self._continue_as_new(base)
        outputs = self._outputs()
        size = json_size(outputs) if run.records_every_end else 0
        if size > MAX_OUTPUT_BYTES:
            message = (
                f"the run's outputs are {size} bytes, over the {MAX_OUTPUT_BYTES} a run may "
                "return; make its end nodes return less"
            )
            self._recorded_end = ApplicationError(
                message, type="OutputTooLarge", non_retryable=True
            )
            await run.finish("failed", error=message, error_code=codes.INVALID_OUTPUT)
            raise self._recorded_end
        self._recorded_end = FlowResult(outputs=outputs)
        await run.finish("completed", outputs=outputs)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._recorded_end

    async def _continue_as_new(self, base: Checkpoint) -> NoReturn:
        run = self._state
        await run.write_back.flush_all()
        await workflow.wait_condition(workflow.all_handlers_finished)
        checkpoint = run.checkpoint(base)
        if patches.patched(patches.CHECKPOINT_APART):
            request = run.params.model_copy(update={"checkpoint": None})
            workflow.continue_as_new(
                args=[request.model_dump(mode="json", exclude_defaults=True), checkpoint]
            )
        workflow.continue_as_new(run.params.model_copy(update={"checkpoint": checkpoint}))

    def _outputs(self) -> dict[str, Any]:
        """The merged outputs of the completed top-level end nodes; without any, the outputs
        of the completed nodes nothing leads out of, by node id.
        """
        run = self._state
        top = run.definition.children(None)
        done = [n for n in top if run.nodes.get(n.id, NodeState()).status == "completed"]
        ends = [n for n in done if n.type == "end"]
        if ends:
            merged: dict[str, Any] = {}
            for end in ends:
                out = run.nodes[end.id].output
                if isinstance(out, dict):
                    merged.update(out)
            return merged
        return {n.id: run.nodes[n.id].output for n in done if not run.definition.outgoing.get(n.id)}
