"""A small HTTP service the example flows call, so `meta-agent dev` can show a real run.

Orders, customers and products with fixed data; in a thread of the dev process.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PRODUCTS = {"apple": 0.5, "bread": 2.25, "coffee": 7.0, "tea": 4.5}
ORDERS: dict[int, dict[str, Any]] = {
    42: {"total": 18.0, "lines": [{"sku": "coffee", "qty": 2}, {"sku": "bread", "qty": 1}]},
    7: {"total": 2400.0, "lines": [{"sku": "tea", "qty": 400}, {"sku": "apple", "qty": 1200}]},
}
CUSTOMERS = {
    1: {"name": "Ada Lovelace", "tier": "gold"},
    2: {"name": "Alan Turing", "tier": "silver"},
}

_ROUTES: list[tuple[str, re.Pattern[str], Any]] = [
    ("GET", re.compile(r"/orders/(\d+)"), lambda m: ORDERS.get(int(m[1]))),
    (
        "POST",
        re.compile(r"/orders/(\d+)/ship"),
        lambda m: {"shipped": int(m[1])} if int(m[1]) in ORDERS else None,
    ),
    (
        "POST",
        re.compile(r"/orders/(\d+)/reject"),
        lambda m: {"rejected": int(m[1])} if int(m[1]) in ORDERS else None,
    ),
    ("GET", re.compile(r"/customers/(\d+)"), lambda m: CUSTOMERS.get(int(m[1]))),
    (
        "GET",
        re.compile(r"/customers/(\d+)/orders"),
        lambda m: [{"id": i, **o} for i, o in ORDERS.items()],
    ),
    ("GET", re.compile(r"/customers/(\d+)/tickets"), lambda m: [] if int(m[1]) == 1 else None),
    (
        "GET",
        re.compile(r"/products/(\w+)"),
        lambda m: {"price": PRODUCTS[m[1]]} if m[1] in PRODUCTS else None,
    ),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body: Any = None
        for method, pattern, handler in _ROUTES:
            match = pattern.fullmatch(self.path.split("?")[0])
            if method == self.command and match:
                body = handler(match)
                break
        status = 200 if body is not None else 404
        raw = json.dumps(body if body is not None else {"error": "not found"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer


def start_sample_service(port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Serve in a daemon thread on loopback; returns the server and its base URL."""
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    except OSError:  # the usual port is taken: any free one will do
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sample-service", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
