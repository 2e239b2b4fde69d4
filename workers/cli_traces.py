"""`meta-agent traces RUN`: a run's trace drawn at the terminal, from the worker's trace file.

The dev stack's worker appends its spans to `.meta-agent/traces.jsonl` (TRACES_FILE
elsewhere), so a developer sees where a run spent its time, which attempt failed
and which HTTP call it made, without running a tracing server.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workers.settings import Settings
from workers.trace_file import TRACES_FILE_NAME, read_spans


def run_trace(spans: Iterable[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The spans of the trace(s) the run took part in (its sub-flows and calls included)."""
    from workflows.contract import span_attributes as attrs  # only when drawing traces

    spans = list(spans)
    traces = {s["trace_id"] for s in spans if s.get("attributes", {}).get(attrs.RUN_ID) == run_id}
    return [s for s in spans if s["trace_id"] in traces]


def _label(span: dict[str, Any]) -> str:
    from workflows.contract import span_attributes as attrs

    attributes = span.get("attributes", {})
    took = ""
    if span.get("start_ns") and span.get("end_ns"):
        took = f"  {(span['end_ns'] - span['start_ns']) / 1e6:,.1f} ms"
    status = attributes.get(attrs.STATUS) or ("error" if span.get("status") == "ERROR" else "")
    error = attributes.get(attrs.ERROR) or span.get("description") or ""
    url = attributes.get("url.full") or attributes.get("http.url") or ""
    code = attributes.get("http.response.status_code") or attributes.get("http.status_code")
    parts = [
        span["name"],
        status,
        url,
        str(code) if code else "",
        error.splitlines()[0] if error else "",
    ]
    return "  ".join(p for p in parts if p) + took


def tree_lines(spans: list[dict[str, Any]]) -> list[str]:
    """The spans as an indented tree, children in start order; orphans (a parent span not
    yet exported, e.g. a run still going) are drawn as roots.
    """
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span.get("parent_id") if span.get("parent_id") in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def draw(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.get("start_ns") or 0):
            lines.append("  " * depth + _label(span))
            draw(span["span_id"], depth + 1)

    draw(None, 0)
    return lines


def traces_file(settings: Settings) -> Path:
    """TRACES_FILE, else the dev stack's."""
    return Path(settings.traces_file) if settings.traces_file else settings.home / TRACES_FILE_NAME


async def cmd_traces(args: argparse.Namespace, settings: Settings) -> int:
    """`traces RUN`: the run's spans as a tree; exit 1 when the file has none of them."""
    path = traces_file(settings)
    spans = run_trace(read_spans(path), args.run)
    if not spans:
        print(f"meta-agent: no spans of run {args.run} in {path}")
        return 1
    print("\n".join(tree_lines(spans)))
    return 0


def add_commands(sub: Any) -> None:
    """Add `traces RUN`."""
    traces = sub.add_parser("traces", help="a run's trace, from the worker's trace file")
    traces.add_argument("run", help="orchestrator run id (the Temporal workflow ID)")
    traces.set_defaults(handler=cmd_traces)
