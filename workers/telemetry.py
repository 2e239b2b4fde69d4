"""What the worker tells operators: OpenTelemetry traces and Prometheus metrics.

Traces are chosen by the standard `OTEL_*` variables, so an operator configures
this service like any other instrumented one: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_TRACES_EXPORTER=otlp`) sends them over OTLP, by `OTEL_EXPORTER_OTLP_PROTOCOL`
(`http/protobuf`, the specification's default, or `grpc`); `console` prints them;
`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the resource. `TRACES_FILE`
appends them as JSON lines for `meta-agent traces` (the dev stack's viewer, no
server needed). The provider is the Temporal SDK's replay-safe one: a run replayed
on another worker emits none of its spans again.

Metrics ride on the Temporal SDK's runtime: `METRICS_PORT` serves its Prometheus
endpoint, which carries the SDK's own metrics and the engine's (recorded through
the SDK's meters, which are silent during replay too).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import opentelemetry.sdk.trace as trace_sdk
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanProcessor,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import INVALID_SPAN_ID, INVALID_TRACE_ID
from temporalio import workflow
from temporalio.contrib.opentelemetry import (
    OpenTelemetryPlugin,
    ReplaySafeTracerProvider,
)
from temporalio.contrib.opentelemetry._id_generator import TemporalIdGenerator
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from workers.settings import SettingsError
from workers.trace_file import JsonLinesSpanExporter
from workflows.run_metrics import NODE_DURATION

log = logging.getLogger("meta_agent.telemetry")

#: The service name when OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES give none.
DEFAULT_SERVICE_NAME = "meta-agent-worker"
_EXPORTERS = ("otlp", "console", "none")
#: The buckets of the engine's node-duration histogram, in seconds.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    14400,
    86400,
)
_PROTOCOLS = ("http/protobuf", "grpc")


class TelemetryError(SettingsError):
    """An OTEL_* or METRICS_* value this service cannot honour (named, so the process stops
    with one line, as for any bad setting).
    """


def _env(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The span exporters asked for: OTEL_TRACES_EXPORTER, else OTLP if an endpoint is set."""
    if _env(environ, "OTEL_SDK_DISABLED").lower() == "true":
        return []
    named = [n.strip().lower() for n in _env(environ, "OTEL_TRACES_EXPORTER").split(",")]
    named = [n for n in named if n]
    for name in named:
        if name not in _EXPORTERS:
            raise TelemetryError(
                f"OTEL_TRACES_EXPORTER: {name!r} is not one of {', '.join(_EXPORTERS)}"
            )
    if not named and (
        _env(environ, "OTEL_EXPORTER_OTLP_ENDPOINT")
        or _env(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        named = ["otlp"]
    return [n for n in named if n != "none"]


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter:
    """OTLP over the protocol the standard variables name; each exporter reads its endpoint,
    headers, timeout and certificates from the OTEL_EXPORTER_OTLP_* variables itself.
    """
    protocol = (
        _env(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or _env(environ, "OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    raise TelemetryError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; use one of "
        + ", ".join(_PROTOCOLS)
    )


def resource_from_environment() -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, with this service's name as the default."""
    resource = Resource.create()
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def span_processors(
    environ: Mapping[str, str], traces_file: str | None = None
) -> list[SpanProcessor]:
    """One batching processor per exporter the environment (and TRACES_FILE) asks for."""
    exporters: list[SpanExporter] = []
    for name in _exporter_names(environ):
        exporters.append(_otlp_exporter(environ) if name == "otlp" else ConsoleSpanExporter())
    if traces_file:
        exporters.append(JsonLinesSpanExporter(traces_file))
    return [BatchSpanProcessor(exporter) for exporter in exporters]


class RunOwnIds(TemporalIdGenerator):
    """Span and trace ids from a random of their own in each run (replay-safe as the SDK's).

    The SDK's generator draws from `workflow.new_random()` unnamed, which replays the very
    sequence `workflow.uuid4()` draws: a run's trace id read as its first review task's id.
    (`TemporalIdGenerator` is not exported, but `ReplaySafeTracerProvider` takes only its
    subclasses.)
    """

    _ATTRIBUTE = "__meta_agent_otel_ids"

    def __init__(self) -> None:
        super().__init__(RandomIdGenerator())

    def _random(self) -> random.Random | None:
        if not workflow.in_workflow() or workflow.unsafe.is_read_only():
            return None  # a query, or outside a run: any id will do
        instance = workflow.instance()
        ids: random.Random | None = getattr(instance, self._ATTRIBUTE, None)
        if ids is None:
            ids = workflow.new_random("opentelemetry-ids")
            setattr(instance, self._ATTRIBUTE, ids)
        return ids

    def generate_span_id(self) -> int:
        """A 64-bit span id, deterministic within a run."""
        ids = self._random()
        if ids is None:
            return super().generate_span_id()
        value = INVALID_SPAN_ID
        while value == INVALID_SPAN_ID:
            value = ids.getrandbits(64)
        return value

    def generate_trace_id(self) -> int:
        """A 128-bit trace id, deterministic within a run."""
        ids = self._random()
        if ids is None:
            return super().generate_trace_id()
        value = INVALID_TRACE_ID
        while value == INVALID_TRACE_ID:
            value = ids.getrandbits(128)
        return value


def install_tracer_provider(
    processors: list[SpanProcessor],
) -> ReplaySafeTracerProvider:
    """The process's tracer provider: the SDK's replay-safe one, made global (once per
    process, as OpenTelemetry allows), so workflow code, activities and the HTTP
    instrumentation all reach it through `opentelemetry.trace`.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, ReplaySafeTracerProvider):
        provider = current
    else:
        ids = RunOwnIds()
        sdk_provider = trace_sdk.TracerProvider(
            resource=resource_from_environment(), id_generator=ids
        )
        provider = ReplaySafeTracerProvider(sdk_provider, ids)
        trace.set_tracer_provider(provider)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def metrics_runtime(host: str, port: int) -> Runtime:
    """A Temporal runtime serving Prometheus on host:port: the SDK's metrics and the engine's.

    Durations are seconds and counters end in `_total`, as Prometheus users expect.
    """
    try:
        return Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=f"{host}:{port}",
                    counters_total_suffix=True,
                    durations_as_seconds=True,
                    # Reviews and waits last hours: buckets up to a day, not the SDK's 10 s.
                    histogram_bucket_overrides={NODE_DURATION: DURATION_BUCKETS},
                )
            )
        )
    except (ValueError, RuntimeError) as exc:  # the port taken, the host not this machine's
        raise TelemetryError(
            f"METRICS_PORT/METRICS_HOST: cannot serve metrics on {host}:{port}: {exc}"
        ) from None


@dataclass
class Telemetry:
    """What a process's Temporal clients need for tracing and metrics."""

    tracer_provider: ReplaySafeTracerProvider | None = None
    runtime: Runtime | None = None

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of `Client.connect`: the tracing plugin, the metrics runtime."""
        options: dict[str, Any] = {}
        if self.tracer_provider is not None:
            # The plugin carries the trace context through Temporal's headers: from the
            # client into a run, from a run into its activities and child runs.
            options["plugins"] = [OpenTelemetryPlugin()]
        if self.runtime is not None:
            options["runtime"] = self.runtime
        return options

    def shutdown(self) -> None:
        """Send the spans still buffered (the process is stopping)."""
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(5_000)


_process: Telemetry | None = None


def configure(
    *,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    traces_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Telemetry:
    """Set up the process's telemetry once: later calls return the first setup.

    Only a worker passes `metrics_port` (a CLI command must not take the worker's port).
    """
    global _process
    if _process is not None:
        return _process
    processors = span_processors(os.environ if environ is None else environ, traces_file)
    telemetry = Telemetry()
    if processors or isinstance(trace.get_tracer_provider(), ReplaySafeTracerProvider):
        telemetry.tracer_provider = install_tracer_provider(processors)
    if metrics_port is not None:
        telemetry.runtime = metrics_runtime(metrics_host, metrics_port)
        log.info("metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    _process = telemetry
    return telemetry


def current() -> Telemetry:
    """The telemetry `configure` set up, or tracing only if an installed provider asks for it."""
    return _process if _process is not None else configure()
