"""A run's nodes as a person reads them: in graph order, each with its status, type, duration
and attempts, and the review tasks it waits on with the command that decides them.

Pure data, no I/O: `cli_progress` feeds it the `status` query and the Postgres rows and
draws the result, live or as plain lines; `runs show` prints it once. Node rows are keyed
by task id (`node`, or `loop[3].node` inside a loop, nested as `a[1].b[0].node`), which
this module places under their loop, iteration by iteration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from flow_language.steps_format import as_drawing

#: The prefix a loop puts before its body's task ids: `<loop task id>[<index>].`.
_ITERATION = re.compile(r"^(?P<loop>.+)\[(?P<index>\d+)\]\.$")
#: Statuses after which a node changes no more.
NODE_ENDED = frozenset({"completed", "failed", "skipped", "cancelled"})


class NodeRow(Protocol):
    """What is read of a `task_instances` row (the model has these columns)."""

    orchestrator_task_id: str
    node_id: str
    status: str
    agent_type: str | None
    started_at: datetime | None
    completed_at: datetime | None
    retry_count: int
    error: str | None


@dataclass(frozen=True)
class NodeLine:
    """One node execution as shown: `depth` is how many loops it sits in."""

    task_id: str
    node_id: str
    label: str
    type: str
    status: str
    duration: timedelta | None
    attempts: int | None
    error: str | None
    depth: int


@dataclass(frozen=True)
class Review:
    """An open review task and who may decide it (`decide_as`: a username or user id; None
    when nobody holds the role yet).
    """

    task_id: str
    title: str
    decision_type: str
    options: list[Any]
    assignee_id: str | None
    assignee_role: str | None
    deadline: str | None
    decide_as: str | None

    @property
    def assignee(self) -> str:
        """Who the task waits for, in words."""
        if self.assignee_role and self.assignee_id:
            return f"user {self.assignee_id} or role {self.assignee_role}"
        if self.assignee_role:
            return f"role {self.assignee_role}"
        return f"user {self.assignee_id}" if self.assignee_id else "any user of the run's tenant"

    def decide_command(self) -> str:
        """The `meta-agent hitl decide` line to paste (an approval as `--approve`)."""
        what = {
            "approval": "--approve",
            "choice": f"--choice {_first_option(self.options)}",
            "form": "--form '{}'",
            "annotation": "--annotations '[]'",
        }.get(self.decision_type, "--text '...'")
        return f"meta-agent hitl decide {self.task_id} {what} --as {self.decide_as or 'USER'}"


def _first_option(options: list[Any]) -> str:
    first = options[0] if options else "VALUE"
    value = first.get("value", "VALUE") if isinstance(first, dict) else first
    return str(value)


def graph_ranks(definition: Mapping[str, Any] | None) -> dict[str, int]:
    """Each node's place among the nodes of its container (the top level, or one loop's
    body): a topological order of the edges inside it, ties kept in drawing order.

    A cycle (refused by validation, but a row may come from any stored definition)
    leaves its nodes in drawing order after the rest.
    """
    if not definition:
        return {}
    definition = as_drawing(definition)  # a steps/connections flow is ranked as its drawing
    nodes = [n for n in definition.get("nodes", []) if isinstance(n, dict) and "id" in n]
    parent = {str(n["id"]): n.get("parentId") for n in nodes}
    drawn = {node_id: i for i, node_id in enumerate(parent)}
    incoming: dict[str, set[str]] = {node_id: set() for node_id in parent}
    for e in definition.get("edges", []):
        if not isinstance(e, dict):
            continue
        src, dst = e.get("source"), e.get("target")
        if src in parent and dst in parent and src != dst and parent[src] == parent[dst]:
            incoming[str(dst)].add(str(src))
    ranks: dict[str, int] = {}
    for container in dict.fromkeys(parent.values()):
        members = [node_id for node_id in parent if parent[node_id] == container]
        placed: list[str] = []
        waiting = {m: set(incoming[m]) for m in members}
        while waiting:
            ready = [m for m in waiting if not waiting[m]] or [min(waiting, key=drawn.__getitem__)]
            ready.sort(key=drawn.__getitem__)
            for m in ready:
                placed.append(m)
                del waiting[m]
            for deps in waiting.values():
                deps.difference_update(ready)
        ranks.update({m: i for i, m in enumerate(placed)})
    return ranks


def _order_key(
    task_id: str, node_of: Callable[[str], str], ranks: Mapping[str, int]
) -> tuple[Any, ...]:
    """Sorts a loop's row before its iterations, iterations by index, and each iteration's
    body in graph order; unknown nodes go last, by task id.
    """
    node_id = node_of(task_id)
    rank = ranks.get(node_id, len(ranks))
    prefix = task_id[: len(task_id) - len(node_id)] if task_id.endswith(node_id) else ""
    found = _ITERATION.match(prefix)
    if not found:
        return ((rank, task_id),)
    return (*_order_key(found["loop"], node_of, ranks), (int(found["index"]), rank, task_id))


def node_lines(
    definition: Mapping[str, Any] | None,
    rows: Iterable[NodeRow],
    live: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    now: datetime | None = None,
    first_seen: Mapping[str, datetime] | None = None,
    pending: bool = False,
) -> list[NodeLine]:
    """The run's node executions in graph order.

    `rows` are the Postgres rows (times, attempts of agents); `live` the `status` query's
    nodes, fresher than the rows, which are written in batches. A running node's duration
    runs to `now`, from its row's start or else from when it was `first_seen`. With
    `pending`, the definition's nodes outside loops that have not started yet are listed
    as `pending`.
    """
    drawing = as_drawing(definition or {})  # a steps/connections flow shows as its drawing
    by_id = {str(n["id"]): n for n in drawing.get("nodes", []) if isinstance(n, dict)}
    ranks = graph_ranks(drawing)
    stored = {r.orchestrator_task_id: r for r in rows}
    live = live or {}
    lines = []
    for task_id in dict.fromkeys([*stored, *live]):
        row, seen = stored.get(task_id), live.get(task_id, {})
        node_id = str(seen.get("node_id") or (row.node_id if row else task_id))
        drawn = by_id.get(node_id, {})
        data = _data(drawn)
        kind = seen.get("type") or (row.agent_type if row else None) or drawn.get("type")
        status = str(seen.get("status") or (row.status if row else "?"))
        start = row.started_at if row and row.started_at else (first_seen or {}).get(task_id)
        end = row.completed_at if row else None
        if end is None and status not in NODE_ENDED:
            end = now
        attempts = (
            row.retry_count + 1 if row and row.retry_count is not None else seen.get("attempts")
        )
        reused = bool(getattr(row, "reused_from", None)) or bool(seen.get("reused"))
        lines.append(
            NodeLine(
                task_id=task_id,
                node_id=node_id,
                label=str(seen.get("label") or data.get("label") or node_id),
                type=str(
                    seen.get("type") or (row.agent_type if row else None) or drawn.get("type")
                ),
                status=f"{status} (reused)" if reused and status == "completed" else status,
                duration=end - start if start and end and end >= start else None,
                # A reused node made no attempt in this run; a skipped one none at all.
                attempts=attempts if status != "skipped" and not reused else None,
                error=seen.get("error") or (row.error if row else None),
                depth=task_id.count("]."),
            )
        )
    if pending:
        started = {line.task_id for line in lines}
        for node_id, drawn in by_id.items():
            if drawn.get("parentId") is None and node_id not in started:
                label = str(_data(drawn).get("label") or node_id)
                kind = str(drawn.get("type"))
                lines.append(
                    NodeLine(node_id, node_id, label, kind, "pending", None, None, None, 0)
                )
    known = {line.task_id: line.node_id for line in lines}

    def node_of(task_id: str) -> str:
        # A loop not yet in the rows: its node id is what follows its own last prefix.
        return known.get(task_id) or task_id.rsplit("].", 1)[-1]

    return sorted(lines, key=lambda line: _order_key(line.task_id, node_of, ranks))


def _data(drawn: Mapping[str, Any]) -> Mapping[str, Any]:
    data = drawn.get("data")
    return data if isinstance(data, dict) else {}


def duration_text(value: timedelta | None) -> str:
    """`0.4s`, `12s`, `3m05s`, `2h07m`: short enough for a column."""
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def plain_table(lines: list[NodeLine], indent: str = "  ") -> list[str]:
    """The lines as fixed-width text columns (for pipes, logs and `runs show`)."""
    headers = ("NODE", "STATUS", "TYPE", "DURATION", "ATTEMPTS", "LABEL")
    cells = [
        (
            "  " * line.depth + line.task_id,
            line.status,
            line.type,
            duration_text(line.duration),
            "" if line.attempts is None else str(line.attempts),
            line.label if line.label != line.node_id else "",
        )
        for line in lines
    ]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    out = []
    for row in [headers, *cells]:
        text = "  ".join(
            cell.rjust(widths[i]) if i in (3, 4) else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        )
        out.append(indent + text.rstrip())
    for line in lines:
        if line.error and line.status == "failed":
            out.append(f"{indent}! {line.task_id}: {line.error.splitlines()[0]}")
    return out
