"""`meta-agent runs list|show|cancel|retry`: reading runs back, and steering them.

Lists and shows read Postgres (what the platform's UI reads too); `show --follow` adds the
run's live `status` query and draws it until it ends (`cli_progress`).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from persistence import retry_queries, run_views
from persistence.engine import one_off_session
from persistence.retry_queries import RetryLinks
from persistence.run_views import RunDetail
from workers.cli_tenant import TENANT_HELP, tenant_of
from workers.run_progress import Review, node_lines, plain_table
from workers.settings import Settings, SettingsError


def optional_database_url(settings: Settings) -> str | None:
    """The database, when one is configured or a dev stack runs: following a run can do
    without (it then shows what the `status` query says).
    """
    try:
        return settings.require_database_url()
    except SettingsError:
        return None


async def connect_client(settings: Settings) -> Any:
    """A Temporal client as the settings (or a running dev stack) say."""
    from workers.temporal_client import connect

    return await connect(
        settings.effective_temporal_address(),
        settings.temporal_namespace,
        settings.payload_codec(),
    )


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


async def cmd_runs_list(args: argparse.Namespace, settings: Settings) -> int:
    """`runs list`: recent runs as Postgres recorded them, with their flow's name; the runs
    of `workflow` nodes only with `--all`.
    """
    async with one_off_session(settings.require_database_url()) as session:
        tenant = await tenant_of(session, args.tenant)
        runs = await run_views.list_runs(
            session, status=args.status, limit=args.limit, tenant_id=tenant, children=args.all
        )
    if not runs:
        print("no runs")
        return 0
    cells = [("RUN", "STATUS", "STARTED", "FLOW")]
    for listed in runs:
        run = listed.run
        flow = (
            f"{listed.flow_name or run.workflow_id} v{run.workflow_version}"
            if run.workflow_id
            else "(inline)"
        )
        if run.parent_run_id is not None:
            flow += "  (sub-flow)"
        cells.append((run.orchestrator_run_id, run.status, _when(run.started_at), flow))
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    for row in cells:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    return 0


async def cmd_runs_show(args: argparse.Namespace, settings: Settings) -> int:
    """`runs show`: a run's row, its nodes in graph order and its outputs, as Postgres last
    recorded them; with `--follow`, drawn live until it ends.
    """
    from workers.cli_progress import decider

    async with one_off_session(settings.require_database_url()) as session:
        tenant = await tenant_of(session, args.tenant)
        detail = await run_views.run_detail(session, args.run, tenant)
        links = await retry_queries.retry_links(session, detail.run)
        # Who may decide is judged in the run's own tenant, whatever --tenant said.
        run_tenant = detail.run.tenant_id
        reviews = [
            _review(task, await decider(session, task.assignee_id, task.assignee_role, run_tenant))
            for task in detail.open_reviews
        ]
    if args.follow:
        from workers.cli_progress import follow

        client = await connect_client(settings)
        print(detail.run.orchestrator_run_id, flush=True)
        return await follow(
            client, detail.run.orchestrator_run_id, settings.require_database_url(), sys.stdout
        )
    print("\n".join(describe(detail, reviews, links)))
    return 0


def _review(task: Any, decide_as: str | None) -> Review:
    return Review(
        task_id=str(task.id),
        title=task.title,
        decision_type=task.decision_type,
        options=list(task.decision_options or []),
        assignee_id=str(task.assignee_id) if task.assignee_id else None,
        assignee_role=task.assignee_role,
        deadline=task.deadline.isoformat() if task.deadline else None,
        decide_as=decide_as,
    )


def describe(
    detail: RunDetail, reviews: list[Review], links: RetryLinks | None = None
) -> list[str]:
    """`runs show` as lines: never `completed None` for a run still going."""
    from workers.cli_progress import review_lines

    run = detail.run
    flow = f"{detail.flow_name} v{run.workflow_version}" if detail.flow_name else "(inline)"
    ended = run.completed_at is not None
    out = [
        f"run      {run.orchestrator_run_id} ({run.id})",
        f"flow     {flow}",
        f"status   {run.status}",
        f"started  {_when(run.started_at)}"
        + (f"   completed {_when(run.completed_at)}" if ended else "   (still running)"),
    ]
    if links is not None and links.retry_of:
        out.append(f"retry of {links.retry_of}")
    if links is not None and links.retried_by:
        out.append(f"retried  {', '.join(links.retried_by)}")
    if run.error:
        out.append(f"error    {run.error}")
    out.append("nodes")
    now = None if ended else datetime.now(UTC)
    out.extend(plain_table(node_lines(detail.definition, detail.tasks, now=now)))
    for review in reviews:
        out.extend(review_lines(review))
    out.append("outputs")
    out.append(json.dumps(run.outputs, indent=2, ensure_ascii=False, default=str))
    return out


async def cmd_runs_cancel(args: argparse.Namespace, settings: Settings) -> int:
    """`runs cancel`: asks and returns; the run records its own end."""
    from workers.client import cancel

    await cancel(await connect_client(settings), args.run)
    print(f"cancellation requested for {args.run}")
    return 0


async def cmd_runs_retry(args: argparse.Namespace, settings: Settings) -> int:
    """`runs retry`: the same request again under a new id, reusing the outputs of the nodes
    that completed unless `--from-scratch`; only a run that did not complete.
    """
    from workers.cli_flows import started
    from workers.client import retry

    client = await connect_client(settings)
    # InvalidInputs here: the stored flow's inputSchema changed since the first run.
    again = retry(client, args.run, new_run_id=args.id, from_scratch=args.from_scratch)
    return await started(client, again, settings, wait=args.wait)


def add_commands(sub: Any) -> None:
    """Add `runs list|show|cancel|retry`."""
    runs = sub.add_parser("runs", help="list, show, follow, cancel or retry runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    lst = runs_sub.add_parser("list", help="recent runs from Postgres (not sub-flow runs)")
    lst.add_argument("--status", help="only runs with this status")
    lst.add_argument("--limit", type=int, default=20)
    lst.add_argument("--tenant", help=TENANT_HELP)
    lst.add_argument(
        "--all",
        "--children",
        dest="all",
        action="store_true",
        help="also the runs of `workflow` nodes (sub-flows)",
    )
    lst.set_defaults(handler=cmd_runs_list)
    show = runs_sub.add_parser("show", help="one run with its node executions in graph order")
    show.add_argument("run", help="orchestrator run id (the Temporal workflow ID)")
    show.add_argument("--tenant", help=TENANT_HELP)
    show.add_argument(
        "--follow", action="store_true", help="draw the run live until it ends, then its outputs"
    )
    show.set_defaults(handler=cmd_runs_show)
    cancel = runs_sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("run")
    cancel.set_defaults(handler=cmd_runs_cancel)
    again = runs_sub.add_parser(
        "retry",
        help="start a failed or cancelled run again under a new id, reusing what its completed "
        "nodes returned",
    )
    again.add_argument("run")
    again.add_argument("--id", help="Temporal workflow ID of the new run (default: flow-<uuid>)")
    again.add_argument(
        "--from-scratch",
        action="store_true",
        help="run every node again (default: reuse the outputs of the nodes that completed)",
    )
    again.add_argument("--wait", action="store_true", help="follow node progress and print outputs")
    again.set_defaults(handler=cmd_runs_retry)
