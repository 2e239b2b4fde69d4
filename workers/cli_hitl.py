"""`meta-agent hitl`: the reviewer's side. Decisions go through the `submit_hitl_decision`
update, so a refused decision is reported at once and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from persistence import hitl_queries, user_queries
from persistence.engine import one_off_session
from persistence.ids import parse_uuid, require_uuid
from persistence.queries import NotFoundError
from workers.cli_tenant import TENANT_HELP, tenant_of
from workers.settings import Settings


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return require_uuid(value, what)
    except ValueError as exc:
        raise SystemExit(f"meta-agent: {exc}") from None


async def cmd_hitl_list(args: argparse.Namespace, settings: Settings) -> int:
    """`hitl list`: one line per task; a task assigned to a role shows `role:NAME`."""
    async with one_off_session(settings.require_database_url()) as session:
        rows = await hitl_queries.list_tasks(
            session,
            assignee=_uuid(args.assignee, "--assignee") if args.assignee else None,
            role=args.role,
            status=args.status,
            limit=args.limit,
            tenant_id=await tenant_of(session, args.tenant),
        )
    if not rows:
        print("no tasks")
        return 0
    print(
        f"{'TASK':<38} {'STATUS':<11} {'P':<2} {'TYPE':<11} {'ASSIGNEE':<20} {'DEADLINE':<17} TITLE"
    )
    for task, _run in rows:
        who = f"role:{task.assignee_role}" if task.assignee_role else str(task.assignee_id or "-")
        deadline = task.deadline.strftime("%Y-%m-%d %H:%M") if task.deadline else "-"
        print(
            f"{task.id!s:<38} {task.status:<11} {task.priority or '-'!s:<2} "
            f"{task.decision_type:<11} {who[:20]:<20} {deadline:<17} {task.title}"
        )
    return 0


async def cmd_hitl_show(args: argparse.Namespace, settings: Settings) -> int:
    """`hitl show`: one task as JSON, with the context its reviewer decides on."""
    async with one_off_session(settings.require_database_url()) as session:
        found = await hitl_queries.task_with_run(
            session, _uuid(args.task, "TASK"), await tenant_of(session, args.tenant)
        )
    if found is None:
        raise NotFoundError(f"no HITL task {args.task}")
    task, run_id = found
    print(
        json.dumps(
            {
                "id": str(task.id),
                "run": run_id,
                "title": task.title,
                "description": task.description,
                "status": task.status,
                "decision_type": task.decision_type,
                "options": task.decision_options,
                "assignee_id": str(task.assignee_id) if task.assignee_id else None,
                "assignee_role": task.assignee_role,
                "priority": task.priority,
                "deadline": task.deadline.isoformat() if task.deadline else None,
                "context": task.context,
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0


def _decision(args: argparse.Namespace) -> dict[str, Any]:
    if args.approve:
        return {"approved": True}
    if args.reject:
        return {"approved": False}
    if args.choice is not None:
        return {"choice": args.choice}
    if args.form is not None:
        try:
            return {"form": json.loads(args.form)}
        except json.JSONDecodeError as exc:
            raise SystemExit(f"meta-agent: --form is not JSON: {exc}") from None
    if args.annotations is not None:
        try:
            return {"annotations": json.loads(args.annotations)}
        except json.JSONDecodeError as exc:
            raise SystemExit(f"meta-agent: --annotations is not JSON: {exc}") from None
    return {"text": args.text}


async def cmd_hitl_decide(args: argparse.Namespace, settings: Settings) -> int:
    """`hitl decide`: through the run's update, so a refused decision exits 1, changing nothing."""
    from workers.client import DecisionRefused, decide
    from workers.temporal_client import connect

    task_id = _uuid(args.task, "TASK")
    decided_by = args.as_user
    async with one_off_session(settings.require_database_url()) as session:
        found = await hitl_queries.task_with_run(
            session, task_id, await tenant_of(session, args.tenant)
        )
        if found is None:
            raise NotFoundError(f"no HITL task {args.task}")
        if parse_uuid(decided_by) is None:  # a username: the run judges the user id it names
            decided_by = str((await user_queries.find_user(session, decided_by)).id)
    _task, run_id = found
    client = await connect(
        settings.effective_temporal_address(),
        settings.temporal_namespace,
        settings.payload_codec(),
    )
    try:
        row = await decide(client, run_id, str(task_id), _decision(args), decided_by, args.comment)
    except DecisionRefused as exc:
        print(f"meta-agent: decision refused: {exc.reason}")
        return 1
    print(json.dumps(row, indent=2, ensure_ascii=False))
    return 0


def add_commands(sub: Any) -> None:
    """Add `hitl list|show|decide`; `decide` takes exactly one kind of decision."""
    hitl = sub.add_parser("hitl", help="the reviewers' inbox: list, show and decide HITL tasks")
    hitl_sub = hitl.add_subparsers(dest="hitl_command", required=True, metavar="ACTION")
    lst = hitl_sub.add_parser("list", help="open tasks (or those with --status)")
    lst.add_argument("--assignee", help="user id")
    lst.add_argument("--role", help="assignee role")
    lst.add_argument(
        "--status", help="pending, assigned, in_progress, escalated, completed, expired, cancelled"
    )
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--tenant", help=TENANT_HELP)
    lst.set_defaults(handler=cmd_hitl_list)
    show = hitl_sub.add_parser("show", help="one task with its context")
    show.add_argument("task")
    show.add_argument("--tenant", help=TENANT_HELP)
    show.set_defaults(handler=cmd_hitl_show)
    decide = hitl_sub.add_parser("decide", help="decide a task (through the run's update)")
    decide.add_argument("task")
    what = decide.add_mutually_exclusive_group(required=True)
    what.add_argument("--approve", action="store_true")
    what.add_argument("--reject", action="store_true")
    what.add_argument("--choice")
    what.add_argument("--form", help="JSON object")
    what.add_argument("--annotations", help="JSON list")
    what.add_argument("--text")
    decide.add_argument("--comment")
    decide.add_argument(
        "--as", dest="as_user", required=True, help="the deciding user (username or id)"
    )
    decide.add_argument("--tenant", help=TENANT_HELP)
    decide.set_defaults(handler=cmd_hitl_decide)
