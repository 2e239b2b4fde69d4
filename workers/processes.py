"""Child processes that cannot outlive the process that started them.

The dev stack starts Postgres and the Temporal dev server. A Ctrl-C stops them
in order; a SIGKILL of the parent cannot run any cleanup, so each child also
asks Linux to signal it when its parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

_PR_SET_PDEATHSIG = 1


class NotReadyError(RuntimeError):
    """A child exited, or did not become ready in time; the message ends with its log."""


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive `sig` when its parent dies (Linux; else None)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def preexec() -> None:  # runs in the child, after any setuid
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    death_signal: int = signal.SIGTERM,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session, output appended to `log`.

    Must be called from the main thread: Linux delivers the parent-death signal
    when the *thread* that forked exits, so a worker thread would kill it early.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("spawn() must run on the main thread (the death signal is per thread)")
    log.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes] = log.open("ab")
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # A terminal's Ctrl-C reaches us only; we stop the children in order.
            start_new_session=True,
            preexec_fn=die_with_parent(death_signal),
            user=user,
            env=env,
        )
    finally:
        out.close()


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Signal the child's whole process group, wait, then kill it if it hangs."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` of a child's log, for the error that says why it did not start."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(
    proc: subprocess.Popen[bytes],
    is_ready: Callable[[], bool],
    *,
    name: str,
    ready_means: str,
    log: Path,
    timeout: float,
    interval: float = 0.2,
    stop: Callable[[], None],
    error: Callable[[str], Exception] = NotReadyError,
) -> None:
    """Poll `is_ready` every `interval` seconds until it says yes.

    When `proc` exits first or `timeout` passes: `stop()` (the child's own way of
    stopping), then `error`, whose message ends with `log`'s last lines. `name` and
    `ready_means` word it: "<name> did not <ready_means> within <timeout>s".
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            why = f"{name} exited with code {proc.returncode}; its log ({log}) ends"
            break
        if is_ready():
            return
        time.sleep(interval)
    else:
        why = f"{name} did not {ready_means} within {timeout}s; its log ends"
    stop()
    raise error(f"{why}:\n{tail(log)}")


@dataclass
class ChildServer:
    """A server run as a child of this process (see `spawn`), stopped in its own way."""

    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    #: The signal that shuts the server down cleanly, and how long it may take.
    stop_signal: ClassVar[int] = signal.SIGTERM
    stop_timeout: ClassVar[float] = 15

    def stop(self) -> None:
        """Stop the server in its own way (`stop_signal`, then a kill after `stop_timeout`)."""
        if self._proc is not None:
            stop(self._proc, sig=self.stop_signal, timeout=self.stop_timeout)
            self._proc = None

    @property
    def pid(self) -> int | None:
        """The child's process id, or None when it is not running."""
        return self._proc.pid if self._proc else None


def free_port() -> int:
    """A loopback port free right now; another process may still take it before it is used."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
