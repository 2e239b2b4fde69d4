"""The HTTP peer the workload's `api` nodes call, in a process of its own.

    python -m chaos.peer [--seed S]

Answers any GET or POST with a small JSON body after a short random delay, so that a worker
killed at a random moment often has a call in flight. Prints its base URL, then serves until
it is stopped. Its own process keeps its threads off the driver's GIL.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Shortest and longest answer delay, in seconds.
DELAY = (0.05, 0.5)

_lock = threading.Lock()
_rng = random.Random()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with _lock:
            delay = _rng.uniform(*DELAY)
        time.sleep(delay)
        raw = json.dumps({"path": self.path, "delay": round(delay, 3)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer


def main(argv: list[str] | None = None) -> None:
    """Serve on a free loopback port until killed; the first line printed is the base URL."""
    parser = argparse.ArgumentParser(prog="python -m chaos.peer")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    _rng.seed(args.seed)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
