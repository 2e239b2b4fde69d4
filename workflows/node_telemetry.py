"""What operators see of one node execution: its span, and its duration in the metrics."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from temporalio import workflow

from workflows import run_metrics, tracing

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import Node
    from workflows.contract.span_attributes import ATTEMPTS


class NodeTelemetry:
    """Started with the node; ended once, with the status its rows record."""

    def __init__(
        self,
        node: Node,
        task_id: str,
        tenant_id: str | None,
        attempts: Callable[[], int | None],
    ) -> None:
        self._span = tracing.node_span(node.id, node.type, node.label, task_id, tenant_id)
        self._type = node.type
        self._attempts = attempts
        self._started = workflow.now()

    def current(self) -> AbstractContextManager[Any]:
        """The node's span as the parent of what its block starts (activities, child runs)."""
        return self._span.current()

    def suspended(self) -> None:
        """The node stops for continue-as-new and goes on in the next run of the chain."""
        self._span.end("suspended")

    def ended(self, status: str, error: str | None = None) -> None:
        """The node ended: its span, with its attempts, and its duration by type and status."""
        self._span.set(ATTEMPTS, self._attempts())
        self._span.end(status, error)
        run_metrics.node_ended(self._type, status, workflow.now() - self._started)
