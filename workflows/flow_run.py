"""`FlowRun`: one stored React Flow drawing, interpreted as a durable Temporal execution.

Deterministic by construction: the definition arrives once through the
`prepare_flow` activity (so replays never read the database), nodes are
visited in drawing order, and every side effect (HTTP, Postgres) is an
activity. Agent activities write their own `task_instances` rows; rows of
nodes evaluated here (condition, transform, wait, loop, ...) are buffered and
written in the background by `record_run`, so bookkeeping adds no round trip
to the path from one node to the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
)
from temporalio.exceptions import CancelledError as TemporalCancelledError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError
from temporalio.workflow import ActivityCancellationType, NondeterminismError, ParentClosePolicy

from workflows.render_host import WorkflowRenderHost

with workflow.unsafe.imports_passed_through():
    from flow_language import rendered_config, templates
    from flow_language.definition import (
        A2A_NEEDS_INPUT_STATES,
        ACTIVITY_AGENT_TYPES,
        ERROR_HANDLE,
        INPUT_REQUIRED_HANDLE,
        Edge,
        FlowDefinition,
        Node,
    )
    from flow_language.review_rules import (
        HitlDecisionRequest,
        HitlTaskState,
        decision_problem,
        option_values,
        parse_decision,
    )
    from flow_language.sizes import json_size, model_size
    from workflows import search_attributes as sa
    from workflows.contract import (
        AGENT_ACTIVITY_PREFIX,
        HITL_CHECK_REVIEWER,
        HITL_CLOSE,
        HITL_ESCALATE,
        HITL_OPEN,
        HITL_RECORD_DECISION,
        MAX_OUTPUT_BYTES,
        MAX_WRITE_BYTES,
        PREPARE_FLOW,
        RECORD_RUN,
        AgentTask,
        Checkpoint,
        DecisionRecord,
        EscalationRecord,
        EventMessage,
        FlowResult,
        FlowRunInput,
        HitlClose,
        HitlOpen,
        LoopProgress,
        NodeState,
        PreparedFlow,
        PrepareInput,
        ReviewerCheck,
        RunRecord,
        RunStatus,
        RunUpdate,
        TaskRecord,
    )

#: Write-back must eventually succeed: retry without limit, backing off to a minute.
_BOOKKEEPING_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
_BOOKKEEPING_TIMEOUT = timedelta(seconds=60)
_DEFAULT_AGENT_TIMEOUT = timedelta(minutes=5)
_AGENT_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
_ROWS_PER_WRITE = 500
#: workflow.patched() ids: each marks a change of commands that runs in flight must not see.
_PATCH_HITL_OPEN_BOOKKEEPING = "hitl-open-carries-bookkeeping"
#: Template lookups read keys before attributes and fail on absent values (no silent null).
_PATCH_STRICT_TEMPLATES = "strict-template-lookups"
#: A HITL deadline closes its task at once instead of waiting for decisions in flight: the
#: database orders the two, and a decision not yet stored when the deadline passes loses.
_PATCH_DEADLINE_FIRST = "hitl-deadline-does-not-wait"
#: However a run ends (a bookkeeping failure, a cancellation at any moment), its rows say so.
_PATCH_EVERY_END_RECORDED = "every-end-recorded"
_TERMINAL = ("completed", "failed", "skipped", "cancelled")


class NodeFailed(Exception):
    """A node failed and its onError did not absorb it: the run fails with this message."""

    def __init__(self, node: Node, message: str) -> None:
        self.node = node
        label = f" ({node.data.label})" if node.data.label and node.data.label != node.id else ""
        super().__init__(f"node {node.id!r}{label} failed: {message}")


class _NodeError(Exception):
    """A node's own failure, before its onError decides what it means."""


class _Suspended(Exception):
    """A node stopped for continue-as-new; it resumes in the next run from the checkpoint."""


async def _bookkeeping(
    activity: str, arg: Any, summary: str, result_type: type | None = None
) -> Any:
    """Run a write-back or lookup activity: short attempts, retried until the database answers.

    Since `_PATCH_EVERY_END_RECORDED`, a cancelled run lets a write it started land before
    it records its end: a cancelled write could otherwise still land after the run's final
    one (a `running` row, an open review task, after `cancelled`).
    """
    handle = workflow.start_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=_BOOKKEEPING_TIMEOUT,
        retry_policy=_BOOKKEEPING_RETRY,
        summary=summary,
    )
    if not workflow.patched(_PATCH_EVERY_END_RECORDED):
        return await handle
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        if not handle.done():
            await handle
        raise


async def _cancel_all(tasks: dict[Any, asyncio.Task[Any]]) -> None:
    """Cancel still-running node tasks and wait until each has stopped (and recorded so)."""
    for task in tasks.values():
        task.cancel()
    if tasks:
        await workflow.wait(list(tasks.values()))


def _error_text(exc: BaseException) -> str:
    """The innermost useful message of a Temporal failure chain."""
    while isinstance(exc, FailureError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, TemporalTimeoutError):
        kind = exc.type.name.replace("_", "-").lower() if exc.type else "activity"
        return f"timed out ({kind} timeout): {exc}"
    return str(exc) or type(exc).__name__


#: How many rejected decisions `status.rejected_decisions` keeps (the latest ones).
MAX_REJECTED_SHOWN = 100
MAX_REASON_CHARS = 2000


def _short(value: Any) -> str | None:
    """A caller-supplied id as a bounded text, for logs and the status query."""
    return None if value is None else str(value)[:200]


def _decoded(raw: RawValue) -> Any:
    return workflow.payload_converter().from_payload(raw.payload)


def _payload_fields(payloads: Sequence[RawValue]) -> dict[str, Any]:
    """Whatever task and reviewer a refused payload names, to say whose decision it was."""
    try:
        value = _decoded(payloads[0]) if payloads else None
    except Exception:  # nothing readable: the rejection says so
        return {}
    return value if isinstance(value, dict) else {}


@workflow.defn(name="FlowRun")
class FlowRun:
    @workflow.init
    def __init__(self, *args: Any) -> None:
        # Taken raw and checked here: an argument that does not decode as FlowRunInput (or
        # none, or two) would otherwise fail every workflow task for ever, with no row and
        # no way to cancel.
        self._bad_input: str | None = None
        try:
            if len(args) != 1:
                raise ValueError(f"FlowRun takes one argument (a JSON object), got {len(args)}")
            params = FlowRunInput.model_validate(args[0])
        except ValueError as exc:
            params = FlowRunInput()
            self._bad_input = (
                "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'the argument'}: {err['msg']}"
                    for err in exc.errors()
                )
                if isinstance(exc, ValidationError)
                else str(exc)
            )
        if params.checkpoint is not None and workflow.info().continued_run_id is None:
            # A checkpoint skips prepare_flow (and with it every tenant check): only
            # FlowRun itself writes one, when it continues as new.
            self._bad_input = "checkpoint: only FlowRun writes one, when it continues as new"
            params = FlowRunInput()
        cp = params.checkpoint
        self._params = params
        self._status: RunStatus = "running" if cp else "queued"
        self._paused = cp.paused if cp else False
        self._events: list[EventMessage] = list(cp.events) if cp else []
        self._states: dict[str, NodeState] = dict(cp.nodes) if cp else {}
        self._loops: dict[str, LoopProgress] = dict(cp.loops) if cp else {}
        self._wait_deadlines: dict[str, datetime] = dict(cp.wait_deadlines) if cp else {}
        self._continued = cp.continued if cp else 0
        self._run_row_id: str | None = cp.run_row_id if cp else None
        self._tenant_id = cp.tenant_id if cp else params.tenant_id
        self._definition: FlowDefinition | None = None
        self._task_view: dict[str, dict[str, Any]] = {}
        self._pending_rows: dict[str, TaskRecord] = {}
        self._status_dirty = False
        self._flush_task: asyncio.Task[None] | None = None
        self._drain = False
        self._refs: dict[str, templates.References] = {}
        self._hitl: dict[str, HitlTaskState] = dict(cp.hitl) if cp else {}
        self._hitl_locks: dict[str, asyncio.Lock] = {}
        self._rejected_decisions: list[dict[str, Any]] = []
        self._rejected_total = 0
        self.strict_templates = False
        self.records_every_end = False
        self._finished = False
        self._error: str | None = None
        self._row_bytes: dict[str, int] = {}
        self.render_host = WorkflowRenderHost()

    # -- signals, queries -------------------------------------------------------------------------

    # Signal handlers take whatever arguments a sender passes (`*_`, `*args`): a handler
    # called with more or fewer than it declares would raise and fail the workflow task,
    # over and over, for a signal anyone can send.

    @workflow.signal(name="pause")
    def pause(self, *_: Any) -> None:
        self._paused = True

    @workflow.signal(name="resume")
    def resume(self, *_: Any) -> None:
        self._paused = False

    @workflow.signal(name="event")
    def event(self, *args: Any) -> None:
        """`{"name": ..., "payload": ...}` for `wait` nodes; anything else is logged and ignored."""
        try:
            if len(args) != 1:
                raise ValueError(f"an event is one JSON object, not {len(args)} values")
            message = EventMessage.model_validate(args[0])
        except ValueError as exc:  # pydantic's ValidationError included
            workflow.logger.warning("ignored event signal: %s", str(exc)[:500])
            return
        self._events.append(message)

    @workflow.query(name="status")
    def status(self) -> dict[str, Any]:
        return {
            "status": self._status,
            "error": self._error,
            "run_id": self._run_row_id,
            "paused": self._paused,
            "continued_as_new": self._continued,
            "nodes": self._task_view,
            "open_hitl_tasks": [
                t.model_dump(
                    mode="json",
                    include={
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
                    },
                )
                for t in self._hitl.values()
                if t.status == "open"
            ],
            "rejected_decisions": self._rejected_decisions,
            "rejected_total": self._rejected_total,
        }

    # -- human decisions ----------------------------------------------------------------------

    def _decision_problem(self, req: HitlDecisionRequest) -> str | None:
        return decision_problem(self._hitl.get(req.hitl_task_id), req, self._params.triggered_by)

    def _decision_from(self, payloads: Sequence[RawValue]) -> HitlDecisionRequest | str:
        """The request the payloads hold, or why they hold none.

        Decisions arrive raw, so a malformed one is refused with a reason instead of being
        dropped by the payload converter before any handler sees it.
        """
        if len(payloads) != 1:
            return f"a decision is one JSON object, not {len(payloads)} values"
        try:
            value = _decoded(payloads[0])
        except Exception as exc:  # any payload that is not JSON
            return f"the payload cannot be read as JSON: {str(exc)[:200] or type(exc).__name__}"
        return parse_decision(value)

    @workflow.update(name="submit_hitl_decision")
    async def submit_hitl_decision(self, raw: RawValue) -> dict[str, Any]:
        """Record a reviewer's decision; returns the `hitl_decisions` row."""
        req = self._decision_from([raw])
        if isinstance(req, str):
            raise ApplicationError(req, type="DecisionRejected", non_retryable=True)
        try:
            return await self._decide(req)
        except (ApplicationError, NondeterminismError):
            raise
        except Exception as exc:  # no data may fail the workflow task (it would wedge the run)
            raise ApplicationError(
                f"the decision could not be judged: {exc!r}"[:500],
                type="DecisionRejected",
                non_retryable=True,
            ) from None

    @submit_hitl_decision.validator
    def _validate_hitl_decision(self, raw: RawValue) -> None:
        req = self._decision_from([raw])
        try:
            problem = req if isinstance(req, str) else self._decision_problem(req)
        except Exception as exc:  # refuse, whatever the data did to the checks
            problem = f"the decision could not be judged: {exc!r}"[:500]
        if problem:
            raise ValueError(problem)

    @workflow.signal(dynamic=True)
    async def _raw_signal(self, name: str, payloads: Sequence[RawValue]) -> None:
        """`hitl_decision`, received raw; any other unknown signal is logged and ignored.

        A rejected decision is logged on the run and listed in `status.rejected_decisions`.
        """
        if name != "hitl_decision":
            workflow.logger.warning("ignored signal %r: FlowRun has no such signal", name[:100])
            return
        req = self._decision_from(payloads)
        if isinstance(req, str):
            self._reject(_payload_fields(payloads), req)
            return
        try:
            await self._decide(req)
        except ApplicationError as exc:
            self._reject(req.model_dump(), exc.message)
        except NondeterminismError:
            raise
        except Exception as exc:  # no data may fail the workflow task (it would wedge the run)
            self._reject(req.model_dump(), f"the decision could not be judged: {exc!r}"[:500])

    def _reject(self, fields: dict[str, Any], reason: str) -> None:
        task_id, who = _short(fields.get("hitl_task_id")), _short(fields.get("decided_by"))
        workflow.logger.warning("rejected HITL decision on %s by %s: %s", task_id, who, reason)
        self._rejected_total += 1
        self._rejected_decisions.append(
            {
                "hitl_task_id": task_id,
                "decided_by": who,
                "reason": reason[:MAX_REASON_CHARS],
                "at": workflow.now().isoformat(),
            }
        )
        # The latest ones are what a reader needs; a flood of bad signals must not grow
        # the run's memory and query answer without bound.
        del self._rejected_decisions[:-MAX_REJECTED_SHOWN]

    async def _decide(self, req: HitlDecisionRequest) -> dict[str, Any]:
        if req.hitl_task_id not in self._hitl:  # before a lock exists for whatever id was sent
            raise ApplicationError(
                self._decision_problem(req) or "unknown task",
                type="DecisionRejected",
                non_retryable=True,
            )
        lock = self._hitl_locks.setdefault(req.hitl_task_id, asyncio.Lock())
        async with lock:  # decisions on one task are judged one after the other
            problem = self._decision_problem(req)
            if problem:
                raise ApplicationError(problem, type="DecisionRejected", non_retryable=True)
            task = self._hitl[req.hitl_task_id]
            try:
                await _bookkeeping(
                    HITL_CHECK_REVIEWER,
                    ReviewerCheck(
                        user_id=req.decided_by,
                        tenant_id=self._tenant_id,
                        assignee_id=task.assignee_id,
                        assignee_role=task.assignee_role,
                    ),
                    f"Check reviewer {req.decided_by}",
                )
            except ActivityError as exc:
                raise ApplicationError(
                    _error_text(exc), type="ReviewerNotAllowed", non_retryable=True
                ) from None
            problem = self._decision_problem(req)  # the task may have closed meanwhile
            if problem:
                raise ApplicationError(problem, type="DecisionRejected", non_retryable=True)
            handle, final = _decision_handle(task, req)
            decision_id = str(workflow.uuid4())
            try:
                row: dict[str, Any] = await _bookkeeping(
                    HITL_RECORD_DECISION,
                    DecisionRecord(
                        decision_id=decision_id,
                        hitl_task_id=task.id,
                        tenant_id=self._tenant_id,
                        decision=req.decision,
                        decision_type=task.decision_type,
                        decided_by=req.decided_by,
                        comments=req.comments,
                        task_status="completed" if final else "in_progress",
                    ),
                    f"Record decision on {task.title[:40]}",
                )
            except ActivityError as exc:
                # The deadline came first, or the database refused the decision: it loses,
                # and the reviewer is told why; the run goes on either way.
                raise ApplicationError(
                    _error_text(exc), type="DecisionRejected", non_retryable=True
                ) from None
            task.decision_ids.append(decision_id)
            if req.decision.get("approved") is True:
                task.approvals.append(req.decided_by)
            if final:
                task.status = "completed"
                task.outcome = {
                    "decision": req.decision,
                    "decided_by": req.decided_by,
                    "comments": req.comments,
                    "handle": handle,
                    "approvals": list(task.approvals),
                }
            return row

    # -- the run ----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, *args: Any) -> FlowResult:
        params = self._params
        self.strict_templates = workflow.patched(_PATCH_STRICT_TEMPLATES)
        self.records_every_end = workflow.patched(_PATCH_EVERY_END_RECORDED)
        if self._bad_input is not None:
            await self._refuse_argument(self._bad_input)
        if not self.records_every_end:
            return await self._run(params)
        try:
            return await self._run(params)
        except asyncio.CancelledError:
            if not self._finished:
                await self._finish("cancelled", error="cancelled")
            raise
        except ActivityError as exc:
            # A bookkeeping step failed for good (the database refused what it was given).
            if isinstance(exc.cause, TemporalCancelledError):
                if not self._finished:
                    await self._finish("cancelled", error="cancelled")
                raise asyncio.CancelledError() from None
            message = f"the run could not record its progress: {_error_text(exc)}"
            if not self._finished:
                await self._finish("failed", error=message)
            raise ApplicationError(message, type="BookkeepingFailed", non_retryable=True) from None

    async def _refuse_argument(self, problems: str) -> None:
        """Record and fail a run whose argument is not a FlowRunInput (CONTRACT section 2)."""
        message = f"invalid FlowRun argument: {problems}"
        self._status, self._finished, self._error = "failed", True, message
        now = workflow.now()
        await _bookkeeping(
            RECORD_RUN,
            RunUpdate(
                run=RunRecord(
                    orchestrator_run_id=workflow.info().workflow_id,
                    status="failed",
                    error=message,
                    started_at=now,
                    completed_at=now,
                ),
                refused_start=True,
            ),
            "Record the refused run",
            result_type=str,
        )
        raise ApplicationError(message, type="InvalidRunArgument", non_retryable=True)

    async def _run(self, params: FlowRunInput) -> FlowResult:
        info = workflow.info()
        if params.checkpoint is None:
            prepared = await _bookkeeping(
                PREPARE_FLOW,
                PrepareInput(
                    orchestrator_run_id=info.workflow_id,
                    request=params.model_copy(update={"checkpoint": None}),
                    started_at=workflow.now(),
                ),
                "Load and validate the flow",
                result_type=PreparedFlow,
            )
            self._run_row_id = prepared.run_row_id
            self._tenant_id = prepared.tenant_id
            self._set_search_attributes(prepared)
            if prepared.problems or prepared.error:
                # prepare_flow has written the failed run row; no node has started.
                self._set_status("failed")
                self._finished = True
                self._error = prepared.error or (
                    f"invalid flow ({len(prepared.problems)} problems):\n- "
                    + "\n- ".join(prepared.problems)
                )
                raise ApplicationError(
                    self._error,
                    type=prepared.error_type,
                    non_retryable=True,
                )
            definition_raw = prepared.definition
            checkpoint_base = Checkpoint(
                run_row_id=prepared.run_row_id,
                definition=prepared.definition,
                workflow_id=prepared.workflow_id,
                version=prepared.version,
                tenant_id=prepared.tenant_id,
                workspace_id=prepared.workspace_id,
            )
        else:
            definition_raw = params.checkpoint.definition
            checkpoint_base = params.checkpoint
        self._definition = FlowDefinition.model_validate(definition_raw)
        self._set_status("paused" if self._paused else "running")

        top = _Scope(
            self, parent=None, prefix="", local={}, outer={}, states=self._states, top=True
        )
        try:
            await top.run()
        except asyncio.CancelledError:
            await self._finish("cancelled", error="cancelled")
            raise
        except NodeFailed as failure:
            await self._finish("failed", error=str(failure))
            raise ApplicationError(str(failure), type="NodeFailed", non_retryable=True) from None
        except _Suspended:
            await self._continue_as_new(checkpoint_base)
        outputs = self._outputs()
        size = json_size(outputs) if self.records_every_end else 0
        if size > MAX_OUTPUT_BYTES:
            message = (
                f"the run's outputs are {size} bytes, over the {MAX_OUTPUT_BYTES} a run may "
                "return; make its end nodes return less"
            )
            await self._finish("failed", error=message)
            raise ApplicationError(message, type="OutputTooLarge", non_retryable=True)
        await self._finish("completed", outputs=outputs)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return FlowResult(outputs=outputs)

    async def _continue_as_new(self, base: Checkpoint) -> None:
        await self._flush_all()
        await workflow.wait_condition(workflow.all_handlers_finished)
        checkpoint = base.model_copy(
            update={
                "nodes": self._states,
                "loops": self._loops,
                "wait_deadlines": self._wait_deadlines,
                "events": self._events,
                "hitl": self._hitl,
                "paused": self._paused,
                "continued": self._continued + 1,
            }
        )
        workflow.continue_as_new(self._params.model_copy(update={"checkpoint": checkpoint}))

    def _outputs(self) -> dict[str, Any]:
        assert self._definition is not None
        ends = [
            n
            for n in self._definition.children(None)
            if n.type == "end" and self._states.get(n.id, NodeState()).status == "completed"
        ]
        if ends:
            merged: dict[str, Any] = {}
            for end in ends:
                out = self._states[end.id].output
                if isinstance(out, dict):
                    merged.update(out)
            return merged
        return {
            n.id: self._states[n.id].output
            for n in self._definition.children(None)
            if not self._definition.outgoing.get(n.id)
            and self._states.get(n.id, NodeState()).status == "completed"
        }

    # -- status, search attributes, write-back -------------------------------------------------

    def _set_search_attributes(self, prepared: PreparedFlow) -> None:
        p = self._params
        updates: list[SearchAttributeUpdate[Any]] = []
        for key, value in (
            (sa.TENANT_ID, prepared.tenant_id),
            (sa.WORKSPACE_ID, prepared.workspace_id),
            (sa.FLOW_ID, prepared.workflow_id),
            (sa.TRIGGERED_BY, p.triggered_by),
        ):
            if value:
                updates.append(key.value_set(value))
        if prepared.version is not None:
            updates.append(sa.FLOW_VERSION.value_set(prepared.version))
        if updates and self._params.search_attributes:
            workflow.upsert_search_attributes(updates)

    def _set_status(self, status: RunStatus) -> None:
        if status == self._status:
            return
        self._status = status
        self._status_dirty = True
        if self._params.search_attributes:
            workflow.upsert_search_attributes([sa.FLOW_STATUS.value_set(status)])

    def record_row(self, row: TaskRecord) -> None:
        self._pending_rows[row.orchestrator_task_id] = row
        if self.records_every_end:
            self._row_bytes[row.orchestrator_task_id] = json_size(row.outputs) + len(
                row.error or ""
            )
        view = self._task_view.setdefault(row.orchestrator_task_id, {"node_id": row.node_id})
        view["status"] = row.status
        if row.error:
            view["error"] = row.error
        if row.retry_count is not None:
            view["attempts"] = row.retry_count + 1

    def view(self, task_id: str, node_id: str, **fields: Any) -> None:
        self._task_view.setdefault(task_id, {"node_id": node_id}).update(fields)

    def maybe_flush(self) -> None:
        """Start a background write of buffered rows unless one is already under way."""
        if (self._pending_rows or self._status_dirty) and (
            self._flush_task is None or self._flush_task.done()
        ):
            self._flush_task = asyncio.create_task(self._flush_once())

    def _take_run_update(self, room: int = MAX_WRITE_BYTES, **run_fields: Any) -> RunUpdate:
        """The buffered rows (up to a batch, and under Temporal's payload limit) and the run
        status, as one write-back."""
        rows = list(self._pending_rows.values())[:_ROWS_PER_WRITE]
        if self.records_every_end:
            room -= json_size(run_fields.get("outputs"))
            for i, row in enumerate(rows):
                room -= self._row_bytes.get(row.orchestrator_task_id, 0)
                if room < 0 and i > 0:
                    rows = rows[:i]
                    break
        for row in rows:
            del self._pending_rows[row.orchestrator_task_id]
            self._row_bytes.pop(row.orchestrator_task_id, None)
        self._status_dirty = False
        return RunUpdate(
            run=RunRecord(
                orchestrator_run_id=workflow.info().workflow_id, status=self._status, **run_fields
            ),
            tenant_id=self._tenant_id,
            tasks=rows,
        )

    async def take_bookkeeping(self, room: int = MAX_WRITE_BYTES) -> RunUpdate:
        """Hand buffered write-back to an activity about to run anyway (after any in flight),
        as much as fits in `room` bytes beside that activity's own argument."""
        await self._flushed()
        return self._take_run_update(room)

    async def _flushed(self) -> None:
        """Wait for the background write in flight, and for any it chained after itself."""
        while self._flush_task is not None and not self._flush_task.done():
            await self._flush_task
        if self._flush_task is not None:
            await self._flush_task  # re-raises its failure

    async def _flush_once(self, **run_fields: Any) -> None:
        update = self._take_run_update(**run_fields)
        rows = update.tasks
        try:
            await _bookkeeping(
                RECORD_RUN,
                update,
                f"Record {len(rows)} node rows" if rows else "Record run status",
                result_type=str,
            )
        except ActivityError:
            if self.records_every_end:  # keep them for the run's last, stripped-down record
                for row in rows:
                    self._pending_rows.setdefault(row.orchestrator_task_id, row)
            raise
        # Rows buffered while this write was in flight (e.g. a wait that has just begun) must
        # not sit in memory until some later node ends: write them next.
        if (
            self.records_every_end
            and not self._finished
            and (self._pending_rows or self._status_dirty)
            and not run_fields
        ):
            self._flush_task = asyncio.create_task(self._flush_once())

    async def _flush_all(self, **final_run_fields: Any) -> None:
        await self._flushed()
        while len(self._pending_rows) > _ROWS_PER_WRITE or (
            self.records_every_end
            and self._pending_rows
            and sum(self._row_bytes.values()) + json_size(final_run_fields.get("outputs"))
            > MAX_WRITE_BYTES
        ):
            await self._flush_once()
        if self._pending_rows or self._status_dirty or final_run_fields:
            await self._flush_once(**final_run_fields)

    async def _finish(
        self, status: RunStatus, *, outputs: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        """The run's last record: its status, and a terminal row for every node it started."""
        self._set_status(status)
        self._error = error
        self._finished = True
        for task_id, view in self._task_view.items():
            if view.get("status") in ("pending", "running", "queued") and (
                status == "cancelled" or self.records_every_end
            ):
                self.record_row(
                    TaskRecord(
                        orchestrator_task_id=task_id,
                        node_id=view["node_id"],
                        status="cancelled",
                        error=None if status == "cancelled" else "the run ended before this node",
                        completed_at=workflow.now(),
                    )
                )
        if not self.records_every_end:
            await self._flush_all(outputs=outputs, error=error, completed_at=workflow.now())
            return
        for task in self._hitl.values():
            if task.status == "open":
                task.status = "cancelled"
        try:
            await self._flush_all(outputs=outputs, error=error, completed_at=workflow.now())
        except ActivityError as exc:
            await self._record_bare_end(exc, error)

    async def _record_bare_end(self, exc: ActivityError, error: str | None) -> None:
        """The database refused the run's rows: record its end without their payloads, then fail.

        What it refused is named in the error; outputs and inputs are left out, since they are
        the likeliest cause. Should even this be refused, the reconciler closes the rows.
        """
        message = f"the run's record could not be written: {_error_text(exc)}"
        if error and error not in message:
            message = f"{error}\n{message}"
        self._set_status("failed")
        self._error = message
        rows = [
            row.model_copy(update={"outputs": None, "inputs": None, "agent_config": None})
            for row in self._pending_rows.values()
        ]
        self._pending_rows.clear()
        self._status_dirty = False
        await _bookkeeping(
            RECORD_RUN,
            RunUpdate(
                run=RunRecord(
                    orchestrator_run_id=workflow.info().workflow_id,
                    status="failed",
                    error=message,
                    completed_at=workflow.now(),
                ),
                tenant_id=self._tenant_id,
                tasks=rows,
            ),
            "Record the run's end (rows refused)",
            result_type=str,
        )
        raise ApplicationError(message, type="BookkeepingFailed", non_retryable=True)

    # -- helpers for scopes ---------------------------------------------------------------------

    @property
    def definition(self) -> FlowDefinition:
        assert self._definition is not None
        return self._definition

    def references(self, node: Node) -> templates.References:
        if node.id not in self._refs:
            self._refs[node.id] = templates.references(node.data.config)
        return self._refs[node.id]

    def run_scope(self) -> dict[str, Any]:
        p = self._params
        return {
            "id": workflow.info().workflow_id,
            "tenant_id": self._tenant_id,
            "workspace_id": p.workspace_id,
            "triggered_by": p.triggered_by,
        }

    def check_drain(self) -> None:
        if self._drain:
            return
        info = workflow.info()
        limit = self._params.history_limit
        if info.is_continue_as_new_suggested() or (
            limit and info.get_current_history_length() > limit
        ):
            self._drain = True

    async def until_unpaused(self) -> None:
        if self._paused:
            self._set_status("paused")
            self.maybe_flush()
            await workflow.wait_condition(lambda: not self._paused)
            self._set_status("running")
            self.maybe_flush()

    def take_event(self, name: str) -> EventMessage | None:
        for i, message in enumerate(self._events):
            if message.name == name:
                return self._events.pop(i)
        return None


class _Scope:
    """One graph being run: the top level, or one iteration of a loop body."""

    def __init__(
        self,
        flow: FlowRun,
        *,
        parent: str | None,
        prefix: str,
        local: dict[str, Any],
        outer: dict[str, Any],
        states: dict[str, NodeState],
        top: bool = False,
    ) -> None:
        self.flow = flow
        self.defn = flow.definition
        self.parent = parent
        self.prefix = prefix
        self.local = local
        self.outer = outer
        self.states = states
        self.top = top
        self.nodes = self.defn.children(parent)
        self.ids = {n.id for n in self.nodes}
        for node in self.nodes:
            self.states.setdefault(node.id, NodeState())

    # -- scheduling -------------------------------------------------------------------------------

    def task_id(self, node: Node) -> str:
        return f"{self.prefix}{node.id}"

    def _incoming(self, node: Node) -> list[Edge]:
        return [e for e in self.defn.incoming.get(node.id, []) if e.source in self.ids]

    def _decide(self) -> list[Node]:
        """Nodes ready to run; nodes no branch leads to any more are marked skipped."""
        ready: list[Node] = []
        changed = True
        while changed:
            changed = False
            for node in self.nodes:
                state = self.states[node.id]
                if state.status != "pending":
                    continue
                incoming = self._incoming(node)
                if not incoming:
                    if node not in ready:
                        ready.append(node)
                    continue
                sources = [self.states[e.source] for e in incoming]
                if any(s.status not in _TERMINAL for s in sources):
                    continue
                if any(
                    e.sourceHandle in self.states[e.source].handles
                    and self.states[e.source].status in ("completed", "failed")
                    for e in incoming
                ):
                    if node not in ready:
                        ready.append(node)
                else:
                    state.status = "skipped"
                    self.flow.record_row(
                        TaskRecord(
                            orchestrator_task_id=self.task_id(node),
                            node_id=node.id,
                            status="skipped",
                            agent_type=node.type,
                        )
                    )
                    changed = True
        return ready

    async def run(self) -> None:
        running: dict[str, asyncio.Task[None]] = {}
        suspended = False
        try:
            while True:
                if not (self.top and self.flow._drain):
                    for node in self._decide():
                        if node.id not in running:
                            await self.flow.until_unpaused()
                            self.states[node.id].status = "running"
                            running[node.id] = asyncio.create_task(self._run_node(node))
                if not running:
                    break
                await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                for node_id, task in list(running.items()):
                    if not task.done():
                        continue
                    del running[node_id]
                    exc = task.exception()
                    if isinstance(exc, _Suspended):
                        self.states[node_id].status = "pending"
                        suspended = True
                    elif exc is not None:
                        raise exc
                if self.top:
                    self.flow.check_drain()
                self.flow.maybe_flush()
        except BaseException:
            await _cancel_all(running)
            raise
        # Only a draining top level leaves nodes pending: they resume after continue-as-new.
        if self.top and (suspended or any(s.status == "pending" for s in self.states.values())):
            raise _Suspended()

    # -- one node ------------------------------------------------------------------------------

    def scope_vars(self) -> dict[str, Any]:
        nodes = dict(self.outer)
        for node_id, state in self.states.items():
            # A failure routed to the error handle is visible too: its output is {"error": ...}.
            if state.status == "completed" or (state.status == "failed" and state.handles):
                output = state.output
                if state.error is not None and isinstance(output, dict):
                    output = templates.Tolerant(output)
                nodes[node_id] = {"output": output}
            elif state.status == "skipped" and self.flow.strict_templates:
                # Absent by the flow's own routing: its output reads as null.
                nodes[node_id] = templates.Tolerant()
        return {
            "input": self.flow._params.inputs,
            "nodes": nodes,
            "run": self.flow.run_scope(),
            **self.local,
        }

    async def _run_node(self, node: Node) -> None:
        state = self.states[node.id]
        task_id = self.task_id(node)
        started = workflow.now()
        self.flow.view(task_id, node.id, status="running", type=node.type, label=node.label)
        flow = self.flow
        try:
            try:
                output, handles = await self._execute(node, task_id, started)
            except ActivityError as exc:
                # A bookkeeping step of this node (e.g. opening its review task) was refused;
                # the run's own write-back failing is the run's failure, not this node's.
                if not flow.records_every_end or exc.activity_type == RECORD_RUN:
                    raise
                raise _NodeError(_error_text(exc)) from None
        except _Suspended:
            raise
        except asyncio.CancelledError:
            state.status = "cancelled"
            if flow.records_every_end:
                flow.record_row(
                    TaskRecord(
                        orchestrator_task_id=task_id,
                        node_id=node.id,
                        status="cancelled",
                        agent_type=node.type,
                        completed_at=workflow.now(),
                    )
                )
            else:
                flow.view(task_id, node.id, status="cancelled")
            raise
        except _NodeError as exc:
            message = str(exc)
            outgoing = [e.sourceHandle for e in self.defn.outgoing.get(node.id, [])]
            state.error = message
            if node.data.onError == "continue":
                state.status, state.output = "completed", {"error": message}
                state.handles = [h for h in outgoing if h != ERROR_HANDLE]
            elif node.data.onError == "route":
                state.status, state.output, state.handles = (
                    "failed",
                    {"error": message},
                    [ERROR_HANDLE],
                )
            else:
                state.status = "failed"
            self._record_end(node, task_id, started, "failed", state.output, error=message)
            if node.data.onError == "fail":
                raise NodeFailed(node, message) from None
            return
        outgoing = [e.sourceHandle for e in self.defn.outgoing.get(node.id, [])]
        state.status, state.output = "completed", output
        state.handles = (
            handles if handles is not None else [h for h in outgoing if h != ERROR_HANDLE]
        )
        self._record_end(node, task_id, started, "completed", output)

    def _record_end(
        self,
        node: Node,
        task_id: str,
        started: datetime,
        status: Literal["completed", "failed"],
        output: Any,
        error: str | None = None,
    ) -> None:
        """A node's final row. Agent activities write their own; the rest are buffered here."""
        if node.type in ACTIVITY_AGENT_TYPES:
            self.flow.view(task_id, node.id, status=status, **({"error": error} if error else {}))
            return
        self.flow.record_row(
            TaskRecord(
                orchestrator_task_id=task_id,
                node_id=node.id,
                status=status,
                agent_type=node.type,
                outputs=output,
                error=error,
                started_at=started,
                completed_at=workflow.now(),
                retry_count=0,
            )
        )

    async def _execute(
        self, node: Node, task_id: str, started: datetime
    ) -> tuple[Any, list[str | None] | None]:
        """Runs one node; returns its output and the handles it leaves by (None: all but error)."""
        runner: dict[str, Callable[[Node, str], Awaitable[tuple[Any, list[str | None] | None]]]] = {
            "start": self._start,
            "end": self._end,
            "transform": self._transform,
            "condition": self._condition,
            "wait": self._wait,
            "loop": self._loop,
            "workflow": self._child_flow,
            "hitl": self._hitl_node,
        }
        try:
            if node.type == "a2a":
                output = await self._agent(node, task_id)
                if isinstance(output, dict) and output.get("state") in A2A_NEEDS_INPUT_STATES:
                    return output, [INPUT_REQUIRED_HANDLE]
                outgoing = [e.sourceHandle for e in self.defn.outgoing.get(node.id, [])]
                return output, [
                    h for h in outgoing if h not in (ERROR_HANDLE, INPUT_REQUIRED_HANDLE)
                ]
            if node.type in ACTIVITY_AGENT_TYPES:
                return await self._agent(node, task_id), None
            result = await runner[node.type](node, task_id)
            if self.flow.records_every_end:
                _check_output_size(result[0])
            return result
        except (templates.TemplateError, rendered_config.ConfigValueError) as exc:
            raise _NodeError(str(exc)) from None
        except (_NodeError, _Suspended, NodeFailed, FailureError, NondeterminismError):
            raise
        except Exception as exc:
            # A value the node cannot use must fail the node, never the workflow task (which
            # Temporal would retry for ever, leaving the run wedged and its query unanswered).
            if not self.flow.records_every_end:
                raise
            raise _NodeError(f"{type(exc).__name__}: {exc}") from None

    def _render(
        self, node: Node, value: Any, field: str, extra: dict[str, Any] | None = None
    ) -> Any:
        scope = self.scope_vars()
        if extra:
            scope.update(extra)
        return templates.render(
            value, scope, strict=self.flow.strict_templates, field=field, host=self.flow.render_host
        )

    async def _start(self, node: Node, task_id: str) -> tuple[Any, None]:
        return self.flow._params.inputs, None

    async def _end(self, node: Node, task_id: str) -> tuple[Any, None]:
        return self._render(node, node.data.config.get("outputs", {}), "config.outputs"), None

    async def _transform(self, node: Node, task_id: str) -> tuple[Any, None]:
        return self._render(node, node.data.config.get("output"), "config.output"), None

    async def _condition(self, node: Node, task_id: str) -> tuple[Any, list[str | None]]:
        cfg = node.data.config
        for i, branch in enumerate(cfg.get("branches", [])):
            if _truthy(self._render(node, branch["when"], f"config.branches[{i}].when")):
                return {"handle": branch["handle"]}, [branch["handle"], None]
        default = cfg.get("default")
        return {"handle": default}, [default, None]

    async def _wait(self, node: Node, task_id: str) -> tuple[Any, list[str | None] | None]:
        cfg = self._render(node, node.data.config, "config")
        if self.flow.records_every_end:
            rendered_config.check_wait(cfg)
        now = workflow.now()
        if "event" in cfg:
            name = str(cfg["event"])
            deadline = None
            if cfg.get("timeoutSeconds") is not None:
                deadline = self.flow._wait_deadlines.setdefault(
                    task_id, now + timedelta(seconds=float(cfg["timeoutSeconds"]))
                )
            self._running_row(node, task_id, now)
            while True:
                message = self.flow.take_event(name)
                if message is not None:
                    self.flow._wait_deadlines.pop(task_id, None)
                    outgoing = [e.sourceHandle for e in self.defn.outgoing.get(node.id, [])]
                    handles = [h for h in outgoing if h not in ("timeout", ERROR_HANDLE)]
                    return {"event": name, "payload": message.payload, "timed_out": False}, handles
                remaining = (
                    None if deadline is None else (deadline - workflow.now()).total_seconds()
                )
                if remaining is not None and remaining <= 0:
                    self.flow._wait_deadlines.pop(task_id, None)
                    if "timeout" in [e.sourceHandle for e in self.defn.outgoing.get(node.id, [])]:
                        return {"event": name, "payload": None, "timed_out": True}, ["timeout"]
                    raise _NodeError(f"no {name!r} event within {cfg['timeoutSeconds']} seconds")
                await self._sleep_or_drain(
                    remaining, wake=lambda: any(m.name == name for m in self.flow._events)
                )
        if "until" in cfg:
            try:
                deadline = datetime.fromisoformat(str(cfg["until"]))
            except ValueError:
                raise _NodeError(
                    f"config.until: {cfg['until']!r} is not an ISO 8601 timestamp"
                ) from None
            if deadline.tzinfo is None:
                raise _NodeError(f"config.until: {cfg['until']!r} needs a time zone (e.g. Z)")
        else:
            seconds = cfg.get("seconds")
            if not isinstance(seconds, int | float) or seconds < 0:
                raise _NodeError(f"config.seconds: {seconds!r} is not a number of seconds")
            deadline = self.flow._wait_deadlines.setdefault(
                task_id, now + timedelta(seconds=seconds)
            )
        self._running_row(node, task_id, now)
        while (remaining := (deadline - workflow.now()).total_seconds()) > 0:
            await self._sleep_or_drain(remaining)
        self.flow._wait_deadlines.pop(task_id, None)
        return {"waited_until": deadline.isoformat()}, None

    async def _sleep_or_drain(
        self, seconds: float | None, wake: Callable[[], bool] | None = None
    ) -> None:
        """Sleep, but give way to continue-as-new (top level only) or to `wake`."""

        def woken() -> bool:
            return (self.top and self.flow._drain) or (wake is not None and wake())

        try:
            await workflow.wait_condition(woken, timeout=seconds)
        except TimeoutError:
            return
        if self.top and self.flow._drain:
            raise _Suspended()

    def _running_row(self, node: Node, task_id: str, started: datetime) -> None:
        self.flow.record_row(
            TaskRecord(
                orchestrator_task_id=task_id,
                node_id=node.id,
                status="running",
                agent_type=node.type,
                started_at=started,
            )
        )
        self.flow.maybe_flush()

    async def _loop(self, node: Node, task_id: str) -> tuple[Any, None]:
        cfg = node.data.config
        if self.flow.records_every_end:  # a row while it runs, like every other lasting node
            self._running_row(node, task_id, workflow.now())
        body = self.defn.children(node.id)
        if "items" in cfg:
            items = self._render(node, cfg["items"], "config.items")
            if not isinstance(items, list):
                raise _NodeError(f"config.items gave {type(items).__name__}, not a list")
            limit = self._render(node, cfg.get("maxConcurrency", 1), "config.maxConcurrency")
            if not isinstance(limit, int) or limit < 1:
                raise _NodeError(f"config.maxConcurrency gave {limit!r}, not a positive integer")
            return await self._loop_items(node, task_id, items, limit, body), None
        results: list[Any] = []
        for index in range(int(cfg["maxIterations"])):
            if not _truthy(self._render(node, cfg["while"], "config.while", {"index": index})):
                break
            await self.flow.until_unpaused()
            results.append(await self._iteration(node, task_id, index, None, body))
        return results, None

    async def _loop_items(
        self, node: Node, task_id: str, items: list[Any], limit: int, body: list[Node]
    ) -> list[Any]:
        keep = self.top  # only top-level loops survive continue-as-new half done
        progress = self.flow._loops.setdefault(task_id, LoopProgress()) if keep else LoopProgress()
        progress.total = len(items)
        todo = [i for i in range(len(items)) if i not in progress.results]
        running: dict[int, asyncio.Task[Any]] = {}
        try:
            while todo or running:
                while todo and len(running) < limit and not (keep and self.flow._drain):
                    await self.flow.until_unpaused()
                    index = todo.pop(0)
                    running[index] = asyncio.create_task(
                        self._iteration(node, task_id, index, items[index], body)
                    )
                if not running:
                    break
                await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                for index, task in list(running.items()):
                    if task.done():
                        del running[index]
                        progress.results[index] = task.result()
                if keep:
                    self.flow.check_drain()
                self.flow.maybe_flush()
        except BaseException:
            await _cancel_all(running)
            raise
        if todo:
            raise _Suspended()
        self.flow._loops.pop(task_id, None)
        return [progress.results[i] for i in range(len(items))]

    async def _iteration(
        self, loop: Node, task_id: str, index: int, item: Any, body: list[Node]
    ) -> Any:
        outer = self.scope_vars()["nodes"]
        states: dict[str, NodeState] = {}
        scope = _Scope(
            self.flow,
            parent=loop.id,
            prefix=f"{task_id}[{index}].",
            local={**self.local, "item": item, "index": index},
            outer=outer,
            states=states,
        )
        try:
            await scope.run()
        except NodeFailed as failure:
            raise _NodeError(f"iteration {index}: {failure}") from None
        ends = [n for n in body if n.type == "end" and states[n.id].status == "completed"]
        sinks = ends or [
            n
            for n in body
            if not [e for e in self.defn.outgoing.get(n.id, []) if e.target in scope.ids]
        ]
        values = [states[n.id].output for n in sinks if states[n.id].status == "completed"]
        if len(sinks) == 1:
            return values[0] if values else None
        return {n.id: states[n.id].output for n in sinks}

    async def _hitl_node(self, node: Node, task_id: str) -> tuple[Any, list[str | None]]:
        flow = self.flow
        task = next((t for t in flow._hitl.values() if t.task_id == task_id), None)
        if task is None:  # first visit (after continue-as-new the task already exists)
            cfg = self._render(node, node.data.config, "config")
            if flow.records_every_end:
                rendered_config.check_review(cfg)
            now = workflow.now()
            deadline = (
                now + timedelta(seconds=float(cfg["deadlineSeconds"]))
                if cfg.get("deadlineSeconds")
                else None
            )
            task = HitlTaskState(
                id=str(workflow.uuid4()),
                task_id=task_id,
                node_id=node.id,
                title=str(cfg["title"]),
                decision_type=cfg["decisionType"],
                options=option_values(cfg.get("options")),
                form_schema=cfg.get("formSchema"),
                assignee_id=cfg.get("assigneeId"),
                assignee_role=cfg.get("assigneeRole"),
                required_approvals=int(cfg.get("requiredApprovals", 1)),
                allow_self_approval=bool(cfg.get("allowSelfApproval", True)),
                created_at=now,
                deadline=deadline,
                escalation=list(cfg.get("escalation") or []),
            )
            visible = self.scope_vars()["nodes"]
            refs = flow.references(node)
            context = cfg.get("context") or {
                "input": flow._params.inputs,
                "nodes": {k: v for k, v in visible.items() if k in refs.nodes},
            }
            # Since this patch, opening the task also writes the run's new status and the
            # buffered rows: parking a run costs one activity and no later wake-up.
            opening = HitlOpen(
                hitl_task_id=task.id,
                run_row_id=flow._run_row_id or "",
                tenant_id=flow._tenant_id,
                workspace_id=flow._params.workspace_id,
                task_id=task_id,
                node_id=node.id,
                title=task.title,
                description=cfg.get("description"),
                context=context,
                decision_type=task.decision_type,
                decision_options=cfg.get("options")
                if task.decision_type == "choice"
                else cfg.get("formSchema"),
                assignee_id=task.assignee_id,
                assignee_role=task.assignee_role,
                priority=cfg.get("priority"),
                deadline=deadline,
                escalation_path=task.escalation or None,
                started_at=now,
            )
            room = MAX_WRITE_BYTES
            if flow.records_every_end:
                room -= _check_payload(opening, "the review task (title, context, options)")
            if workflow.patched(_PATCH_HITL_OPEN_BOOKKEEPING):
                flow._set_status("waiting_hitl")
                opening.run_update = await flow.take_bookkeeping(room)
            await _bookkeeping(HITL_OPEN, opening, f"Open review: {task.title[:60]}")
            flow._hitl[task.id] = task
        flow.view(task_id, node.id, status="running", hitl_task_id=task.id)
        flow._set_status("waiting_hitl")
        flow.maybe_flush()
        try:
            while task.outcome is None:
                due = [
                    task.created_at + timedelta(seconds=float(step["afterSeconds"]))
                    for step in task.escalation[task.escalated : task.escalated + 1]
                ]
                if task.deadline is not None:
                    due.append(task.deadline)
                remaining = (min(due) - workflow.now()).total_seconds() if due else None
                if remaining is None or remaining > 0:
                    await self._sleep_or_drain(remaining, wake=lambda: task.outcome is not None)
                    continue
                if task.escalated < len(task.escalation) and (
                    task.deadline is None
                    or task.created_at
                    + timedelta(seconds=float(task.escalation[task.escalated]["afterSeconds"]))
                    < task.deadline
                ):
                    await self._escalate(task)
                    continue
                if workflow.patched(_PATCH_DEADLINE_FIRST):
                    return await self._expire(node, task)
                await workflow.wait_condition(workflow.all_handlers_finished)
                if task.outcome is not None:  # a decision landed just before the deadline
                    break
                return await self._expire(node, task, legacy=True)
        except ActivityError:
            # The task cannot go on (say, an escalation to a user who does not exist): close
            # it, so the inbox does not offer a decision nobody will wait for.
            if flow.records_every_end and task.status == "open":
                task.status = "cancelled"
                await _bookkeeping(
                    HITL_CLOSE,
                    HitlClose(
                        hitl_task_id=task.id,
                        status="cancelled",
                        task_id=task.task_id,
                        run_row_id=flow._run_row_id or "",
                        tenant_id=flow._tenant_id,
                        node_id=node.id,
                    ),
                    f"Cancel {task.title[:40]}",
                )
            raise
        finally:
            if not any(t.status == "open" for t in flow._hitl.values()):
                flow._set_status("running")
        return task.outcome, [task.outcome["handle"], None]

    async def _escalate(self, task: HitlTaskState) -> None:
        step = task.escalation[task.escalated]
        reassigned = await _bookkeeping(
            HITL_ESCALATE,
            EscalationRecord(
                escalation_id=str(workflow.uuid4()),
                hitl_task_id=task.id,
                tenant_id=self.flow._tenant_id,
                to_user=step.get("toUser"),
                to_role=step.get("toRole"),
                reason=f"no decision within {step['afterSeconds']} seconds",
                node_id=task.node_id,
                step=task.escalated,
            ),
            f"Escalate {task.title[:40]} to {step.get('toRole') or step.get('toUser')}",
        )
        if reassigned is not False:  # False: a decision closed the task first (None: older)
            # Exactly the step's target may decide from now on; the earlier assignee no longer.
            task.assignee_id, task.assignee_role = step.get("toUser"), step.get("toRole")
        task.escalated += 1

    async def _expire(
        self, node: Node, task: HitlTaskState, legacy: bool = False
    ) -> tuple[Any, list[str | None]]:
        task.status = "expired"  # from here on, validators refuse new decisions
        closing = HitlClose(
            hitl_task_id=task.id,
            status="expired",
            task_id=task.task_id,
            run_row_id=self.flow._run_row_id or "",
            tenant_id=self.flow._tenant_id,
            node_id=node.id,
        )
        if legacy:
            await _bookkeeping(HITL_CLOSE, closing, f"Expire {task.title[:40]}")
        else:
            after = await _bookkeeping(HITL_CLOSE, closing, f"Expire {task.title[:40]}")
            if after == "completed":
                # A decision was stored just before the deadline; its handler is finishing
                # and sets the outcome the rows already show.
                await workflow.wait_condition(
                    lambda: task.outcome is not None or workflow.all_handlers_finished()
                )
                if task.outcome is not None:
                    return task.outcome, [task.outcome["handle"], None]
        if "expired" in [e.sourceHandle for e in self.defn.outgoing.get(node.id, [])]:
            return {"decision": None, "decided_by": None, "comments": None, "handle": "expired"}, [
                "expired",
                None,
            ]
        deadline = task.deadline.isoformat() if task.deadline else "none"
        raise _NodeError(f"no decision before the deadline ({deadline})")

    async def _child_flow(self, node: Node, task_id: str) -> tuple[Any, None]:
        cfg = self._render(node, node.data.config, "config")
        if self.flow.records_every_end:
            rendered_config.check_sub_flow(cfg)
        p = self.flow._params
        child = FlowRunInput(
            workflow_id=str(cfg["workflowId"]),
            version=cfg.get("version"),
            inputs=cfg.get("inputs") or {},
            tenant_id=self.flow._tenant_id,
            workspace_id=p.workspace_id,
            triggered_by=p.triggered_by,
            tags=p.tags,
            parent_run_id=self.flow._run_row_id,
            search_attributes=p.search_attributes,
        )
        if self.flow.records_every_end:
            _check_payload(child, "the sub-flow's start (its inputs)")
        self._running_row(node, task_id, workflow.now())
        try:
            result = await workflow.execute_child_workflow(
                "FlowRun",
                child,
                id=f"{workflow.info().workflow_id}/{task_id}",
                result_type=FlowResult,
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                static_summary=node.label,
            )
        except ChildWorkflowError as exc:
            if isinstance(exc.cause, TemporalCancelledError):
                # Cancelled with this run, or on its own (an operator cancelling the child):
                # only the first is this run's cancellation; the second fails the node.
                if not self.flow.records_every_end or _cancelling():
                    raise asyncio.CancelledError() from None
                raise _NodeError("the sub-flow was cancelled") from None
            raise _NodeError(f"sub-flow failed: {_error_text(exc)}") from None
        return result.outputs, None

    async def _agent(self, node: Node, task_id: str) -> Any:
        refs = self.flow.references(node)
        visible = self.scope_vars()
        scope = {k: v for k, v in visible.items() if k != "nodes"}
        scope["nodes"] = {k: v for k, v in visible["nodes"].items() if k in refs.nodes}
        retry = node.data.retry
        policy = RetryPolicy(
            maximum_attempts=(retry.maxAttempts if retry and retry.maxAttempts else 3),
            initial_interval=timedelta(
                seconds=(
                    retry.initialIntervalSeconds if retry and retry.initialIntervalSeconds else 1
                )
            ),
            backoff_coefficient=(
                retry.backoffCoefficient if retry and retry.backoffCoefficient else 2.0
            ),
            maximum_interval=timedelta(seconds=retry.maxIntervalSeconds)
            if retry and retry.maxIntervalSeconds
            else None,
            non_retryable_error_types=list(retry.nonRetryableErrors) if retry else None,
        )
        timeout = (
            timedelta(seconds=node.data.timeoutSeconds)
            if node.data.timeoutSeconds
            else _DEFAULT_AGENT_TIMEOUT
        )
        agent_task = AgentTask(
            run_row_id=self.flow._run_row_id or "",
            tenant_id=self.flow._tenant_id,
            task_id=task_id,
            node_id=node.id,
            node_type=node.type,
            label=node.label,
            config=node.data.config,
            scope=scope,
            input_schema=node.data.inputSchema,
            output_schema=node.data.outputSchema,
            strict_templates=self.flow.strict_templates,
            tolerant_nodes=templates.tolerant_nodes(scope),
            outgoing_handles=sorted(
                {e.sourceHandle for e in self.defn.outgoing.get(node.id, []) if e.sourceHandle}
            ),
        )
        if self.flow.records_every_end:
            try:
                _check_payload(agent_task, "the node's input (its config and what it reads)")
            except _NodeError as exc:  # its activity never runs to write the row: write it here
                self._agent_failed_row(node, task_id, str(exc), started_at=workflow.now())
                raise
        try:
            return await workflow.execute_activity(
                f"{AGENT_ACTIVITY_PREFIX}{node.type}",
                agent_task,
                activity_id=task_id,
                start_to_close_timeout=timeout,
                heartbeat_timeout=min(_AGENT_HEARTBEAT_TIMEOUT, timeout),
                retry_policy=policy,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=node.label,
            )
        except ActivityError as exc:
            if isinstance(exc.cause, TemporalCancelledError):
                raise asyncio.CancelledError() from None
            message = _error_text(exc)
            # A timed-out attempt could not record its own end: record it here.
            self._agent_failed_row(node, task_id, message)
            raise _NodeError(message) from None

    def _agent_failed_row(
        self, node: Node, task_id: str, message: str, started_at: datetime | None = None
    ) -> None:
        """An agent node's failed row, where its activity could not write it."""
        self.flow.record_row(
            TaskRecord(
                orchestrator_task_id=task_id,
                node_id=node.id,
                status="failed",
                agent_type=node.type,
                error=message,
                started_at=started_at,
                completed_at=workflow.now(),
            )
        )


def _cancelling() -> bool:
    """Whether the current node task is being cancelled (by its run), not merely told so."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _check_payload(argument: Any, what: str, limit: int = MAX_WRITE_BYTES) -> int:
    """The size of an activity's or sub-flow's argument, which must fit in one Temporal payload
    (else the workflow task fails for ever); a node error naming `what` when it does not."""
    size = model_size(argument)
    if size > limit:
        raise _NodeError(
            f"{what} is {size} bytes, over the {limit} one step may carry; "
            "pass it less (pick the fields it needs)"
        )
    return size


def _check_output_size(value: Any, what: str = "the node's output") -> None:
    """An output over the cap would make Temporal refuse the workflow task for ever."""
    size = json_size(value)
    if size > MAX_OUTPUT_BYTES:
        raise _NodeError(
            f"{what} is {size} bytes, over the {MAX_OUTPUT_BYTES} a node may return; "
            "make it smaller (reduce each loop item, pick the fields you need)"
        )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def _decision_handle(task: HitlTaskState, req: HitlDecisionRequest) -> tuple[str, bool]:
    """The handle a decision leads to, and whether it closes the task (quorum reached)."""
    d = req.decision
    if task.decision_type == "approval":
        if d["approved"] is False:
            return "rejected", True
        return "approved", len(task.approvals) + 1 >= task.required_approvals
    if task.decision_type == "choice":
        return str(d["choice"]), True
    return "submitted", True
