"""Client spans for the agents' HTTP calls, and the W3C `traceparent` header they carry.

OpenTelemetry's httpx instrumentation wraps the shared pool: each call of an
`api`, `a2a`, `llm`, `vision`, `audio` or `sensor` node becomes a client span,
child of the node's attempt span, and the peer receives the trace context, so
its own spans join the run's trace. A URL may hold a secret (`?key={{ secrets.K
}}`): the span's attributes are passed through the scrubber of the secrets the
process holds before the span ends.
"""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

from activities.scrubber import ACTIVE


def tracing_enabled() -> bool:
    """Whether the process has a tracer provider (without one, calls are left unwrapped)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _scrub(span: trace.Span) -> None:
    scrubber = ACTIVE.scrubber
    attributes = getattr(span, "attributes", None)
    if not scrubber or not attributes:
        return
    for key, value in dict(attributes).items():
        if isinstance(value, str):
            clean = scrubber.text(value)
            if clean != value:
                span.set_attribute(key, clean)


async def _on_request(span: trace.Span, request: Any) -> None:
    _scrub(span)


async def _on_response(span: trace.Span, request: Any, response: Any) -> None:
    _scrub(span)


def traced(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """`transport`, tracing each request when the process traces at all."""
    if not tracing_enabled():
        return transport
    return AsyncOpenTelemetryTransport(
        transport, request_hook=_on_request, response_hook=_on_response
    )
