"""`meta-agent schedules sync|list`: the flows' Temporal Schedules, by hand.

The worker syncs them by itself every SCHEDULE_SYNC_INTERVAL_SECONDS; `sync` does one
sync now and says what it did (an operator fixing a flow's cron sees at once whether
Temporal takes it), and `list` shows the engine's schedules as Temporal holds them.
"""

from __future__ import annotations

import argparse
from datetime import UTC
from typing import Any

from persistence.engine import create_engine, one_off_session, session_factory
from workers.cli_runs import connect_client
from workers.cli_tenant import TENANT_HELP, tenant_of
from workers.schedule_sync import ScheduleSync
from workers.settings import Settings


async def _sync_of(args: argparse.Namespace, settings: Settings) -> tuple[ScheduleSync, Any]:
    """The sync of the configured task queue (one tenant's schedules with `--tenant`) and the
    engine its sessions use, which the caller disposes of.
    """
    url = settings.require_database_url()
    async with one_off_session(url) as session:
        tenant = await tenant_of(session, args.tenant)
    client = await connect_client(settings)
    engine = create_engine(url, pool_size=1)
    sync = ScheduleSync(
        client, session_factory(engine), task_queue=settings.temporal_task_queue, tenant_id=tenant
    )
    return sync, engine


async def cmd_schedules_sync(args: argparse.Namespace, settings: Settings) -> int:
    """`schedules sync`: one sync now (after any a worker is doing); exit 1 on a problem."""
    sync, engine = await _sync_of(args, settings)
    try:
        report = await sync.sync(wait=True)
    finally:
        await engine.dispose()
    assert report is not None  # a waiting sync always runs
    for line in report.lines():
        print(line)
    return 1 if report.problems else 0


async def cmd_schedules_list(args: argparse.Namespace, settings: Settings) -> int:
    """`schedules list`: the engine's schedules of this task queue, as Temporal has them."""
    sync, engine = await _sync_of(args, settings)
    try:
        described = await sync.describe_owned()
    finally:
        await engine.dispose()
    if not described:
        print("no schedules")
        return 0
    cells = [("SCHEDULE", "FLOW", "TENANT", "CRON", "TIME ZONE", "NEXT RUN", "STATE")]
    for owned, made in sorted(described, key=lambda pair: pair[0].schedule_id):
        upcoming = owned.next_times[0] if owned.next_times else None
        cells.append(
            (
                owned.schedule_id,
                str(made.get("flow") or owned.record.get("flow") or "-"),
                str(made.get("tenant") or owned.record.get("tenant") or "-"),
                str(made.get("cron") or "-"),
                str(made.get("timezone") or "-"),
                upcoming.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if upcoming else "-",
                f"paused ({owned.note})" if owned.paused else "active",
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]) - 1)]
    for row in cells:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1])
    return 0


def add_commands(sub: Any) -> None:
    """Add `schedules sync|list`."""
    schedules = sub.add_parser(
        "schedules", help="sync or list the Temporal Schedules of the flows' cron triggers"
    )
    actions = schedules.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")
    sync = actions.add_parser(
        "sync",
        help="create, update, pause, unpause and delete Temporal Schedules to match the flows "
        "now, and print what changed (exit 1 if a flow's schedule has a problem)",
    )
    sync.add_argument("--tenant", help=TENANT_HELP)
    sync.set_defaults(handler=cmd_schedules_sync)
    listing = actions.add_parser("list", help="the engine's schedules as Temporal holds them")
    listing.add_argument("--tenant", help=TENANT_HELP)
    listing.set_defaults(handler=cmd_schedules_list)
