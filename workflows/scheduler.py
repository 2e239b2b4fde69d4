"""The scheduler: which nodes of a graph run, when, and what each one's end means.

A `Scope` runs one graph (the top level, or one iteration of a loop body): it
starts every node whose incoming branches are all settled and at least one of
them leads to it, skips nodes no branch leads to any more, and joins. Each node
runs through the same lifecycle (running row, run, onError, final row); what a
node of a given type does is its runner's business, found in the table of
`NodeRunner`s the scope is given, so this module knows no node type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

from workflows.failures import (
    NodeError,
    NodeFailed,
    Suspended,
    check_output_size,
    error_text,
    failure_code,
)
from workflows.lineage import Lineage
from workflows.node_telemetry import NodeTelemetry
from workflows.run_state import RunState
from workflows.template_scope import TemplateScope

with workflow.unsafe.imports_passed_through():
    from flow_language import rendered_config, templates
    from flow_language.definition import ERROR_HANDLE, Edge, Node
    from workflows.contract import NODE_ENDED, RECORD_RUN, NodeState
    from workflows.contract import error_codes as codes

#: What a runner returns: the node's output, and the handles it leaves by (None: every
#: outgoing handle but the error handle).
NodeResult = tuple[Any, list[str | None] | None]


@dataclass(frozen=True)
class NodeRunner:
    """How the scheduler runs one node type."""

    run: Callable[[Scope, Node, str], Awaitable[NodeResult]]
    #: its activity writes the node's rows itself (agents); the scheduler only shows them
    writes_own_row: bool = False
    #: it ends in the workflow task that starts it (start, end, transform, condition)
    instant: bool = False
    #: its first activity takes every buffered row and the run's status (opening a review)
    takes_bookkeeping: bool = False
    #: the handles a recorded output leaves by, when a retry reuses it (None: all but the
    #: error handle); raises ValueError for an output it cannot read (the node then runs)
    reused_handles: Callable[[Scope, Node, Any], list[str | None] | None] | None = None


async def _nothing_left() -> None:
    """The task of a node a retry took the recorded output of: it has nothing to do."""


async def cancel_all(tasks: Mapping[Any, asyncio.Task[Any]]) -> None:
    """Cancel still-running node tasks and wait until each has stopped (and recorded so)."""
    for task in tasks.values():
        task.cancel()
    if tasks:
        await workflow.wait(list(tasks.values()))


class Scope(TemplateScope):
    """One graph being run: the top level, or one iteration of a loop body."""

    def __init__(
        self,
        run: RunState,
        runners: Mapping[str, NodeRunner],
        *,
        parent: str | None,
        prefix: str,
        local: dict[str, Any],
        outer: dict[str, Any],
        states: dict[str, NodeState],
        top: bool = False,
    ) -> None:
        self.run = run
        self.runners = runners
        self.defn = run.definition
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
        self.lineage = Lineage(run.reused, self.defn, self.states, self.ids)

    def child(self, parent: str, prefix: str, local: dict[str, Any]) -> Scope:
        """The scope of one iteration of loop `parent`: it sees this scope's nodes."""
        inner = Scope(
            self.run,
            self.runners,
            parent=parent,
            prefix=prefix,
            local={**self.local, **local},
            outer=self.scope_vars()["nodes"],
            states={},
        )
        as_recorded = self.lineage.as_recorded(self.defn.by_id[parent])
        inner.lineage = Lineage(
            self.run.reused, self.defn, inner.states, inner.ids, tainted=not as_recorded
        )
        return inner

    # -- scheduling -------------------------------------------------------------------------------

    def task_id(self, node: Node) -> str:
        """The node's task ID: its id, prefixed by the loop iterations it runs in (`loop[2].`), so
        each execution has its own row.
        """
        return f"{self.prefix}{node.id}"

    def _instant(self, node_id: str) -> bool:
        runner = self.runners.get(self.defn.by_id[node_id].type)
        return (runner is not None and runner.instant) or self.states[node_id].reused

    def _takes_bookkeeping(self, node: Node) -> bool:
        runner = self.runners.get(node.type)
        return runner is not None and runner.takes_bookkeeping

    def _incoming(self, node: Node) -> list[Edge]:
        return [e for e in self.defn.incoming.get(node.id, []) if e.source in self.ids]

    def ready_nodes(self) -> list[Node]:
        """Nodes ready to run; nodes no branch leads to any more are marked skipped."""
        ready: dict[str, Node] = {}  # by id, in the graph's order (nodes compare slowly)
        changed = True
        while changed:
            changed = False
            for node in self.nodes:
                state = self.states[node.id]
                if state.status != "pending":
                    continue
                incoming = self._incoming(node)
                if not incoming:
                    ready.setdefault(node.id, node)
                    continue
                sources = [self.states[e.source] for e in incoming]
                if any(s.status not in NODE_ENDED for s in sources):
                    continue
                if any(
                    e.sourceHandle in self.states[e.source].handles
                    and self.states[e.source].status in ("completed", "failed")
                    for e in incoming
                ):
                    ready.setdefault(node.id, node)
                else:
                    state.status = "skipped"
                    self.run.record_node(self.task_id(node), node, "skipped")
                    changed = True
        return list(ready.values())

    async def run_all(self) -> None:
        """Run the graph to its end; a draining top level raises Suspended instead."""
        running: dict[str, asyncio.Task[None]] = {}
        suspended = False
        try:
            while True:
                started: list[Node] = []
                if not (self.top and self.run.draining):
                    for node in self.ready_nodes():
                        if node.id not in running:
                            await self.run.until_unpaused()
                            self.states[node.id].status = "running"
                            if self._reuse(node):
                                running[node.id] = asyncio.create_task(_nothing_left())
                                continue
                            # Shown as running at once (the details are refreshed below,
                            # before the node's own task has begun).
                            self.run.view(
                                self.task_id(node),
                                node.id,
                                status="running",
                                type=node.type,
                                label=node.label,
                            )
                            running[node.id] = asyncio.create_task(self._run_node(node))
                            started.append(node)
                if not running:
                    break
                if self.run.agents_carry_rows and not (
                    any(self._instant(node_id) for node_id in running)
                    or any(self._takes_bookkeeping(node) for node in started)
                ):
                    # Only once every running node lasts: an agent just started takes the
                    # finished rows first (this write then has only what it left), a review
                    # just started takes everything, and an instant node may yet lead to
                    # either. With nothing running, the caller's write (the run's end, the
                    # loop's) takes them instead.
                    self.run.maybe_flush()
                self.run.refresh_details()
                await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                for node_id, task in list(running.items()):
                    if not task.done():
                        continue
                    del running[node_id]
                    exc = task.exception()
                    if isinstance(exc, Suspended):
                        self.states[node_id].status = "pending"
                        suspended = True
                    elif exc is not None:
                        raise exc
                if self.top:
                    self.run.check_drain()
                if not self.run.agents_carry_rows:
                    self.run.maybe_flush()
        except GeneratorExit:  # the worker dropping an evicted run: nothing may be awaited
            raise
        except BaseException:
            await cancel_all(running)
            raise
        # Only a draining top level leaves nodes pending: they resume after continue-as-new.
        if self.top and (suspended or any(s.status == "pending" for s in self.states.values())):
            raise Suspended()

    def _reuse(self, node: Node) -> bool:
        """In a retry, take the node's recorded output instead of running it, if the lineage
        allows and its runner can tell the handles it left by; its row says which it reused.
        """
        task_id = self.task_id(node)
        found, runner = self.lineage.recorded(node, task_id), self.runners.get(node.type)
        if found is None:
            return False
        try:
            read = runner.reused_handles if runner else None
            handles = read(self, node, found.output) if read else None
        except ValueError:
            return False
        state, now = self.states[node.id], workflow.now()
        state.status, state.output, state.reused = "completed", found.output, True
        state.handles = handles if handles is not None else self.handles_except(node, ERROR_HANDLE)
        self.run.view(task_id, node.id, type=node.type, label=node.label, reused=True)
        self.run.record_node(
            task_id,
            node,
            "completed",
            outputs=found.output,
            started_at=now,
            completed_at=now,
            reused_from=found.row_id,
        )
        return True

    # -- one node's lifecycle ---------------------------------------------------------------------

    async def _run_node(self, node: Node) -> None:
        """One node execution, inside its own span (ended with the end its rows record)."""
        task_id = self.task_id(node)
        telemetry = NodeTelemetry(
            node,
            task_id,
            self.run.tenant_id,
            lambda: self.run.task_view.get(task_id, {}).get("attempts"),
        )
        with telemetry.current():
            try:
                await self._lifecycle(node, task_id)
            except Suspended:
                telemetry.suspended()
                raise
            except asyncio.CancelledError:
                telemetry.ended("cancelled")
                raise
            except (NodeFailed, ActivityError) as exc:
                telemetry.ended("failed", self.states[node.id].error or error_text(exc))
                raise
        telemetry.ended(self.states[node.id].status, self.states[node.id].error)

    async def _lifecycle(self, node: Node, task_id: str) -> None:
        run, state = self.run, self.states[node.id]
        started = workflow.now()  # shown as running by `run_all`, which started it
        try:
            try:
                output, handles = await self._execute(node, task_id)
            except ActivityError as exc:
                # A bookkeeping step of this node (e.g. opening its review task) was refused;
                # the run's own write-back failing is the run's failure, not this node's.
                if not run.records_every_end or exc.activity_type == RECORD_RUN:
                    raise
                raise NodeError(error_text(exc), failure_code(exc)) from None
        except Suspended:
            raise
        except asyncio.CancelledError:
            state.status = "cancelled"
            if run.records_every_end:
                run.record_node(task_id, node, "cancelled", completed_at=workflow.now())
            else:
                run.view(task_id, node.id, status="cancelled")
            raise
        except NodeError as exc:
            message = str(exc)
            state.error = message
            if node.data.onError == "continue":
                state.status, state.output = "completed", {"error": message}
                state.handles = self.handles_except(node, ERROR_HANDLE)
            elif node.data.onError == "route":
                state.status, state.output = "failed", {"error": message}
                state.handles = [ERROR_HANDLE]
            else:
                state.status = "failed"
            self._record_end(node, task_id, started, "failed", state.output, error=message)
            if node.data.onError == "fail":
                raise NodeFailed(node, message, exc.code, exc.step) from None
            return
        state.status, state.output = "completed", output
        state.handles = handles if handles is not None else self.handles_except(node, ERROR_HANDLE)
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
        runner = self.runners.get(node.type)
        if runner is not None and runner.writes_own_row:
            self.run.view(task_id, node.id, status=status, **({"error": error} if error else {}))
            return
        self.run.record_node(
            task_id,
            node,
            status,
            outputs=output,
            error=error,
            started_at=started,
            completed_at=workflow.now(),
            retry_count=0,
        )

    async def _execute(self, node: Node, task_id: str) -> NodeResult:
        """Runs one node; returns its output and the handles it leaves by."""
        try:
            runner = self.runners[node.type]
            result = await runner.run(self, node, task_id)
            if self.run.records_every_end and not runner.writes_own_row:
                check_output_size(result[0])
            return result
        except (templates.TemplateError, rendered_config.ConfigValueError) as exc:
            raise NodeError(str(exc), codes.TEMPLATE_ERROR) from None
        except (NodeError, Suspended, NodeFailed, FailureError, workflow.NondeterminismError):
            raise
        except Exception as exc:
            # A value the node cannot use must fail the node, never the workflow task (which
            # Temporal would retry for ever, leaving the run wedged and its query unanswered).
            if not self.run.records_every_end:
                raise
            raise NodeError(f"{type(exc).__name__}: {exc}") from None
