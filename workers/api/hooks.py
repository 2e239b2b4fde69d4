"""`POST /hooks/<trigger id>`: a signed delivery starts a run of the flow owning the hook.

Checked in this order, each refusal starting nothing: the hook exists (404, also for an
id on several flows), the body is within the limit (413), it is signed with the hook's
secret within its tolerance (401), it is a JSON object (415, 400), the flow may run now
(409) and is valid, with the body valid as its inputs (422). Then the run starts with the
body as `inputs`, `trigger_type` `webhook`, and `trigger_metadata` naming the hook, the
delivery's Idempotency-Key and when it arrived (never a header that authenticates it).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse
from temporalio.client import Client, WorkflowHandle

from persistence import trigger_queries
from persistence.queries import NotFoundError
from workers.api.callers import ApiContext, verify_hook
from workers.api.ownership import is_same_delivery, keyed_run_id
from workers.api.requests import ApiError, idempotency_key, json_body, read_body
from workers.client import FlowUnavailable, InvalidFlow, InvalidInputs, start_run
from workflows.contract import FlowResult, FlowRunInput

log = logging.getLogger("meta_agent.api")

_NO_HOOK = "no such hook"


async def start_checked(
    client: Client,
    task_queue: str,
    sessions: async_sessionmaker[AsyncSession],
    params: FlowRunInput,
    run_id: str,
    *,
    existing_ok: bool,
    flow_name: str,
    trigger_type: str,
    trigger_metadata: dict[str, Any],
    delivery: tuple[str, ...] = (),
) -> WorkflowHandle[Any, FlowResult]:
    """Start the stored flow of `params` after every check a sender can be told of: the
    refusals of `workers.client.start_run` as ApiErrors (409, 422, 404).

    With `existing_ok`, a run already under `run_id` is answered with only if it was
    started for this flow, tenant and trigger, and with the same values of the
    `trigger_metadata` fields named by `delivery` (those that identify the delivery);
    anyone else's run there is a 409 and nothing starts (`ownership`).
    """
    try:
        handle = await start_run(
            client,
            task_queue,
            params,
            run_id=run_id,
            flow_name=flow_name,
            trigger_type=trigger_type,
            trigger_metadata=trigger_metadata,
            sessions=sessions,
            existing_ok=existing_ok,
            check_definition=True,
        )
    except FlowUnavailable as exc:
        raise ApiError(409, str(exc)) from None
    except InvalidFlow as exc:
        raise ApiError(422, "the flow is invalid", problems=exc.problems) from None
    except InvalidInputs as exc:
        raise ApiError(422, "invalid inputs", problems=exc.problems) from None
    except NotFoundError:  # the flow was deleted since the lookup
        raise ApiError(404, "the flow no longer exists") from None
    if handle.first_execution_run_id is None:  # not started now: a run held the id already
        expected = {
            "workflow_id": params.workflow_id,
            "tenant_id": params.tenant_id,
            "trigger_type": trigger_type,
            "trigger_metadata": {k: trigger_metadata.get(k) for k in delivery},
        }
        if not await is_same_delivery(client, run_id, expected):
            log.error("run id %s is held by a run of another delivery: refused", run_id)
            raise ApiError(409, "this delivery's run id is held by another run: nothing started")
    return handle


async def receive_hook(ctx: ApiContext, request: Request) -> JSONResponse:
    """One delivery: 202 with the run it started (or, for a redelivered key, started)."""
    trigger_id = str(request.path_params["trigger_id"])
    try:
        async with ctx.sessions() as session:
            hook = await trigger_queries.find_hook(session, trigger_id)
    except trigger_queries.AmbiguousHook as exc:
        log.error("%s: refused; give each flow its own (`meta-agent hooks add`)", exc)
        raise ApiError(404, _NO_HOOK) from None
    if hook is None:
        raise ApiError(404, _NO_HOOK)
    body = await read_body(request, ctx.max_body_bytes, ctx.body_seconds)
    caller = await verify_hook(ctx, hook, request, body)
    inputs = json_body(request, body, object_only=True)
    key = idempotency_key(request)
    run_id = (
        keyed_run_id("hook", caller.secret, trigger_id, key) if key else f"hook-{uuid.uuid4().hex}"
    )
    handle = await start_checked(
        ctx.client,
        ctx.task_queue,
        ctx.sessions,
        FlowRunInput(
            workflow_id=str(hook.workflow_id), tenant_id=str(caller.tenant_id), inputs=inputs
        ),
        run_id,
        existing_ok=key is not None,
        flow_name=hook.flow_name,
        trigger_type="webhook",
        trigger_metadata={
            "trigger_id": trigger_id,
            "idempotency_key": key,
            "received_at": datetime.fromtimestamp(ctx.clock(), UTC).isoformat(),
        },
        delivery=("trigger_id", "idempotency_key"),
    )
    return JSONResponse({"run_id": handle.id, "status_url": f"/runs/{handle.id}"}, 202)
