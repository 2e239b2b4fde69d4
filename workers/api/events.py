"""Emitting an event for one tenant: start its subscribed flows, wake its waiting runs.

Used by `POST /events/<name>` (tenant-signed) and `meta-agent events emit` (the operator's
trusted path). Both reach the named tenant's flows and runs only:

- **Subscribed flows** are the tenant's own flows with an `event` trigger on the name
  (`{"type": "event", "config": {"event": "order.paid"}}`) that are active, not paused nor
  archived, and published. Each gets a run with `trigger_type` `event` and
  `trigger_metadata` `{"event": name, "payload": payload}`. Its inputs are the payload,
  which must then be an object, or `{<config.payloadInput>: payload}` when the trigger
  names an input to put it in. A flow that refuses (invalid inputs, a draft) is reported
  and the others still start.
- **Waiting runs** are found by the `WaitingEvents` search attribute their `wait` nodes
  set (`TenantId = T AND WaitingEvents = name AND ExecutionStatus = "Running"`), each sent
  the CONTRACT's `event` signal `{"name": ..., "payload": ...}`.

An event id (the Idempotency-Key) makes each started run's id a function of the tenant,
the event, the id and the flow, so a redelivered event starts no flow twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from persistence import trigger_queries
from workers.api.callers import ApiContext, verify_tenant
from workers.api.hooks import start_checked
from workers.api.ownership import keyed_run_id
from workers.api.requests import ApiError, idempotency_key, json_body, read_body
from workers.api.signing import event_message
from workers.client import send_event
from workflows import search_attributes as sa
from workflows.contract import FlowRunInput

log = logging.getLogger("meta_agent.api")

#: Event names the API and the CLI emit: they are written into a visibility query.
EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
#: Payloads up to this much JSON also ride in `trigger_metadata`; beyond, only in inputs
#: (a run's argument must stay under Temporal's 2 MB payload limit).
METADATA_PAYLOAD_BYTES = 64 * 1024


@dataclass
class Emitted:
    """What an event did: runs started, flows that refused, waiting runs signalled."""

    event: str
    started: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The answer of `POST /events/NAME` and the CLI's `--json`."""
        return {
            "event": self.event,
            "started": self.started,
            "refused": self.refused,
            "woken": self.woken,
        }


def check_name(name: str) -> str:
    """`name` if events may be emitted under it (ValueError otherwise)."""
    if not EVENT_NAME.match(name):
        raise ValueError(f"event name {name[:60]!r} must be 1 to 200 letters, digits or `_ . : -`")
    return name


def event_inputs(config: dict[str, Any], payload: Any) -> dict[str, Any]:
    """A subscribed flow's inputs: the payload, or `{config.payloadInput: payload}`."""
    key = config.get("payloadInput")
    if isinstance(key, str) and key:
        return {key: payload}
    if not isinstance(payload, dict):
        raise ValueError(
            "the payload is not a JSON object, so it cannot be the flow's inputs: name an "
            "input for it in the trigger's config.payloadInput"
        )
    return payload


def _metadata(name: str, payload: Any, event_id: str | None, size: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"event": name}
    if size <= METADATA_PAYLOAD_BYTES:
        meta["payload"] = payload
    else:
        meta["payload_in_inputs_only"] = True
    if event_id is not None:
        meta["event_id"] = event_id
    return meta


async def wake_waiting(
    client: Client, tenant_id: uuid.UUID, name: str, payload: Any, event_id: str | None = None
) -> list[str]:
    """Signal the tenant's running runs whose waits wait on `name`; their workflow ids.

    With an event id, each signal carries a request id derived from the tenant, the event
    and the id, so a run gets one event however often it is redelivered.
    """
    request_id = None
    if event_id is not None:
        parts = f"event-signal\n{tenant_id}\n{name}\n{event_id}".encode()
        request_id = hashlib.sha256(parts).hexdigest()
    query = (
        f'TenantId = "{tenant_id}" AND {sa.WAITING_EVENTS.name} = "{name}" '
        'AND ExecutionStatus = "Running"'
    )
    woken = []
    async for execution in client.list_workflows(query):
        try:
            await send_event(client, execution.id, name, payload, request_id=request_id)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # it ended meanwhile
        woken.append(execution.id)
    return woken


async def emit(
    client: Client,
    task_queue: str,
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: uuid.UUID,
    name: str,
    payload: Any,
    *,
    event_id: str | None = None,
    id_key: str = "",
) -> Emitted:
    """Wake the tenant's runs waiting on `name`, then start its subscribed flows (in that
    order, so no run this event starts is woken by it).

    `id_key` (the tenant's API secret) keys the HMAC that makes a run id of an event id,
    so no one without it can plant a run under the id first.
    """
    check_name(name)
    done = Emitted(name)
    done.woken = await wake_waiting(client, tenant_id, name, payload, event_id)
    async with sessions() as session:
        subscribers = await trigger_queries.event_subscribers(session, tenant_id, name)
    size = len(json.dumps(payload))
    for flow in subscribers:
        refusal: dict[str, Any] = {"flow": flow.flow_name, "flow_id": str(flow.workflow_id)}
        try:
            inputs = event_inputs(flow.config, payload)
        except ValueError as exc:
            done.refused.append({**refusal, "error": str(exc)})
            continue
        parts = (str(tenant_id), name, event_id or "", str(flow.workflow_id))
        run_id = keyed_run_id("event", id_key, *parts) if event_id else f"event-{uuid.uuid4().hex}"
        try:
            handle = await start_checked(
                client,
                task_queue,
                sessions,
                FlowRunInput(
                    workflow_id=str(flow.workflow_id), tenant_id=str(tenant_id), inputs=inputs
                ),
                run_id,
                existing_ok=event_id is not None,
                flow_name=flow.flow_name,
                trigger_type="event",
                trigger_metadata=_metadata(name, payload, event_id, size),
                delivery=("event", "event_id"),
            )
        except ApiError as exc:
            done.refused.append({**refusal, **exc.body})
            continue
        done.started.append({**refusal, "run_id": handle.id})
    return done


async def receive_event(ctx: ApiContext, request: Request) -> JSONResponse:
    """`POST /events/NAME`, signed with the tenant's API secret over the name and the body
    (`signing.event_message`): 202 with what it did.
    """
    name = str(request.path_params["name"])
    try:
        check_name(name)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    body = await read_body(request, ctx.max_body_bytes, ctx.body_seconds)
    caller = await verify_tenant(ctx, request, event_message(name, body))
    payload = json_body(request, body, object_only=False)
    done = await emit(
        ctx.client,
        ctx.task_queue,
        ctx.sessions,
        caller.tenant_id,
        name,
        payload,
        event_id=idempotency_key(request),
        id_key=caller.secret,
    )
    return JSONResponse(done.as_json(), 202)
