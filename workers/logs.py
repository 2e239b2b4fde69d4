"""How the worker's log lines look: JSON for machines, one readable line for people.

Every line carries the run it concerns (the Temporal workflow id), and inside an
agent's activity the node, the attempt and the tenant, whichever code logged it
(ours, the Temporal SDK's, httpx's): a log pipeline can follow one run or one
tenant. Expected failures (an agent's HTTP 404, a refused decision) are one line
with their type; only unexpected exceptions keep their traceback. Secrets held by
running activities are masked before any of this (activities.scrubber).

`LOG_FORMAT=json|text` chooses; by default JSON when stderr is not a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from activities.log_context import NODE_CONTEXT

#: Fields a line may carry besides time, level, logger and message, in this order.
CONTEXT_FIELDS = (
    "run_id",
    "node_id",
    "node_type",
    "task_id",
    "attempt",
    "tenant_id",
    "activity",
    "review_task_id",
)


def _context(record: logging.LogRecord) -> dict[str, Any]:
    """The run, node and tenant a record concerns, from wherever they are known."""
    from temporalio import activity, workflow  # loaded by then in a worker; a CLI may not need it

    found: dict[str, Any] = {}
    temporal_activity = getattr(record, "temporal_activity", None)
    temporal_workflow = getattr(record, "temporal_workflow", None)
    if isinstance(temporal_activity, dict):
        found.update(
            run_id=temporal_activity.get("workflow_id"),
            task_id=temporal_activity.get("activity_id"),
            attempt=temporal_activity.get("attempt"),
            activity=temporal_activity.get("activity_type"),
        )
    elif isinstance(temporal_workflow, dict):
        found.update(run_id=temporal_workflow.get("workflow_id"))
    elif activity.in_activity():
        info = activity.info()
        found.update(
            run_id=info.workflow_id,
            task_id=info.activity_id,
            attempt=info.attempt,
            activity=info.activity_type,
        )
    elif workflow.in_workflow():
        found.update(run_id=workflow.info().workflow_id)
    found.update(NODE_CONTEXT.get() or {})
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = value
    return {k: v for k, v in found.items() if v is not None}


def _expected(exc: BaseException | None) -> bool:
    """An ApplicationError: an agent's failure it raised on purpose, with a type that says why."""
    if exc is None or "temporalio" not in sys.modules:
        return False
    from temporalio.exceptions import ApplicationError

    return isinstance(exc, ApplicationError)


class RunContext(logging.Filter):
    """Attach the run/node/tenant context to every record, and make expected failures one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; enrich it first."""
        record.meta_agent = _context(record)
        exc = record.exc_info[1] if record.exc_info else None
        if _expected(exc) and getattr(record, "__temporal_error_identifier", None):
            # An agent's expected failure (Http404, TemplateError, ...): its type and message
            # say it all; a traceback of the runtime would bury the one line that matters.
            kind = getattr(exc, "type", None) or type(exc).__name__
            said = str(exc)
            # Our messages often open with their type already ("Http404: GET ...").
            text = said if said.startswith(f"{kind}:") else f"{kind}: {said}"
            record.msg = f"{record.getMessage()}: {text}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, and an error if any."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "meta_agent", {}),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["traceback"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The familiar line, with the run and node in brackets when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as text; its context as `[run=… node=…]` after the message."""
        text = super().format(record)
        context = getattr(record, "meta_agent", {})
        if not context:
            return text
        head, _, tail = text.partition("\n")
        shown = " ".join(f"{k.removesuffix('_id')}={context[k]}" for k in context)
        return f"{head} [{shown}]" + (f"\n{tail}" if tail else "")


def use_json(setting: str | None, stream: Any = None) -> bool:
    """JSON unless told `text`, or unless nobody set it and a person watches the terminal."""
    if setting:
        return setting.strip().lower() == "json"
    stream = stream if stream is not None else sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def configure_logging(verbose: bool, log_format: str | None) -> None:
    """The process's one handler, on stderr, with the run context and the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RunContext())
    handler.setFormatter(JsonFormatter() if use_json(log_format) else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("temporalio", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
