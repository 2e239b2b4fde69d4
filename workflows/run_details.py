"""The run's "current details" in the Temporal UI: what it runs and what it waits for.

An operator opening a run sees, without knowing which query to send: the flow
(name, version, tenant, who started it), the nodes running, and for each wait
the thing it waits on: a review task (title, assignee or role, deadline and the
command that decides it), an event name, or a timer's end. Markdown, as the UI
renders it; rebuilt only when the scheduler or a review changes something.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import FlowDefinition
    from flow_language.review_rules import HitlTaskState

#: Running nodes listed by name; more are counted (a loop can run hundreds at once).
_LISTED = 12


@dataclass(frozen=True)
class FlowIdentity:
    """What names the flow a run runs, for people reading the run."""

    name: str | None = None
    flow_id: str | None = None
    version: int | None = None
    tenant_id: str | None = None
    triggered_by: str | None = None


def _text(value: object, limit: int = 200) -> str:
    """Untrusted text (a review title rendered from inputs, a label) as inert Markdown: on one
    line, cut short, every character Markdown or HTML would act on escaped.
    """
    flat = " ".join(str(value).split())[:limit]
    return "".join(f"\\{c}" if c in _MARKDOWN else c for c in flat)


_MARKDOWN = set("\\`*_{}[]()<>#+-.!|~&")


def _code(value: object, limit: int = 200) -> str:
    """A value shown as code: backticks cannot close it early."""
    return "`" + " ".join(str(value).split())[:limit].replace("`", "'") + "`"


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _flow_line(flow: FlowIdentity, status: str) -> str:
    name = _text(flow.name or flow.flow_id or "inline flow")
    parts = [f"**{name}**" + (f" v{flow.version}" if flow.version is not None else "")]
    if flow.tenant_id:
        parts.append(f"tenant {_code(flow.tenant_id)}")
    if flow.triggered_by:
        parts.append(f"started by {_code(flow.triggered_by)}")
    parts.append(f"status **{status}**")
    return " · ".join(parts)


def _review_lines(task: HitlTaskState) -> list[str]:
    who = (
        f"assignee {_code(task.assignee_id)}"
        if task.assignee_id
        else f"role {_code(task.assignee_role)}"
        if task.assignee_role
        else "any reviewer of the tenant"
    )
    deadline = f", deadline {_when(task.deadline)}" if task.deadline else ""
    verb = "--approve" if task.decision_type == "approval" else f"--{task.decision_type} ..."
    return [
        f"- waiting for review **{_text(task.title)}** ({who}{deadline})",
        f"  decide: `meta-agent hitl decide {task.id} {verb} --as <user>`",
    ]


def describe(
    *,
    flow: FlowIdentity,
    status: str,
    paused: bool,
    definition: FlowDefinition | None,
    task_view: Mapping[str, Mapping[str, Any]],
    reviews: Mapping[str, HitlTaskState],
    wait_deadlines: Mapping[str, datetime],
    run_id: str | None = None,
) -> str:
    """The details text for the run as it is now."""
    lines = [_flow_line(flow, status), ""]  # a paragraph, then the list
    if paused:
        lines.append("- **paused**: no node starts until the `resume` signal")
    running = [
        (task_id, view) for task_id, view in task_view.items() if view.get("status") == "running"
    ]
    if running:
        names = [
            f"`{view.get('label') or task_id}` ({view.get('type', '?')})"
            for task_id, view in running
        ]
        more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
        lines.append("- running: " + ", ".join(names[:_LISTED]) + more)
    for task in reviews.values():
        if task.status == "open":
            lines.extend(_review_lines(task))
    for task_id, view in running:
        node = definition.by_id.get(str(view.get("node_id"))) if definition else None
        if node is not None and node.type == "workflow" and run_id:
            # What a sub-flow waits for is in its own run's details.
            label = _code(view.get("label") or task_id)
            lines.append(f"- {label} runs the sub-flow {_code(f'{run_id}/{task_id}')}")
        if node is None or node.type != "wait":
            continue
        event = node.data.config.get("event")
        deadline = wait_deadlines.get(task_id)
        label = _code(view.get("label") or task_id)
        if event is not None:
            until = f" (until {_when(deadline)})" if deadline else ""
            lines.append(f"- {label} waits for event {_code(event)}{until}")
        elif deadline is not None:
            lines.append(f"- {label} waits until {_when(deadline)}")
        elif "until" in node.data.config:
            lines.append(f"- {label} waits until {_code(node.data.config['until'])}")
    return "\n".join(lines)
