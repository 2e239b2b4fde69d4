"""A real HTTP server on loopback for the `api` agent tests, with routes set per test."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What a route answers; a dict or list body is sent as JSON, `delay` holds the answer back."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    """A request as the peer received it, for tests to assert on what the agent sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; an empty body reads as None."""
        return json.loads(self.body or b"null")


Route = Callable[[Request], Reply]


class HttpPeer:
    """A threaded HTTP server on a free loopback port that records every request.

    Unrouted paths answer 404, so a test sets only the routes it means to be called.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(self.command, self.path, dict(self.headers), self.rfile.read(length))
                with peer._lock:
                    peer.requests.append(req)
                route = peer.routes.get((self.command, self.path.split("?")[0]))
                reply = route(req) if route else Reply(404, {"error": "no route"})
                if reply.delay:
                    threading.Event().wait(reply.delay)
                if isinstance(reply.body, bytes):
                    raw, ctype = reply.body, "application/octet-stream"
                elif isinstance(reply.body, str):
                    raw, ctype = reply.body.encode(), "text/plain"
                else:
                    raw, ctype = json.dumps(reply.body).encode(), "application/json"
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.headers.get("Content-Type", ctype))
                for name, value in reply.headers.items():
                    if name.lower() != "content-type":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        """The server's root URL (loopback, its own port)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, path: str, reply: Reply | Route) -> None:
        """Answer `method` `path` (query ignored) with a fixed reply or one computed per request."""
        if isinstance(reply, Reply):
            fixed = reply

            def answer(_request: Request) -> Reply:
                return fixed

            self.routes[(method, path)] = answer
        else:
            self.routes[(method, path)] = reply

    def calls(self, method: str, path: str) -> list[Request]:
        """The requests received so far on `method` `path` (query ignored), in order."""
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.split("?")[0] == path]

    def start(self) -> HttpPeer:
        """Serve in a background thread; the socket already listens, so it answers at once."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket, so the port is free again."""
        self.server.shutdown()
        self.server.server_close()
