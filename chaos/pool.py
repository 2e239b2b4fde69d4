"""The FlowRun worker processes under fault: N of them, one killed at random now and then, and
each one that dies (killed or by itself) replaced, so the queue is never without workers for
long.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from chaos.log import Timeline
from workers.processes import spawn, stop, tail

#: The line a worker logs once it polls its task queue.
READY_LINE = "worker polling task queue"
#: Seconds between a worker's death and its replacement when it died by itself (it may have
#: failed to connect to a Temporal server that is down: it is tried again, not in a tight loop).
RESPAWN_DELAY = 3.0


@dataclass
class _Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def ready(self) -> bool:
        """Whether it got as far as polling its queue."""
        try:
            return READY_LINE in self.log.read_text(errors="replace")
        except OSError:
            return False


@dataclass
class WorkerPool:
    """`size` worker processes (`python -m workers.cli worker --no-register`) on one queue."""

    size: int
    env: dict[str, str]
    logs: Path
    timeline: Timeline
    #: Workers killed on purpose (SIGKILL), by name.
    killed: list[str] = field(default_factory=list)
    #: Workers that exited by themselves: (name, exit code, whether it had been polling,
    #: the last line of its log).
    exits: list[tuple[str, int, bool, str]] = field(default_factory=list)
    _workers: dict[str, _Worker] = field(default_factory=dict)
    _count: int = 0

    def start(self) -> None:
        """Start workers until there are `size` of them (must run on the main thread)."""
        while len(self._workers) < self.size:
            self._count += 1
            name = f"worker-{self._count}"
            log = self.logs / f"{name}.log"
            argv = [sys.executable, "-m", "workers.cli", "worker", "--no-register"]
            env = {**self.env, "META_AGENT_HOME": str(self.logs / name)}
            self._workers[name] = _Worker(name, spawn(argv, log=log, env=env), log)
            self.timeline.say(f"{name} started (pid {self._workers[name].proc.pid})")

    async def wait_ready(self, within: float = 180) -> None:
        """Until every worker polls its queue; RuntimeError with a log tail if one cannot."""
        deadline = asyncio.get_running_loop().time() + within
        while not all(w.ready() for w in self._workers.values()):
            for w in self._workers.values():
                if w.proc.poll() is not None:
                    raise RuntimeError(f"{w.name} exited at start; its log ends:\n{tail(w.log)}")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"workers not polling after {within}s")
            await asyncio.sleep(0.5)

    def alive(self) -> int:
        """How many worker processes are running now."""
        return sum(w.proc.poll() is None for w in self._workers.values())

    def kill_one(self, rng: random.Random) -> str | None:
        """SIGKILL a random running worker and start its replacement; its name (None if none)."""
        running = sorted(n for n, w in self._workers.items() if w.proc.poll() is None)
        if not running:
            return None
        victim = self._workers.pop(rng.choice(running))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        self.killed.append(victim.name)
        self.timeline.say(f"fault: {victim.name} (pid {victim.proc.pid}) killed with SIGKILL")
        self.start()
        return victim.name

    def reap(self) -> None:
        """Record every worker that exited by itself and forget it (`start` replaces it)."""
        for name, w in list(self._workers.items()):
            code = w.proc.poll()
            if code is None:
                continue
            del self._workers[name]
            last = (tail(w.log, 1) or "").strip()
            self.exits.append((name, code, w.ready(), last))
            self.timeline.say(f"{name} exited by itself (code {code}): {last[:160]}")

    async def supervise(self) -> None:
        """Keep `size` workers: replace each that died, a little later (until cancelled)."""
        while True:
            self.reap()
            if len(self._workers) < self.size:
                await asyncio.sleep(RESPAWN_DELAY)
                self.start()
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after a grace period)."""
        for w in self._workers.values():
            stop(w.proc, timeout=20)
        self._workers.clear()
