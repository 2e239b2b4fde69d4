"""`meta-agent worker --processes N`: N worker processes on one machine, kept running.

One Python process runs workflow code on one core (the GIL), so a machine with
more cores runs more worker processes on the same task queue: Temporal hands
each task to whichever worker polls first, which is the Temporal way to scale
out (on many machines, run `meta-agent worker` on each). This parent only
supervises: it starts the children, starts again one that dies (after a
pause, so a crash loop does not spin), and on SIGINT/SIGTERM stops them all
and waits for them to finish what they hold. Each child dies with it, even on
SIGKILL (Linux parent-death signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping

from workers.processes import die_with_parent

log = logging.getLogger("meta_agent.supervisor")

#: How long a child that died waits before it is started again.
RESTART_PAUSE = 2.0
#: How long the children may take to finish their tasks once told to stop.
STOP_GRACE = 60.0


#: Settings naming a port: child N listens on the given port + N, so none collide.
PORT_SETTINGS = ("HEALTH_PORT", "METRICS_PORT")


def child_environment(slot: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of child `slot`: the parent's, with a port of its own for each endpoint."""
    env = dict(os.environ if environ is None else environ)
    for name in PORT_SETTINGS:
        value = env.get(name, "").strip()
        if value.isdigit():
            env[name] = str(int(value) + slot)
    return env


async def supervise(processes: int, stop: asyncio.Event, argv: list[str] | None = None) -> int:
    """Run `processes` workers (`argv`: one child's command) until `stop`; 0 once all ended."""
    command = argv or [sys.executable, "-m", "workers.cli", "worker", "--no-register"]
    children: dict[int, asyncio.subprocess.Process] = {}

    async def start(slot: int) -> None:
        children[slot] = await asyncio.create_subprocess_exec(
            *command, preexec_fn=die_with_parent(signal.SIGTERM), env=child_environment(slot)
        )
        log.info("worker %d started (pid %d)", slot, children[slot].pid)

    for slot in range(processes):
        await start(slot)
    while not stop.is_set():
        ended = [asyncio.create_task(p.wait()) for p in children.values()]
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([stopping, *ended], return_when=asyncio.FIRST_COMPLETED)
        for task in [stopping, *ended]:
            task.cancel()
        for slot, child in list(children.items()):
            if child.returncode is not None and not stop.is_set():
                log.warning(
                    "worker %d (pid %d) ended with code %s; starting it again in %.0fs",
                    slot,
                    child.pid,
                    child.returncode,
                    RESTART_PAUSE,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESTART_PAUSE)
                if not stop.is_set():
                    await start(slot)
    await _stop_all(list(children.values()))
    return 0


async def _stop_all(children: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM, then SIGKILL whatever has not ended within STOP_GRACE."""
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    waits = [asyncio.create_task(child.wait()) for child in children]
    _, late = await asyncio.wait(waits, timeout=STOP_GRACE) if waits else (set(), set())
    for child in children:
        if child.returncode is None:
            log.warning("worker pid %d did not stop within %.0fs: killed", child.pid, STOP_GRACE)
            child.kill()
    if late:
        await asyncio.wait(late)
