"""Everything one run knows: its request, status, node states, review tasks and write-back.

The one object the handlers, the scheduler and the node runners share; each
reads and changes the run only through it. What must survive continue-as-new
is exactly what `checkpoint()` carries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import patches, run_details
from workflows.bookkeeping import bookkeeping, landing
from workflows.failures import error_text
from workflows.render_host import WorkflowRenderHost
from workflows.run_details import FlowIdentity
from workflows.write_back import WriteBack

with workflow.unsafe.imports_passed_through():
    from flow_language import templates
    from flow_language.definition import FlowDefinition, Node
    from flow_language.review_rules import HitlTaskState
    from workflows import search_attributes as sa
    from workflows.contract import (
        LOAD_REUSED_OUTPUTS,
        RECORD_RUN,
        Checkpoint,
        EventMessage,
        FlowRunInput,
        LoopProgress,
        NodeState,
        PreparedFlow,
        ReusedPage,
        ReusedQuery,
        ReusedTask,
        RunRecord,
        RunStatus,
        RunUpdate,
        TaskRecord,
        TaskStatus,
    )
    from workflows.contract import error_codes as codes

#: Row statuses of a node that has not ended.
_UNFINISHED = ("pending", "running", "queued")


class RunState:
    """One run's state, rebuilt from its checkpoint after continue-as-new."""

    def __init__(self, params: FlowRunInput) -> None:
        cp = params.checkpoint
        self.params = params
        self.status: RunStatus = "running" if cp else "queued"
        self.paused = cp.paused if cp else False
        self.events: list[EventMessage] = list(cp.events) if cp else []
        #: top-level node states (a loop iteration keeps its own)
        self.nodes: dict[str, NodeState] = dict(cp.nodes) if cp else {}
        self.loops: dict[str, LoopProgress] = dict(cp.loops) if cp else {}
        self.wait_deadlines: dict[str, datetime] = dict(cp.wait_deadlines) if cp else {}
        self.reviews: dict[str, HitlTaskState] = dict(cp.hitl) if cp else {}
        #: how many `wait` nodes wait on each event name now (the `WaitingEvents` attribute)
        self.waiting_events: dict[str, int] = {}
        #: Review tasks whose `hitl_open` is under way: their inbox row may already exist.
        self.opening_reviews: set[str] = set()
        #: how often the status changed (a decision that wrote it checks nothing came between)
        self.status_changes = 0
        self.continued = cp.continued if cp else 0
        self.run_row_id: str | None = cp.run_row_id if cp else None
        self.tenant_id = cp.tenant_id if cp else params.tenant_id
        #: what the `status` query shows of each node execution, by task id
        self.task_view: dict[str, dict[str, Any]] = {}
        #: set once continue-as-new is due: top-level scopes start nothing new
        self.draining = False
        self.strict_templates = False
        self.records_every_end = False
        self.agents_carry_rows = False
        #: a retry taking the retried run's recorded outputs (`patches.REUSE_RETRIED_OUTPUTS`)
        self.reuses = False
        #: those outputs, by task id, once loaded (None: this run reuses nothing)
        self.reused: dict[str, ReusedTask] | None = None
        self.finished = False
        self.error: str | None = None
        self.render_host = WorkflowRenderHost()
        #: the flow, as the run's details in the Temporal UI name it
        self.flow = FlowIdentity(
            name=cp.flow_name if cp else None,
            flow_id=cp.workflow_id if cp else params.workflow_id,
            version=cp.version if cp else params.version,
            tenant_id=self.tenant_id,
            triggered_by=params.triggered_by,
        )
        self._details = ""
        self.write_back = WriteBack(self)
        self._definition: FlowDefinition | None = None
        self._refs: dict[str, templates.References] = {}

    # -- the definition and what templates may read --------------------------------------------

    @property
    def definition(self) -> FlowDefinition:
        """The validated definition; set once the run is prepared, never read before."""
        assert self._definition is not None
        return self._definition

    @definition.setter
    def definition(self, value: FlowDefinition) -> None:
        self._definition = value

    def references(self, node: Node) -> templates.References:
        """What a node's config reads, worked out once per node and run."""
        if node.id not in self._refs:
            self._refs[node.id] = templates.references(node.data.config)
        return self._refs[node.id]

    def run_scope(self) -> dict[str, Any]:
        """The `run` templates read."""
        p = self.params
        return {
            "id": workflow.info().workflow_id,
            "tenant_id": self.tenant_id,
            "workspace_id": p.workspace_id,
            "triggered_by": p.triggered_by,
        }

    async def load_reused(self, run_row_id: str) -> None:
        """The completed node outputs of the retried run `run_row_id`, page by page: read by
        an activity, so a replay (or the next run after continue-as-new) uses the same ones.
        """
        reused: dict[str, ReusedTask] = {}
        after: str | None = ""
        while after is not None:
            page: ReusedPage = await bookkeeping(
                LOAD_REUSED_OUTPUTS,
                ReusedQuery(run_row_id=run_row_id, tenant_id=self.tenant_id, after=after),
                "Load the outputs this retry reuses",
                result_type=ReusedPage,
            )
            reused.update((task.task_id, task) for task in page.tasks)
            after = page.after
        self.reused = reused

    def refresh_details(self) -> None:
        """Show what the run does now in the Temporal UI's current details (on change only)."""
        text = run_details.describe(
            flow=self.flow,
            status=self.status,
            paused=self.paused,
            definition=self._definition,
            task_view=self.task_view,
            reviews=self.reviews,
            wait_deadlines=self.wait_deadlines,
            run_id=workflow.info().workflow_id,
        )
        if text != self._details:
            self._details = text
            workflow.set_current_details(text)

    # -- status and search attributes -----------------------------------------------------------

    def set_search_attributes(
        self, prepared: PreparedFlow, status: RunStatus | None = None
    ) -> None:
        """The run's tenant, workspace, flow, version and who started it (and its `status`, if
        given), for finding runs in Temporal (when the server has the attributes registered).
        """
        p = self.params
        updates: list[SearchAttributeUpdate[Any]] = []
        for key, value in (
            (sa.TENANT_ID, prepared.tenant_id),
            (sa.WORKSPACE_ID, prepared.workspace_id),
            (sa.FLOW_ID, prepared.workflow_id),
            (sa.TRIGGERED_BY, p.triggered_by),
            (
                sa.FLOW_NAME,
                sa.keyword(prepared.flow_name)
                if patches.patched(patches.FLOW_NAME_ATTRIBUTE)
                else None,
            ),
        ):
            if value:
                updates.append(key.value_set(value))
        if prepared.version is not None:
            updates.append(sa.FLOW_VERSION.value_set(prepared.version))
        if status is not None:
            updates.append(sa.FLOW_STATUS.value_set(status))
        if updates and p.search_attributes:
            workflow.upsert_search_attributes(updates)

    def set_status(self, status: RunStatus, written: bool = False, announce: bool = True) -> None:
        """The run's status, written back with the next flush (unless an activity has just
        `written` it) and shown as a search attribute (unless already `announce`d with others).
        """
        if status == self.status:
            return
        self.status = status
        self.status_changes += 1
        if not written:
            self.write_back.status_changed()
        if announce and self.params.search_attributes:
            workflow.upsert_search_attributes([sa.FLOW_STATUS.value_set(status)])

    # -- rows ------------------------------------------------------------------------------------

    def record_row(self, row: TaskRecord) -> None:
        """Buffer a node execution's row and show it in the `status` query."""
        self.write_back.add(row)
        view = self.task_view.setdefault(row.orchestrator_task_id, {"node_id": row.node_id})
        view["status"] = row.status
        if row.error:
            view["error"] = row.error
        if row.retry_count is not None:
            view["attempts"] = row.retry_count + 1

    def record_node(self, task_id: str, node: Node, status: TaskStatus, **fields: Any) -> None:
        """`record_row` for a node of this run's definition."""
        self.record_row(
            TaskRecord(
                orchestrator_task_id=task_id,
                node_id=node.id,
                status=status,
                agent_type=node.type,
                **fields,
            )
        )

    def view(self, task_id: str, node_id: str, **fields: Any) -> None:
        """Update what the `status` query shows of one node execution, without writing a row."""
        self.task_view.setdefault(task_id, {"node_id": node_id}).update(fields)

    def maybe_flush(self) -> None:
        """Start a background write of what is buffered, unless one is under way."""
        self.write_back.maybe_flush()

    # -- pause, drain, events ---------------------------------------------------------------------

    def check_drain(self) -> None:
        """Start draining for continue-as-new once the history is long enough."""
        if self.draining:
            return
        info = workflow.info()
        limit = self.params.history_limit
        if info.is_continue_as_new_suggested() or (
            limit and info.get_current_history_length() > limit
        ):
            self.draining = True

    async def until_unpaused(self) -> None:
        """Return at once unless paused; while paused the run's status says so."""
        if self.paused:
            self.set_status("paused")
            self.maybe_flush()
            await workflow.wait_condition(lambda: not self.paused)
            self.set_status("running")
            self.maybe_flush()

    def take_event(self, name: str) -> EventMessage | None:
        """The earliest `event` signal of that name not yet taken (removed from the queue),
        or None.
        """
        for i, message in enumerate(self.events):
            if message.name == name:
                return self.events.pop(i)
        return None

    def checkpoint(self, base: Checkpoint) -> Checkpoint:
        """What the next Temporal run of this flow run starts from."""
        return base.model_copy(
            update={
                "nodes": self.nodes,
                "loops": self.loops,
                "wait_deadlines": self.wait_deadlines,
                "events": self.events,
                "hitl": self.reviews,
                "paused": self.paused,
                "continued": self.continued + 1,
            }
        )

    # -- the end ---------------------------------------------------------------------------------

    async def finish(
        self,
        status: RunStatus,
        *,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
        error_step: str | None = None,
        error_code: str | None = None,
    ) -> None:
        """The run's last record: its status, a terminal row for every node it started, and
        for a failed or cancelled run the node that failed it and the failure's class (they
        ride on the last write's argument: no command of the run changes).
        """
        if status == "cancelled":
            error_code = error_code or codes.CANCELLED
        ending = {"error_step": error_step, "error_code": error_code}
        self.set_status(status)
        self.error = error
        self.finished = True
        for task_id, view in self.task_view.items():
            if view.get("status") in _UNFINISHED and (
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
            await self.write_back.flush_all(
                outputs=outputs, error=error, completed_at=workflow.now(), **ending
            )
            return
        for task in self.reviews.values():
            if task.status == "open":
                task.status = "cancelled"
        self.refresh_details()
        final = self.write_back.flush_all(
            outputs=outputs, error=error, completed_at=workflow.now(), **ending
        )
        try:
            if patches.patched(patches.ENDS_AS_RECORDED):
                # A cancellation arriving now must not stop the last record half-way (a
                # background write in flight, then this one): it lands, then the run ends
                # as it says.
                await landing(final)
            else:
                await final
        except ActivityError as exc:
            await self._record_bare_end(exc, error, error_step)

    async def _record_bare_end(
        self, exc: ActivityError, error: str | None, error_step: str | None
    ) -> None:
        """The database refused the run's rows: record its end without their payloads, then fail.

        What it refused is named in the error; outputs and inputs are left out, since they are
        the likeliest cause. Should even this be refused, the reconciler closes the rows.
        """
        message = f"the run's record could not be written: {error_text(exc)}"
        if error and error not in message:
            message = f"{error}\n{message}"
        self.set_status("failed")
        self.error = message
        await self.record_end_only(
            "failed",
            message,
            tasks=self.write_back.take_stripped(),
            error_step=error_step,
            error_code=codes.BOOKKEEPING_FAILED,
        )
        raise ApplicationError(message, type="BookkeepingFailed", non_retryable=True)

    async def record_end_only(
        self,
        status: RunStatus,
        error: str,
        *,
        tasks: list[TaskRecord] | None = None,
        refused_start: bool = False,
        error_step: str | None = None,
        error_code: str | None = None,
    ) -> None:
        """One write of the run's end, outside the buffer: for a run refused at its start
        (`refused_start`), or whose buffered rows the database refused.
        """
        now = workflow.now()
        await bookkeeping(
            RECORD_RUN,
            RunUpdate(
                run=RunRecord(
                    orchestrator_run_id=workflow.info().workflow_id,
                    status=status,
                    error=error,
                    started_at=now if refused_start else None,
                    completed_at=now,
                    error_step=error_step,
                    error_code=error_code,
                ),
                tenant_id=None if refused_start else self.tenant_id,
                tasks=tasks or [],
                refused_start=refused_start,
            ),
            "Record the refused run" if refused_start else "Record the run's end (rows refused)",
            result_type=str,
        )
