"""The spans of a run and of each node execution, recorded from workflow code.

Spans are made through the process's tracer provider only when it is the Temporal
SDK's replay-safe one (`workers.telemetry` installs it): span ids come from the
run's seeded random, a span started while history replays keeps its recorded start,
and one that ends during replay is not exported again. So a run rebuilt on another
worker (after an eviction, a crash, a query) emits each span once. With any other
provider, or none, nothing is recorded here.

A span is ended only by an end the run records (completed, failed, cancelled,
continued as new): an unexpected exception fails the workflow task, which Temporal
retries, and ending the span then would emit one span per retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from opentelemetry import trace
    from opentelemetry.trace import Span, Status, StatusCode
    from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

    from workflows.contract import FlowRunInput, PreparedFlow
    from workflows.contract.span_attributes import (
        ERROR,
        ERROR_CHARS,
        FLOW_ID,
        FLOW_NAME,
        FLOW_VERSION,
        NODE_ID,
        NODE_LABEL,
        NODE_TYPE,
        PARENT_RUN_ID,
        RUN_ID,
        STATUS,
        TASK_ID,
        TEMPORAL_RUN_ID,
        TENANT_ID,
        TRIGGERED_BY,
    )

#: The instrumentation scope of the engine's own spans.
TRACER_NAME = "meta_agent.flow"


def _tracer() -> trace.Tracer | None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, ReplaySafeTracerProvider):
        return provider.get_tracer(TRACER_NAME)
    return None


def _attributes(values: dict[str, Any]) -> dict[str, str | int]:
    """OpenTelemetry takes no None: absent values are left out."""
    return {k: v for k, v in values.items() if v is not None}


class WorkflowSpan:
    """One span of workflow code, current while its block runs; ended once, explicitly."""

    def __init__(self, name: str, attributes: dict[str, Any], *, record: bool = True) -> None:
        tracer = _tracer() if record else None
        self._span: Span | None = (
            tracer.start_span(name, attributes=_attributes(attributes)) if tracer else None
        )
        self._ended = False

    @classmethod
    def none(cls) -> RunSpan:
        """A span that records nothing (a run's, before the run's code starts)."""
        return RunSpan("", {}, record=False)

    @contextmanager
    def current(self) -> Iterator[WorkflowSpan]:
        """Make it the parent of what the block starts: activities and child runs carry it
        in their headers, so their spans join this trace.
        """
        if self._span is None:
            yield self
            return
        with trace.use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield self

    def set(self, name: str, value: str | int | None) -> None:
        """Add an attribute learnt on the way (the flow's name once it is loaded)."""
        if self._span is not None and value is not None:
            self._span.set_attribute(name, value)

    def rename(self, name: str) -> None:
        """Rename the span."""
        if self._span is not None:
            self._span.update_name(name)

    def end(self, status: str, error: str | None = None) -> None:
        """End it with the status the run recorded; a failure's message goes with it."""
        if self._span is None or self._ended:
            return
        self._ended = True
        self._span.set_attribute(STATUS, status)
        if error:
            self._span.set_attribute(ERROR, error[:ERROR_CHARS])
        if status == "failed":
            self._span.set_status(Status(StatusCode.ERROR, (error or "failed")[:ERROR_CHARS]))
        self._span.end()


def node_span(
    node_id: str, node_type: str, label: str | None, task_id: str, tenant_id: str | None
) -> WorkflowSpan:
    """The span of one node execution, named as the drawing shows the node."""
    return WorkflowSpan(
        f"{node_type}: {label or node_id}",
        {
            RUN_ID: workflow.info().workflow_id,
            TENANT_ID: tenant_id,
            NODE_ID: node_id,
            NODE_TYPE: node_type,
            NODE_LABEL: label,
            TASK_ID: task_id,
        },
    )


class RunSpan(WorkflowSpan):
    """The span of one Temporal run of a flow: the parent of its nodes' spans."""

    def prepared(self, prepared: PreparedFlow) -> None:
        """Name it after the flow, once `prepare_flow` has loaded it."""
        if prepared.flow_name:
            self.rename(f"flow {prepared.flow_name}")
        self.set(FLOW_NAME, prepared.flow_name)
        self.set(FLOW_ID, prepared.workflow_id)
        self.set(FLOW_VERSION, prepared.version)
        self.set(TENANT_ID, prepared.tenant_id)


def run_span(params: FlowRunInput, flow_name: str | None) -> RunSpan:
    """The run's span; a run continued as new knows its flow from the checkpoint."""
    info = workflow.info()
    checkpoint = params.checkpoint
    return RunSpan(
        f"flow {flow_name or params.workflow_id or 'run'}",
        {
            RUN_ID: info.workflow_id,
            TEMPORAL_RUN_ID: info.run_id,
            FLOW_NAME: flow_name,
            FLOW_ID: checkpoint.workflow_id if checkpoint else params.workflow_id,
            FLOW_VERSION: checkpoint.version if checkpoint else params.version,
            TENANT_ID: checkpoint.tenant_id if checkpoint else params.tenant_id,
            TRIGGERED_BY: params.triggered_by,
            PARENT_RUN_ID: params.parent_run_id,
        },
    )
