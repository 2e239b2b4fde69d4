"""Reading a request the API was sent: its body within the limit, its JSON, its headers.

Each refusal is an ApiError, answered as `{"error": "...", ...}` with its status, so every
answer of the API, success or not, is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from flow_language.sizes import MAX_VALUE_DEPTH, value_depth

IDEMPOTENCY_HEADER = "Idempotency-Key"
#: How long a request's body may take to arrive once its head has (API_MAX_BODY_BYTES
#: arrive in well under a second on any working link).
BODY_SECONDS = 10.0
#: The deepest body taken: a run's values may nest MAX_VALUE_DEPTH levels, and a body is
#: wrapped in a few more (the run's argument, `trigger_metadata.payload`, an event signal).
#: Deeper, it would fail only once something had already happened (a run woken).
MAX_BODY_DEPTH = MAX_VALUE_DEPTH - 16
#: Longest Idempotency-Key taken (it is hashed into a run id, never stored as is).
MAX_IDEMPOTENCY_KEY = 255


class ApiError(Exception):
    """A refusal: its HTTP status and the body `{"error": message, **details}`."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        self.status = status
        self.body = {"error": message, **details}
        super().__init__(message)


async def read_body(request: Request, limit: int, seconds: float = BODY_SECONDS) -> bytes:
    """The raw body, refused (413) as soon as it is known to exceed `limit` bytes: by its
    Content-Length before reading anything, else once the bytes read pass it; and refused
    (408) when it takes over `seconds` to arrive, so a sender that stops mid-body does not
    hold one of the API's request slots for as long as it keeps the connection open.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is over {limit} bytes", limit=limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"the body is over {limit} bytes", limit=limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"the body did not arrive within {seconds:g} s") from None
    except ClientDisconnect:  # nobody to answer: end quietly, not as a failure
        raise ApiError(400, "the sender hung up before the body was complete") from None
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, and no run could carry them."""
    raise ValueError(f"{name} is not JSON")


_TOO_DEEP = f"the body nests lists and objects more than {MAX_BODY_DEPTH} levels deep"


def json_body(request: Request, body: bytes, *, object_only: bool) -> Any:
    """The body as JSON: 415 unless its Content-Type is JSON, 400 unless it parses (and,
    with `object_only`, is an object) and nests at most MAX_BODY_DEPTH levels: checked
    before anything is started or woken, never a 500 that invites a retry.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:  # nested past what the parser can read
        raise ApiError(400, _TOO_DEEP, limit=MAX_BODY_DEPTH) from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, f"the body is not JSON: {str(exc)[:200]}") from None
    if value_depth(value, MAX_BODY_DEPTH) > MAX_BODY_DEPTH:
        raise ApiError(400, _TOO_DEEP, limit=MAX_BODY_DEPTH)
    if object_only and not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object (the run's inputs)")
    return value


def idempotency_key(request: Request) -> str | None:
    """The Idempotency-Key header, if any, read as UTF-8; 400 for one that is empty, too
    long, not UTF-8 or holds control characters (a tab, say).
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    try:  # headers arrive as bytes, read as latin-1: a UTF-8 key is read as UTF-8
        key = key.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ApiError(400, f"{IDEMPOTENCY_HEADER} must be UTF-8") from None
    if any(not c.isprintable() for c in key):
        raise ApiError(400, f"{IDEMPOTENCY_HEADER} must hold no control characters")
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(400, f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return key
