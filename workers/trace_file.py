"""Spans as JSON lines in a file: the dev stack's trace store, read by `meta-agent traces`.

A developer sees a run's trace without running a collector: the worker appends
each finished span here, and the CLI draws one run's spans as a tree.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

#: The dev stack's trace file, in its home.
TRACES_FILE_NAME = "traces.jsonl"


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The fields a reader needs, flat and small."""
    context = span.get_span_context()
    assert context is not None
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
        "parent_id": format_span_id(span.parent.span_id) if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "description": span.status.description,
        "attributes": dict(span.attributes or {}),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one JSON line (one writer per process; lines never interleave)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the batch; a full disk loses spans, never the run."""
        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        try:
            with self._lock, self._path.open("a", encoding="utf-8") as out:
                out.write(lines)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing is held open between batches."""


def read_spans(path: str | Path) -> list[dict[str, Any]]:
    """Every span in the file; a line cut short by a crash is skipped."""
    spans: list[dict[str, Any]] = []
    file = Path(path)
    if not file.exists():
        return spans
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            spans.append(json.loads(line))
        except ValueError:
            continue
    return spans
