"""The span of one attempt of an agent node, child of the node's span in the run's trace.

The node's span (recorded by the workflow) lasts from its first attempt to its
end; each attempt, retries included, gets a span here with its number, so a
trace shows what each try did and how it failed. Errors are the ones the
runtime raises, already scrubbed of secrets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from temporalio.activity import Info as ActivityInfo
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from workflows.contract import AgentTask

_tracer = trace.get_tracer("meta_agent.agents")
_ERROR_CHARS = 1000


@contextmanager
def attempt_span(task: AgentTask, info: ActivityInfo) -> Iterator[None]:
    """Run the block as attempt `info.attempt` of `task`'s node."""
    with _tracer.start_as_current_span(
        f"{task.node_type} attempt {info.attempt}",
        kind=SpanKind.INTERNAL,
        attributes={
            "meta_agent.run.id": info.workflow_id or "",
            "meta_agent.node.id": task.node_id,
            "meta_agent.node.type": task.node_type,
            "meta_agent.node.label": task.label,
            "meta_agent.node.task_id": task.task_id,
            "meta_agent.node.attempt": info.attempt,
            "meta_agent.tenant.id": task.tenant_id or "",
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except asyncio.CancelledError:
            span.set_attribute("meta_agent.status", "cancelled")
            raise
        except BaseException as exc:
            message = str(exc)[:_ERROR_CHARS]
            span.set_attribute("meta_agent.status", "failed")
            span.set_attribute("meta_agent.error", message)
            if isinstance(exc, ApplicationError):
                span.set_attribute("meta_agent.error_type", exc.type or "")
                span.set_attribute("meta_agent.retryable", not exc.non_retryable)
                if exc.category == ApplicationErrorCategory.BENIGN:
                    raise  # an expected wait (the database is away), not an error
            span.set_status(Status(StatusCode.ERROR, message))
            raise
        span.set_attribute("meta_agent.status", "completed")
