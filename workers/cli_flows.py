"""`meta-agent flows|run|runs`: importing flows, starting runs and reading them back."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persistence import queries, retry_queries
from persistence.engine import one_off_session
from workers.cli_tenant import TENANT_HELP, tenant_of
from workers.settings import Settings, SettingsError

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle


def _load_json_file(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise SystemExit(f"meta-agent: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"meta-agent: {path} is not JSON: {exc}") from None


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"meta-agent: {what} is not JSON: {exc}") from None


async def _with_registries(
    definition: Any, settings: Settings, tenant_id: str | None
) -> tuple[Any, list[str]]:
    """The definition as a run would see it: `agentId` / `modelId` rows merged in.

    Without a database the references cannot be checked; the definition is validated as
    it stands and a note says so.
    """
    from persistence.registry_queries import apply_registries, uses_registries

    if not uses_registries(definition):
        return definition, []
    try:
        url = settings.require_database_url()
    except SettingsError:
        print("note: agentId / modelId not resolved (no database); their rows' config is missing")
        return definition, []
    async with one_off_session(url) as session:
        return await apply_registries(session, definition, tenant_id)


async def cmd_flows_validate(args: argparse.Namespace, settings: Settings) -> int:
    """`flows validate`: exit 1 listing every problem; registry references are checked when a
    database is configured.
    """
    from flow_language.validation import problems_of

    definition, refused = await _with_registries(_load_json_file(args.file), settings, None)
    problems = refused + problems_of(definition)
    if not problems:
        print(f"{args.file}: valid")
        return 0
    print(f"{args.file}: {len(problems)} problem(s)")
    for problem in problems:
        print(f"  - {problem}")
    return 1


async def cmd_flows_import(args: argparse.Namespace, settings: Settings) -> int:
    """`flows import`: a new version, refused if it has problems (unless `--force`).

    The definition is stored as written: each run resolves its `agentId` / `modelId` again.
    """
    from flow_language.validation import problems_of

    definition = _load_json_file(args.file)
    resolved, refused = await _with_registries(definition, settings, args.tenant)
    problems = refused + problems_of(resolved)
    if problems and not args.force:
        print(f"{args.file}: not imported, {len(problems)} problem(s) (--force stores it anyway)")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    async with one_off_session(settings.require_database_url()) as session, session.begin():
        stored = await queries.save_workflow_version(
            session,
            name=args.name or Path(args.file).stem,
            definition=definition,
            tenant_id=args.tenant,
            workspace_id=args.workspace,
            comment=args.comment,
        )
    print(f"imported {stored.name!r} as workflow {stored.workflow_id}, version {stored.version}")
    return 0


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """`run`: prints the new run's id, then with `--wait` follows it to its outputs.

    A stored flow's inputs are checked before anything starts, and the run is pinned to the
    version they were checked against.
    """
    from persistence.ids import parse_uuid
    from workers.client import check_inputs, start_run
    from workers.temporal_client import connect
    from workflows.contract import FlowRunInput

    inputs = _json_arg(args.input, "--input")
    if not isinstance(inputs, dict):
        raise SystemExit("meta-agent: --input must be a JSON object")
    fields: dict[str, Any] = {
        "inputs": inputs,
        "version": args.version,
        "tenant_id": args.tenant,
        "workspace_id": args.workspace,
        "triggered_by": args.triggered_by,
        "tags": args.tag or [],
    }
    if args.flow.endswith(".json"):
        fields["definition"] = _load_json_file(args.flow)
    else:
        # The stored definition, as the run would load it, so bad inputs start nothing.
        tenant = parse_uuid(args.tenant)
        async with one_off_session(settings.require_database_url()) as session:
            found = await queries.find_workflow_id(session, args.flow, tenant_id=tenant)
            stored = await queries.load_definition(session, found, args.version, tenant_id=tenant)
        # Pinned: the run loads the very version whose inputs were checked.
        fields["workflow_id"], fields["version"] = str(stored.workflow_id), stored.version
        problems = check_inputs(stored.definition, inputs)
        if problems:
            return _refuse_inputs(problems)
    client = await connect(
        settings.effective_temporal_address(),
        settings.temporal_namespace,
        settings.payload_codec(),
    )
    return await _started(
        client,
        start_run(client, settings.temporal_task_queue, FlowRunInput(**fields), run_id=args.id),
        wait=args.wait,
    )


def _refuse_inputs(problems: list[str]) -> int:
    print(f"invalid inputs: {'; '.join(problems)}", file=sys.stderr)
    return 1


async def _started(client: Any, starting: Awaitable[WorkflowHandle[Any, Any]], wait: bool) -> int:
    """Print the started run's id and, with `wait`, follow it to its end; a refused start
    prints why and exits 1 with nothing started.
    """
    from workers.client import InvalidInputs, RetryRefused, RunIdRefused

    try:
        handle = await starting
    except InvalidInputs as exc:
        return _refuse_inputs(exc.problems)
    except (RetryRefused, RunIdRefused) as exc:
        print(f"meta-agent: {exc}", file=sys.stderr)
        return 1
    print(handle.id, flush=True)
    if not wait:
        return 0
    return await _follow(client, handle.id)


async def _follow(client: Any, run_id: str) -> int:
    """Print node progress as it changes, then the outputs (or the failure)."""
    from temporalio.client import WorkflowFailureError

    from workers.client import failure_text, get_status, result

    seen: dict[str, str] = {}

    async def print_changes() -> None:
        try:
            status = await get_status(client, run_id)
        except Exception:  # between tasks, or no worker to answer: try again later
            return
        for task_id, node in status.get("nodes", {}).items():
            state = node.get("status", "?")
            if seen.get(task_id) != state:
                seen[task_id] = state
                extra = f" - {node['error']}" if node.get("error") and state == "failed" else ""
                print(f"  {task_id:<30} {state}{extra}", flush=True)

    result_task = asyncio.ensure_future(result(client, run_id))
    while not result_task.done():
        await print_changes()
        await asyncio.wait({result_task}, timeout=0.5)
    await print_changes()  # a fast run may finish before the first look
    try:
        outcome = result_task.result()
    except WorkflowFailureError as exc:
        print(f"run {run_id} {failure_text(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(outcome.outputs, indent=2, ensure_ascii=False))
    return 0


async def cmd_runs_list(args: argparse.Namespace, settings: Settings) -> int:
    """`runs list`: recent runs as Postgres recorded them, not as Temporal sees them."""
    async with one_off_session(settings.require_database_url()) as session:
        tenant = await tenant_of(session, args.tenant)
        runs = await queries.list_runs(
            session, status=args.status, limit=args.limit, tenant_id=tenant
        )
    if not runs:
        print("no runs")
        return 0
    print(f"{'RUN':<40} {'STATUS':<13} {'STARTED':<20} FLOW")
    for run in runs:
        started = run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "-"
        flow = f"{run.workflow_id} v{run.workflow_version}" if run.workflow_id else "(inline)"
        print(f"{run.orchestrator_run_id:<40} {run.status:<13} {started:<20} {flow}")
    return 0


async def cmd_runs_show(args: argparse.Namespace, settings: Settings) -> int:
    """`runs show`: a run's row, its node rows and outputs, as Postgres last recorded them."""
    async with one_off_session(settings.require_database_url()) as session:
        run, tasks = await queries.run_with_tasks(
            session, args.run, await tenant_of(session, args.tenant)
        )
        links = await retry_queries.retry_links(session, run)
    print(f"run      {run.orchestrator_run_id} ({run.id})")
    if links.retry_of:
        print(f"retry of {links.retry_of}")
    if links.retried_by:
        print(f"retried  {', '.join(links.retried_by)}")
    print(f"status   {run.status}")
    print(f"started  {run.started_at}   completed {run.completed_at}")
    if run.error:
        print(f"error    {run.error}")
    print("nodes")
    for task in tasks:
        tries = f" ({task.retry_count} retries)" if task.retry_count else ""
        error = f" - {task.error.splitlines()[0]}" if task.error else ""
        reused = " (reused)" if task.reused_from else ""
        print(f"  {task.orchestrator_task_id:<30} {task.status:<10}{tries}{reused}{error}")
    print("outputs")
    print(json.dumps(run.outputs, indent=2, ensure_ascii=False, default=str))
    return 0


async def cmd_runs_cancel(args: argparse.Namespace, settings: Settings) -> int:
    """`runs cancel`: asks and returns; the run records its own end."""
    from workers.client import cancel
    from workers.temporal_client import connect

    client = await connect(
        settings.effective_temporal_address(),
        settings.temporal_namespace,
        settings.payload_codec(),
    )
    await cancel(client, args.run)
    print(f"cancellation requested for {args.run}")
    return 0


async def cmd_runs_retry(args: argparse.Namespace, settings: Settings) -> int:
    """`runs retry`: the same request again under a new id, reusing the outputs of the nodes
    that completed unless `--from-scratch`; only a failed or cancelled run.
    """
    from workers.client import retry
    from workers.temporal_client import connect

    client = await connect(
        settings.effective_temporal_address(),
        settings.temporal_namespace,
        settings.payload_codec(),
    )
    # InvalidInputs here: the stored flow's inputSchema changed since the first run.
    again = retry(client, args.run, new_run_id=args.id, from_scratch=args.from_scratch)
    return await _started(client, again, wait=args.wait)


def add_commands(sub: Any) -> None:
    """Add `flows validate|import`, `run` and `runs list|show|cancel|retry`."""
    flows = sub.add_parser("flows", help="validate and import flow definitions")
    flows_sub = flows.add_subparsers(dest="flows_command", required=True, metavar="ACTION")
    validate = flows_sub.add_parser(
        "validate", help="check a React Flow JSON file; exit 1 if invalid"
    )
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_flows_validate)
    imp = flows_sub.add_parser("import", help="store a flow as a new version of a workflow")
    imp.add_argument("file")
    imp.add_argument("--name", help="workflow name (default: the file name)")
    imp.add_argument("--tenant", help="tenant id (uuid)")
    imp.add_argument("--workspace", help="workspace id (uuid)")
    imp.add_argument("--comment", help="version comment")
    imp.add_argument("--force", action="store_true", help="store even if it does not validate")
    imp.set_defaults(handler=cmd_flows_import)

    run = sub.add_parser("run", help="start a run of a stored flow (name or id) or a JSON file")
    run.add_argument("flow", help="workflow id, workflow name, or path to a .json definition")
    run.add_argument("--input", default="{}", help="the run's inputs as a JSON object")
    run.add_argument("--version", type=int, help="flow version (default: current)")
    run.add_argument("--id", help="Temporal workflow ID to use (default: flow-<uuid>)")
    run.add_argument("--tenant", help="tenant id")
    run.add_argument("--workspace", help="workspace id")
    run.add_argument("--triggered-by", help="user id")
    run.add_argument("--tag", action="append", help="tag (repeatable)")
    run.add_argument("--wait", action="store_true", help="follow node progress and print outputs")
    run.set_defaults(handler=cmd_run)

    runs = sub.add_parser("runs", help="list, show or cancel runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    lst = runs_sub.add_parser("list", help="recent runs from Postgres")
    lst.add_argument("--status", help="only runs with this status")
    lst.add_argument("--limit", type=int, default=20)
    lst.add_argument("--tenant", help=TENANT_HELP)
    lst.set_defaults(handler=cmd_runs_list)
    show = runs_sub.add_parser("show", help="one run with its node executions")
    show.add_argument("run", help="orchestrator run id (the Temporal workflow ID)")
    show.add_argument("--tenant", help=TENANT_HELP)
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
