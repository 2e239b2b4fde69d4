"""`meta-agent codec-server`: the Temporal UI's codec endpoint for PAYLOAD_KEYS."""

from __future__ import annotations

import argparse
import os
from typing import Any

from workers.settings import Settings, SettingsError

#: The dev stack's UI, which calls the codec server from the browser.
DEFAULT_ORIGIN = "http://localhost:8233"


async def cmd_codec_server(args: argparse.Namespace, settings: Settings) -> int:
    """Serve `/encode` and `/decode` until interrupted."""
    import uvicorn

    from workers.codec_server import codec_app

    codec = settings.payload_codec()
    if codec is None:
        raise SettingsError(
            "PAYLOAD_KEYS is not set: the codec server decodes with the keys the workers "
            "encrypt with; set it to the same value"
        )
    token = os.environ.get("CODEC_SERVER_TOKEN") or None
    app = codec_app(codec, args.origin or [DEFAULT_ORIGIN], token)
    print(
        f"codec server on http://{args.host}:{args.port} (keys {', '.join(codec.keys.key_ids)}); "
        f"in the Temporal UI: Settings > Codec Server > http://{args.host}:{args.port}"
    )
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    await uvicorn.Server(config).serve()
    return 0


def add_commands(sub: Any) -> None:
    """Register `codec-server`."""
    codec = sub.add_parser(
        "codec-server",
        help="decode encrypted payloads (PAYLOAD_KEYS) for the Temporal UI",
        description="Serves Temporal's remote codec endpoints (/encode, /decode) with "
        "PAYLOAD_KEYS, so the Temporal UI (Settings > Codec Server) and `temporal --codec-"
        "endpoint` show sealed payloads to whoever holds the keys. CODEC_SERVER_TOKEN, if set, "
        "must come as `Authorization: Bearer <token>`.",
    )
    codec.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    codec.add_argument("--port", type=int, default=8081, help="port to listen on (8081)")
    codec.add_argument(
        "--origin",
        action="append",
        metavar="URL",
        help=f"a Temporal UI origin allowed to call it (repeatable; default {DEFAULT_ORIGIN})",
    )
    codec.set_defaults(handler=cmd_codec_server)
