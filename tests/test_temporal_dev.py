"""The dev stack's Temporal server starts even when it loses a race for a port.

The server picks its HTTP API, metrics and internal ports itself, and another starter
on the machine can take one of them between its pick and its bind. Here a real
listener holds the HTTP API's port: while it holds it for good the start is refused,
naming the clash; when it lets go after the first clash, the start goes through.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.processes import free_port
from workers.temporal_dev import START_ATTEMPTS, TemporalDevServer, TemporalDevServerError

pytestmark = pytest.mark.slow


@pytest.fixture
def held_port() -> Iterator[socket.socket]:
    """A loopback port held by a listener, as another server would hold it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def _server(home: Path, held: socket.socket) -> TemporalDevServer:
    return TemporalDevServer(
        home=home, port=free_port(), ui_port=free_port(), http_port=held.getsockname()[1]
    )


def _clashes(server: TemporalDevServer) -> int:
    """How many starts the server's log shows refused for a port in use."""
    if not server.log_file.exists():
        return 0
    lines = server.log_file.read_text(errors="replace").splitlines()
    return sum(1 for line in lines if line.startswith("Error:") and "already in use" in line)


def test_a_port_that_stays_taken_refuses_the_start(
    tmp_path: Path, held_port: socket.socket
) -> None:
    server = _server(tmp_path, held_port)
    with pytest.raises(TemporalDevServerError, match="address already in use"):
        server.start(timeout=30)
    assert server.pid is None
    assert _clashes(server) >= START_ATTEMPTS


def test_a_port_taken_only_for_a_moment_is_retried(
    tmp_path: Path, held_port: socket.socket
) -> None:
    server = _server(tmp_path, held_port)

    def let_go_after_the_first_clash() -> None:
        deadline = time.monotonic() + 60
        while _clashes(server) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        held_port.close()

    releaser = threading.Thread(target=let_go_after_the_first_clash, daemon=True)
    releaser.start()
    try:
        server.start(timeout=60)
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        assert _clashes(server) >= 1
    finally:
        server.stop()
        releaser.join(5)
