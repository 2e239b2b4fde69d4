"""`meta-agent flows|run`: validating and importing flows, and starting runs."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persistence import queries
from persistence.engine import one_off_session
from workers.cli_tenant import tenant_of
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
    from flow_language.steps_format import read_drawing
    from flow_language.validation import problems_of

    drawing = read_drawing(_load_json_file(args.file))
    drawn, refused = await _with_registries(drawing.definition, settings, None)
    problems = drawing.reworded(refused) + problems_of(replace(drawing, definition=drawn))
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
    from flow_language.steps_format import read_drawing
    from flow_language.validation import problems_of

    definition = _load_json_file(args.file)
    tenant: uuid.UUID | None = None
    if args.tenant is not None:  # an id, a domain or a name, as everywhere else
        async with one_off_session(settings.require_database_url()) as session:
            tenant = await tenant_of(session, args.tenant)
    drawing = read_drawing(definition)  # stored as written; checked as the drawing it means
    drawn, refused = await _with_registries(
        drawing.definition, settings, str(tenant) if tenant else None
    )
    problems = drawing.reworded(refused) + problems_of(replace(drawing, definition=drawn))
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
            tenant_id=tenant,
            workspace_id=args.workspace,
            comment=args.comment,
        )
        declared = definition.get("triggers") if isinstance(definition, dict) else None
        triggers = (
            [t for t in declared if isinstance(t, dict)] if isinstance(declared, list) else None
        )
        if triggers is not None:  # absent: the flow's triggers stay as they are
            await queries.take_document_triggers(session, stored.workflow_id, triggers)
    print(f"imported {stored.name!r} as workflow {stored.workflow_id}, version {stored.version}")
    if triggers is not None:
        kinds = ", ".join(str(t.get("type")) for t in triggers) or "none"
        print(f"  its triggers are the document's: {kinds}")
    return 0


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """`run`: prints the new run's id, then with `--wait` follows it to its outputs.

    A stored flow that may not run now (archived, inactive, paused, a draft without
    `--draft`) and a stored flow's bad inputs are refused before anything starts, and the
    run is pinned to the version they were checked against.
    """
    from persistence.ids import parse_uuid
    from workers.client import FlowUnavailable, check_inputs, start_run, stored_flow
    from workers.temporal_client import connect
    from workflows.contract import TRIGGER_TYPES, FlowRunInput

    inputs = _json_arg(args.input, "--input")
    if not isinstance(inputs, dict):
        raise SystemExit("meta-agent: --input must be a JSON object")
    trigger_metadata = _json_arg(args.trigger_metadata, "--trigger-metadata")
    if not isinstance(trigger_metadata, dict):
        raise SystemExit("meta-agent: --trigger-metadata must be a JSON object")
    if args.trigger_type not in TRIGGER_TYPES:
        raise SystemExit(f"meta-agent: --trigger-type must be one of {', '.join(TRIGGER_TYPES)}")
    tenant_ref = args.tenant
    if tenant_ref is not None and parse_uuid(tenant_ref) is None:  # a domain or a name
        async with one_off_session(settings.require_database_url()) as session:
            tenant_ref = str(await tenant_of(session, tenant_ref))
    fields: dict[str, Any] = {
        "inputs": inputs,
        "version": args.version,
        "tenant_id": tenant_ref,
        "workspace_id": args.workspace,
        "triggered_by": args.triggered_by,
        "tags": args.tag or [],
        "trigger_type": args.trigger_type,
        "trigger_metadata": trigger_metadata,
        "draft": args.draft,
    }
    flow_name: str | None = None
    if args.flow.endswith(".json"):
        fields["definition"] = _load_json_file(args.flow)
    else:
        # The stored definition, as the run would load it, so bad inputs start nothing.
        async with one_off_session(settings.require_database_url()) as session:
            try:
                stored = await stored_flow(session, FlowRunInput(workflow_id=args.flow, **fields))
            except FlowUnavailable as exc:
                print(f"meta-agent: {exc}", file=sys.stderr)
                return 1
        # Pinned: the run loads the very version whose inputs were checked.
        fields["workflow_id"], fields["version"] = str(stored.workflow_id), stored.version
        flow_name = stored.name
        problems = check_inputs(stored.definition, inputs)
        if problems:
            return _refuse_inputs(problems)
    client = await connect(
        settings.effective_temporal_address(),
        settings.temporal_namespace,
        settings.payload_codec(),
    )
    return await started(
        client,
        start_run(
            client,
            settings.temporal_task_queue,
            FlowRunInput(**fields),
            run_id=args.id,
            flow_name=flow_name,
        ),
        settings,
        wait=args.wait,
    )


def _refuse_inputs(problems: list[str]) -> int:
    print(f"invalid inputs: {'; '.join(problems)}", file=sys.stderr)
    return 1


async def started(
    client: Any, starting: Awaitable[WorkflowHandle[Any, Any]], settings: Settings, wait: bool
) -> int:
    """Print the started run's id and, with `wait`, draw it to its end (`cli_progress`); a
    refused start prints why and exits 1 with nothing started.
    """
    from workers.client import FlowUnavailable, InvalidInputs, RetryRefused, RunIdRefused

    try:
        handle = await starting
    except InvalidInputs as exc:
        return _refuse_inputs(exc.problems)
    except (RetryRefused, RunIdRefused, FlowUnavailable) as exc:
        print(f"meta-agent: {exc}", file=sys.stderr)
        return 1
    print(handle.id, flush=True)
    if not wait:
        return 0
    from workers.cli_progress import follow
    from workers.cli_runs import optional_database_url

    return await follow(client, handle.id, optional_database_url(settings), sys.stdout)


def add_commands(sub: Any) -> None:
    """Add `flows validate|import` and `run` (`runs` is in `cli_runs`)."""
    flows = sub.add_parser("flows", help="validate and import flow definitions")
    flows_sub = flows.add_subparsers(dest="flows_command", required=True, metavar="ACTION")
    validate = flows_sub.add_parser(
        "validate", help="check a flow JSON file (React Flow or steps); exit 1 if invalid"
    )
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_flows_validate)
    imp = flows_sub.add_parser("import", help="store a flow as a new version of a workflow")
    imp.add_argument("file")
    imp.add_argument("--name", help="workflow name (default: the file name)")
    imp.add_argument("--tenant", help="the flow's tenant (its id, domain or name)")
    imp.add_argument("--workspace", help="workspace id (uuid)")
    imp.add_argument("--comment", help="version comment")
    imp.add_argument("--force", action="store_true", help="store even if it does not validate")
    imp.set_defaults(handler=cmd_flows_import)

    run = sub.add_parser("run", help="start a run of a stored flow (name or id) or a JSON file")
    run.add_argument("flow", help="workflow id, workflow name, or path to a .json definition")
    run.add_argument("--input", default="{}", help="the run's inputs as a JSON object")
    run.add_argument("--version", type=int, help="flow version (default: current)")
    run.add_argument("--id", help="Temporal workflow ID to use (default: flow-<uuid>)")
    run.add_argument("--tenant", help="the run's tenant (its id, domain or name)")
    run.add_argument("--workspace", help="workspace id")
    run.add_argument("--triggered-by", help="user id")
    run.add_argument("--tag", action="append", help="tag (repeatable)")
    run.add_argument(
        "--draft",
        action="store_true",
        help="run the flow's draft version on purpose (default: only a published one runs)",
    )
    run.add_argument(
        "--trigger-type",
        default="manual",
        help="what started the run: manual (default), schedule, webhook or event",
    )
    run.add_argument(
        "--trigger-metadata",
        default="{}",
        help='what the trigger said, a JSON object (e.g. \'{"scheduled_time": "..."}\')',
    )
    run.add_argument("--wait", action="store_true", help="follow node progress and print outputs")
    run.set_defaults(handler=cmd_run)
