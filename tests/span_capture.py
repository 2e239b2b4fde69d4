"""Spans of the test process, caught in memory while a test asks for them.

A process has one tracer provider (OpenTelemetry allows setting it once), so the
first test that wants spans installs the engine's replay-safe provider with one
exporter; the exporter keeps spans only while a test records, so spans of other
tests neither pile up nor leak into a later test's assertions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.flows import FlowWorker
from workers.telemetry import install_tracer_provider


class _SwitchedExporter(InMemorySpanExporter):
    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.recording:
            return SpanExportResult.SUCCESS
        return super().export(spans)


_EXPORTER = _SwitchedExporter()
_installed: list[bool] = []


@contextmanager
def recording_spans() -> Iterator[InMemorySpanExporter]:
    """The spans this process finishes while the block runs (the provider installed once)."""
    if not _installed:
        install_tracer_provider([SimpleSpanProcessor(_EXPORTER)])
        _installed.append(True)
    _EXPORTER.clear()
    _EXPORTER.recording = True
    try:
        yield _EXPORTER
    finally:
        _EXPORTER.recording = False
        _EXPORTER.clear()


@dataclass
class TracedWorker(FlowWorker):
    """A `FlowWorker` whose client traces, with the spans finished while the test runs."""

    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)

    def finished(self) -> list[ReadableSpan]:
        """The spans finished so far."""
        return list(self.spans.get_finished_spans())
