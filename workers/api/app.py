"""The API's routes, its one shape of refusal, and how a caller reads a run it may see.

Routes: `POST /hooks/{trigger_id}` (`hooks`), `POST /events/{name}` (`events`),
`GET /runs/{run_id}` (here) and `GET /health/live`. Every answer is a JSON object; a
refusal is `{"error": "...", ...}` with its status, unknown paths and methods included.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.service import RPCError

from persistence import trigger_queries
from persistence.models import WorkflowRun
from workers.api.callers import HOOK_HEADER, ApiContext, Caller, verify_hook, verify_tenant
from workers.api.events import receive_event
from workers.api.hooks import receive_hook
from workers.api.requests import ApiError

log = logging.getLogger("meta_agent.api")

#: Row statuses after which a run's outputs or error are final.
_ENDED = ("completed", "failed", "cancelled")


async def _caller_of_read(ctx: ApiContext, request: Request, signed: bytes) -> Caller:
    """A `GET`'s caller: X-Meta-Hook with the hook's secret, else X-Meta-Tenant with the
    tenant's API secret; an unknown hook is refused as a bad signature (401).
    """
    trigger_id = request.headers.get(HOOK_HEADER)
    if trigger_id is None:
        return await verify_tenant(ctx, request, signed)
    try:
        async with ctx.sessions() as session:
            hook = await trigger_queries.find_hook(session, trigger_id)
    except trigger_queries.AmbiguousHook:
        hook = None
    if hook is None:
        raise ApiError(401, f"{HOOK_HEADER} names no hook this request can be signed for")
    return await verify_hook(ctx, hook, request, signed)


def run_view(run: WorkflowRun) -> dict[str, Any]:
    """What `GET /runs/ID` says of a run: its row's status, and once ended its outputs or
    its error.
    """
    view: dict[str, Any] = {
        "run_id": run.orchestrator_run_id,
        "status": run.status,
        "flow_id": str(run.workflow_id) if run.workflow_id else None,
        "flow_version": run.workflow_version,
        "trigger_type": run.trigger_type,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "completed_at": run.completed_at.isoformat() if run.completed_at else None,
        "current_step": run.current_step,
    }
    if run.status in _ENDED:
        view["outputs"] = run.outputs
        view["error"] = run.error
        view["error_code"] = run.error_code
    return view


def _sent_path(request: Request) -> bytes:
    """The path as the request line carried it (percent-encoding kept), without the query:
    what a sender signs, whatever its client decodes or not.
    """
    raw = request.scope.get("raw_path")
    return raw.split(b"?", 1)[0] if isinstance(raw, bytes) else request.url.path.encode()


async def read_run(ctx: ApiContext, request: Request) -> JSONResponse:
    """`GET /runs/ID`, signed over `GET <path as sent>`: the run if the caller may see it,
    else 404 in the words of no run at all (another tenant's run, or another hook's). The id
    is the rest of the path, percent-decoded, so a sub-flow's `<parent>/<node>` is read as
    `/runs/<parent>/<node>` or `/runs/<parent>%2F<node>`.
    """
    run_id = str(request.path_params["run_id"])
    caller = await _caller_of_read(ctx, request, b"GET " + _sent_path(request))
    async with ctx.sessions() as session:
        run = await trigger_queries.run_for_caller(
            session, run_id, tenant_id=caller.tenant_id, trigger_id=caller.trigger_id
        )
    if run is None:
        # Started a moment ago, the run may not have written its row yet: same answer.
        raise ApiError(404, "no such run (or not yet recorded: try again in a moment)")
    return JSONResponse(run_view(run))


Handler = Callable[[ApiContext, Request], Awaitable[Response]]


def _route(ctx: ApiContext, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            return await handler(ctx, request)
        except ApiError as exc:
            return JSONResponse(exc.body, exc.status)
        except RPCError as exc:  # Temporal unreachable or refusing: the sender may retry
            log.warning("%s %s: Temporal: %s", request.method, request.url.path, exc)
            return JSONResponse({"error": "Temporal is unavailable; try again"}, 503)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse({"error": "the API failed to answer; try again"}, 500)

    return handle


async def _live(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, wrong method) as JSON too."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


def api_app(ctx: ApiContext) -> Starlette:
    """The API as an ASGI app, served by `workers.api.serve`."""
    app = Starlette(
        routes=[
            Route("/hooks/{trigger_id}", _route(ctx, receive_hook), methods=["POST"]),
            Route("/events/{name}", _route(ctx, receive_event), methods=["POST"]),
            Route("/runs/{run_id:path}", _route(ctx, read_run), methods=["GET"]),
            Route("/health/live", _live, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    # A trailing slash is another path (404 in JSON), not a bodiless 307 to follow.
    app.router.redirect_slashes = False
    return app
