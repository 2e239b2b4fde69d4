"""`meta-agent api`, `hooks add` and `events emit`: runs that outside systems start.

`hooks add` is the one way to give a flow a webhook that cannot be guessed nor collide
with another tenant's: a random id (192 bits), and a random signing secret stored in the
flow's tenant's encrypted store, printed once. `events emit` is the operator's trusted
path to what `POST /events/NAME` does for a tenant that signs it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from persistence import queries, secret_queries, trigger_queries
from persistence.engine import create_engine, one_off_session, session_factory
from persistence.models import Workflow
from persistence.secret_keys import SecretDecryptError
from workers.cli_runs import connect_client
from workers.settings import Settings


async def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    """`api`: serve webhooks, events and run reads until SIGINT/SIGTERM."""
    from workers.api.serve import run_api
    from workers.signals import stop_event_on_signals
    from workers.temporal_client import connect_patiently

    updates = {k: v for k, v in (("api_host", args.host), ("api_port", args.port)) if v}
    settings = settings.model_copy(update=updates)
    settings.require_database_url()
    settings.require_secret_keys()  # every signature check opens a stored secret
    stop = stop_event_on_signals()
    client = await connect_patiently(
        settings.effective_temporal_address(),
        settings.temporal_namespace,
        settings.payload_codec(),
        stop,
    )
    if client is None:
        return 0
    await run_api(settings, client, stop)
    return 0


async def cmd_hooks_add(args: argparse.Namespace, settings: Settings) -> int:
    """`hooks add --flow X`: a new webhook trigger on the flow, and its signing secret."""
    from workers.api.serve import api_url

    keys = settings.require_secret_keys()
    trigger_id = "wh_" + secrets.token_urlsafe(24)
    secret_name = f"WEBHOOK_{secrets.token_hex(8).upper()}"
    secret = secrets.token_urlsafe(32)
    async with one_off_session(settings.require_database_url()) as session, session.begin():
        tenant = await secret_queries.find_tenant(session, args.tenant) if args.tenant else None
        flow_id = await queries.find_workflow_id(session, args.flow, tenant_id=tenant)
        flow = await session.get(Workflow, flow_id)
        if flow is None or (tenant is not None and flow.tenant_id != tenant):
            raise queries.NotFoundError(f"no workflow {args.flow!r}")
        if flow.tenant_id is None:
            raise SystemExit(
                f"meta-agent: flow {args.flow!r} belongs to no tenant; a webhook's secret is "
                "kept in its tenant's store, so only a tenant's flow can have one"
            )
        if await trigger_queries.hook_id_used(session, trigger_id):  # pragma: no cover
            raise SystemExit("meta-agent: the random id is taken (!); run the command again")
        await secret_queries.set_secret(session, keys, flow.tenant_id, secret_name, secret)
        config: dict[str, Any] = {"secretName": secret_name}
        if args.tolerance is not None:
            config["toleranceSeconds"] = args.tolerance
        trigger = {"type": "webhook", "id": trigger_id, "config": config}
        await trigger_queries.add_trigger(session, flow.id, trigger)
    print(f"webhook of flow {flow.name!r} (tenant {flow.tenant_id})")
    print(f"  URL     POST {api_url(settings)}/hooks/{trigger_id}")
    print(f"  secret  {secret}")
    print(f"          (stored as the tenant's secret {secret_name}; not shown again)")
    print("  sign    X-Meta-Timestamp: <unix seconds>")
    print('          X-Meta-Signature: sha256=<HMAC-SHA256(secret, "<timestamp>." + body)>')
    return 0


async def cmd_events_emit(args: argparse.Namespace, settings: Settings) -> int:
    """`events emit NAME --tenant T`: what a tenant's signed `POST /events/NAME` does."""
    from workers.api.events import check_name, emit

    try:
        check_name(args.name)
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise SystemExit(f"meta-agent: {exc}") from None
    url = settings.require_database_url()
    async with one_off_session(url) as session:
        tenant = await secret_queries.find_tenant(session, args.tenant)
        id_key = await _event_id_key(session, settings, tenant) if args.id else ""
    client = await connect_client(settings)
    engine = create_engine(url, pool_size=2)
    try:
        done = await emit(
            client,
            settings.temporal_task_queue,
            session_factory(engine),
            tenant,
            args.name,
            payload,
            event_id=args.id,
            id_key=id_key,
        )
    finally:
        await engine.dispose()
    if args.json:
        print(json.dumps(done.as_json()))
    else:
        for run in done.started:
            print(f"started  {run['run_id']}  ({run['flow']})")
        for run_id in done.woken:
            print(f"woke     {run_id}")
        if not done.started and not done.woken:
            print(f"no flow of tenant {tenant} subscribes to {args.name!r} and no run waits on it")
    for refusal in done.refused:
        problems = "; ".join(refusal.get("problems", []))
        print(
            f"meta-agent: flow {refusal['flow']!r} refused: {refusal['error']}"
            f"{': ' + problems if problems else ''}",
            file=sys.stderr,
        )
    return 1 if done.refused else 0


async def _event_id_key(session: AsyncSession, settings: Settings, tenant: uuid.UUID) -> str:
    """The tenant's API secret, which keys the run ids of an event id (so the CLI and a
    signed `POST /events` give a redelivery the same runs); "" when it has none or it
    cannot be opened here: its run ids are then guessable, and only the check of whose
    run holds one keeps a planted run from being answered with.
    """
    keys = settings.secret_keys()
    name = settings.api_tenant_secret_name
    sealed = await secret_queries.sealed_secrets(session, tenant, [name])
    if keys is None or name not in sealed:
        return ""
    try:
        return keys.open(tenant, name, sealed[name])
    except SecretDecryptError:
        return ""


def _tolerance(text: str) -> int:
    """A tolerance of 1 s to a day, as a trigger's config may hold one."""
    value = int(text)
    if not 1 <= value <= trigger_queries.MAX_TOLERANCE_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text}: from 1 to {trigger_queries.MAX_TOLERANCE_SECONDS} seconds"
        )
    return value


def add_commands(sub: Any) -> None:
    """Add `api`, `hooks add` and `events emit`."""
    api = sub.add_parser(
        "api",
        help="serve webhooks (POST /hooks/ID), events (POST /events/NAME) and GET /runs/ID",
        description="The HTTP API outside systems start runs through (production process; "
        "`meta-agent dev` serves it too). Needs DATABASE_URL and SECRETS_KEYS.",
    )
    api.add_argument("--host", help="listen address (default: API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="listen port (default: API_PORT, 8088)")
    api.set_defaults(handler=cmd_api)

    hooks = sub.add_parser("hooks", help="webhooks that start a flow")
    hooks_sub = hooks.add_subparsers(dest="hooks_command", required=True, metavar="ACTION")
    add = hooks_sub.add_parser(
        "add", help="give a flow a new webhook: a random id and signing secret (printed once)"
    )
    add.add_argument("--flow", required=True, help="the flow's id or name")
    add.add_argument("--tenant", help="the flow's tenant (id, domain or name), to find it by name")
    add.add_argument(
        "--tolerance",
        type=_tolerance,
        metavar="SECONDS",
        help="how far X-Meta-Timestamp may be from the server's clock (default 300)",
    )
    add.set_defaults(handler=cmd_hooks_add)

    events = sub.add_parser("events", help="events that start flows and wake waiting runs")
    events_sub = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    emit = events_sub.add_parser(
        "emit",
        help="start the tenant's flows subscribed to NAME and wake its runs waiting on it",
    )
    emit.add_argument("name", help="the event's name (letters, digits, `_ . : -`)")
    emit.add_argument("--tenant", required=True, help="tenant id, domain or name")
    emit.add_argument("--payload", default="{}", help="the event's payload, JSON (default {})")
    emit.add_argument("--id", help="the event's id: emitting it again starts no flow twice")
    emit.add_argument("--json", action="store_true", help="print what it did as JSON")
    emit.set_defaults(handler=cmd_events_emit)
