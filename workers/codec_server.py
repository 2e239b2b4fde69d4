"""`meta-agent codec-server`: decodes sealed payloads for the Temporal UI of key holders.

The UI (and `temporal` CLI's `--codec-endpoint`) posts the payloads it shows to
`{endpoint}/decode` as `{"payloads": [{"metadata": {...}, "data": "<base64>"}]}` (the
protobuf JSON form, with an `X-Namespace` header) and shows what comes back;
`/encode` does the reverse. The browser calls it cross-origin, so the UI's origin
must be allowed (CORS). It listens on loopback by default: it runs beside the
operator who holds the keys, not as a public service; with a token set, each
request must carry it as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads

from workers.payload_codec import EncryptionCodec, PayloadDecryptError

#: The most one request may carry: a few histories' worth of payloads.
MAX_BODY_BYTES = 16 * 1024 * 1024


def codec_app(
    codec: EncryptionCodec, origins: Sequence[str], token: str | None = None
) -> Starlette:
    """The `/encode` and `/decode` endpoints, callable from the UI at `origins`."""

    def endpoint(
        convert: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            origin = request.headers.get("origin")
            if origin is not None and origin not in origins:
                # CORS keeps another site's page from reading the answer; refusing keeps it
                # from having the keys used at all.
                return JSONResponse({"error": f"origin {origin!r} is not allowed"}, 403)
            if token is not None and not hmac.compare_digest(
                request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()
            ):
                return JSONResponse({"error": "a valid bearer token is required"}, 401)
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, 413)
            try:
                payloads = json_format.Parse(body, Payloads())
            except json_format.ParseError as exc:
                return JSONResponse({"error": f"not a Payloads JSON object: {exc}"}, 400)
            try:
                converted = await convert(list(payloads.payloads))
            except PayloadDecryptError:
                # Which keys it holds is the operator's business, not the caller's.
                return JSONResponse({"error": "a payload does not open with these keys"}, 422)
            return Response(
                json_format.MessageToJson(Payloads(payloads=converted)),
                media_type="application/json",
            )

        return handle

    return Starlette(
        routes=[
            Route("/encode", endpoint(codec.encode), methods=["POST"]),
            Route("/decode", endpoint(codec.decode), methods=["POST"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(origins),
                allow_methods=["POST"],
                allow_headers=["content-type", "x-namespace", "authorization"],
                allow_credentials=True,
            )
        ],
    )
