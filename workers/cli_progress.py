"""Following a run at the terminal: `meta-agent run --wait` and `runs show RUN --follow`.

On a terminal the run is drawn as a live table (rich's `Live`) that is redrawn as it
advances, with the review tasks it waits on and the `meta-agent hitl decide` line to paste;
anywhere else (a pipe, a test, a log) one plain line is printed per node status change, so
the output stays readable as text. Either way the run's outputs (or its error) end it.

What is drawn comes from the run's `status` query (fresh, from the workflow's memory) and
its Postgres rows (times and attempts; written in batches, so a little behind). Without a
database the query alone is shown.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from persistence import run_views, user_queries
from persistence.engine import create_engine, session_factory
from persistence.ids import parse_uuid
from persistence.queries import NotFoundError, load_definition
from workers.run_progress import NodeLine, Review, duration_text, node_lines

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from temporalio.client import Client

_STYLE = {
    "completed": "green",
    "failed": "bold red",
    "running": "yellow",
    "waiting_hitl": "bold magenta",
    "cancelled": "red",
    "skipped": "dim",
    "pending": "dim",
}
POLL_SECONDS = 0.5


@dataclass
class Snapshot:
    """One look at the run: its status, its node lines in graph order, its open reviews."""

    status: str
    lines: list[NodeLine]
    reviews: list[Review]
    flow: str | None = None


@dataclass
class _Watch:
    """What the follower keeps between looks: the definition, when each node was first seen
    running (a row may not be written yet), and who may decide each review.
    """

    client: Client
    run_id: str
    sessions: async_sessionmaker[AsyncSession] | None
    definition: dict[str, Any] | None = None
    flow: str | None = None
    tenant_id: uuid.UUID | None = None
    first_seen: dict[str, datetime] = field(default_factory=dict)
    deciders: dict[str, str | None] = field(default_factory=dict)
    last: Snapshot | None = None


async def follow(client: Client, run_id: str, database_url: str | None, out: TextIO) -> int:
    """Draw the run until it ends, then its outputs (exit 0) or how it ended (exit 1)."""
    from temporalio.client import WorkflowFailureError

    from workers.client import failure_text, result

    engine = create_engine(database_url, pool_size=1) if database_url else None
    watch = _Watch(client, run_id, session_factory(engine) if engine else None)
    try:
        await _learn_flow(watch)
        result_task = asyncio.ensure_future(result(client, run_id))
        drawer: _Drawer = _LiveDrawer(out) if out.isatty() else _PlainDrawer(out)
        with drawer:
            while not result_task.done():
                drawer.show(await _look(watch))
                await asyncio.wait({result_task}, timeout=POLL_SECONDS)
            drawer.show(await _look(watch))  # a fast run may end before the first look
        try:
            outcome = result_task.result()
        except WorkflowFailureError as exc:
            print(f"run {run_id} {failure_text(exc)}", file=sys.stderr, flush=True)
            return 1
        print(f"run {run_id} completed", file=out)
        print(json.dumps(outcome.outputs, indent=2, ensure_ascii=False), file=out, flush=True)
        return 0
    finally:
        if engine is not None:
            await engine.dispose()


async def _learn_flow(watch: _Watch) -> None:
    """The run's definition (for graph order), flow name and tenant, from the request it was
    started with; a run started raw, or an unknown flow, is drawn in the order nodes start.
    """
    from workers.client import RetryRefused, original_request

    try:
        request = (await original_request(watch.client, watch.run_id)).request
    except RetryRefused:
        return
    watch.definition = request.definition
    watch.tenant_id = parse_uuid(request.tenant_id)
    if request.workflow_id and watch.sessions is not None:
        async with watch.sessions() as session:
            try:
                stored = await load_definition(session, request.workflow_id, request.version)
            except NotFoundError:
                return
        watch.definition, watch.flow = stored.definition, stored.name


async def _look(watch: _Watch) -> Snapshot:
    """The run as it is now; a status query that finds no worker keeps the last look."""
    from workers.client import get_status

    try:
        status = await get_status(watch.client, watch.run_id)
    except Exception:  # between tasks, or no worker to answer: try again at the next look
        return watch.last or Snapshot("starting", [], [], watch.flow)
    now = datetime.now(UTC)
    live: dict[str, Any] = status.get("nodes") or {}
    for task_id, node in live.items():
        if node.get("status") not in (None, "skipped"):
            watch.first_seen.setdefault(task_id, now)
    rows: list[Any] = []
    if watch.sessions is not None:
        async with watch.sessions() as session:
            rows = await run_views.node_rows(session, watch.run_id)
            await _find_deciders(session, watch, status.get("open_hitl_tasks") or [])
    reviews = [
        _review(task, watch.deciders.get(_decider_key(task)))
        for task in (status.get("open_hitl_tasks") or [])
    ]
    lines = node_lines(
        watch.definition, rows, live, now=now, first_seen=watch.first_seen, pending=True
    )
    watch.last = Snapshot(str(status.get("status")), lines, reviews, watch.flow)
    return watch.last


async def _find_deciders(session: AsyncSession, watch: _Watch, tasks: list[dict[str, Any]]) -> None:
    """Who the `hitl decide` line names for each new task: its assignee, or the first
    holder of its role in the run's tenant (looked up once per task and assignee).
    """
    for task in tasks:
        # Keyed by who may decide too: an escalation hands the task to another role.
        key = _decider_key(task)
        if key not in watch.deciders:
            watch.deciders[key] = await decider(
                session, task.get("assignee_id"), task.get("assignee_role"), watch.tenant_id
            )


def _decider_key(task: dict[str, Any]) -> str:
    return f"{task.get('id')}|{task.get('assignee_id')}|{task.get('assignee_role')}"


async def decider(
    session: AsyncSession,
    assignee_id: str | uuid.UUID | None,
    assignee_role: str | None,
    tenant_id: uuid.UUID | None,
) -> str | None:
    """A username that may decide a task so assigned (None: nobody can yet)."""
    if assignee_id:
        try:
            return (await user_queries.find_user(session, str(assignee_id))).username
        except NotFoundError:
            return str(assignee_id)
    if assignee_role:
        holders = await user_queries.role_holders(session, assignee_role, tenant_id, limit=1)
        return holders[0].username if holders else None
    return None


def _review(task: dict[str, Any], decide_as: str | None) -> Review:
    return Review(
        task_id=str(task.get("id")),
        title=str(task.get("title") or ""),
        decision_type=str(task.get("decision_type") or "approval"),
        options=list(task.get("options") or []),
        assignee_id=task.get("assignee_id"),
        assignee_role=task.get("assignee_role"),
        deadline=task.get("deadline"),
        decide_as=decide_as,
    )


def review_lines(review: Review) -> list[str]:
    """A waiting review in plain words: the task, who decides, the deadline, the command."""
    lines = [
        f"waiting for review: {review.title}",
        f"  task      {review.task_id}",
        f"  assignee  {review.assignee}",
        f"  deadline  {review.deadline or 'none'}",
        f"  decide    {review.decide_command()}",
    ]
    if review.decide_as is None and review.assignee_role:
        lines.append(
            f"  (no user holds role {review.assignee_role!r} here yet: "
            f"meta-agent users grant USER {review.assignee_role})"
        )
    return lines


class _Drawer:
    """How looks are shown: a context manager taking one snapshot after another."""

    def __enter__(self) -> _Drawer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, snapshot: Snapshot) -> None:
        """Show the run as this snapshot has it."""
        raise NotImplementedError


class _PlainDrawer(_Drawer):
    """One line per node status change, and each new review once: readable in a pipe."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.seen: dict[str, str] = {}
        self.reviews: set[str] = set()

    def show(self, snapshot: Snapshot) -> None:
        """Print what changed since the last snapshot."""
        for line in snapshot.lines:
            if line.status == "pending" or self.seen.get(line.task_id) == line.status:
                continue
            self.seen[line.task_id] = line.status
            extra = f" - {line.error}" if line.error and line.status == "failed" else ""
            print(f"  {line.task_id:<30} {line.status}{extra}", file=self.out)
        for review in snapshot.reviews:
            if review.task_id not in self.reviews:
                self.reviews.add(review.task_id)
                print("\n".join(review_lines(review)), file=self.out)
        self.out.flush()


class _LiveDrawer(_Drawer):
    """A table redrawn in place (rich's Live); its last frame stays on the screen."""

    def __init__(self, out: TextIO) -> None:
        self.live = Live(console=Console(file=out), auto_refresh=False, transient=False)

    def __enter__(self) -> _LiveDrawer:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def show(self, snapshot: Snapshot) -> None:
        """Redraw the whole run."""
        self.live.update(render(snapshot), refresh=True)


def render(snapshot: Snapshot) -> RenderableType:
    """The run as a rich table, its open reviews and failures above it."""
    table = Table(title=f"{snapshot.flow or 'run'}: {snapshot.status}", title_justify="left")
    for name, justify in (
        ("node", "left"),
        ("label", "left"),
        ("status", "left"),
        ("type", "left"),
        ("duration", "right"),
        ("attempts", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for line in snapshot.lines:
        table.add_row(
            "  " * line.depth + line.task_id,
            line.label if line.label != line.node_id else "",
            Text(line.status, style=_STYLE.get(line.status, "")),
            line.type,
            duration_text(line.duration),
            "" if line.attempts is None else str(line.attempts),
        )
    # Reviews first: a flow longer than the terminal gets its table cropped at the bottom,
    # and the decide line must stay on screen.
    parts: list[RenderableType] = []
    for review in snapshot.reviews:
        # Never broken by rich: the terminal wraps it softly, so it still copies as one line.
        parts.extend(
            Text(line, style="magenta", no_wrap=True, overflow="ignore")
            for line in review_lines(review)
        )
    parts.extend(
        Text(f"! {line.task_id}: {line.error.splitlines()[0]}", style="red")
        for line in snapshot.lines
        if line.error and line.status == "failed"
    )
    parts.append(table)
    return Group(*parts)
