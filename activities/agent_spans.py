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
from workflows.contract import span_attributes as attrs

_tracer = trace.get_tracer("meta_agent.agents")


@contextmanager
def attempt_span(task: AgentTask, info: ActivityInfo) -> Iterator[None]:
    """Run the block as attempt `info.attempt` of `task`'s node."""
    with _tracer.start_as_current_span(
        f"{task.node_type} attempt {info.attempt}",
        kind=SpanKind.INTERNAL,
        attributes={
            attrs.RUN_ID: info.workflow_id or "",
            attrs.NODE_ID: task.node_id,
            attrs.NODE_TYPE: task.node_type,
            attrs.NODE_LABEL: task.label,
            attrs.TASK_ID: task.task_id,
            attrs.ATTEMPT: info.attempt,
            attrs.TENANT_ID: task.tenant_id or "",
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except asyncio.CancelledError:
            span.set_attribute(attrs.STATUS, "cancelled")
            raise
        except BaseException as exc:
            message = str(exc)[: attrs.ERROR_CHARS]
            span.set_attribute(attrs.STATUS, "failed")
            span.set_attribute(attrs.ERROR, message)
            if isinstance(exc, ApplicationError):
                span.set_attribute(attrs.ERROR_TYPE, exc.type or "")
                span.set_attribute(attrs.RETRYABLE, not exc.non_retryable)
                if exc.category == ApplicationErrorCategory.BENIGN:
                    raise  # an expected wait (the database is away), not an error
            span.set_status(Status(StatusCode.ERROR, message))
            raise
        span.set_attribute(attrs.STATUS, "completed")
