"""The faults: Postgres stopped for a while, the Temporal server stopped for a while, a worker
killed with SIGKILL. One at a time, at seeded random moments roughly `every` seconds apart.

The kinds are drawn from a shuffled bag (each kind once per three faults), so a short run
still meets every kind. Each fault ends with its server started again before the next
one begins; `restore` makes sure of that when the driver stops midway.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

from chaos.log import Timeline
from chaos.stack import Stack

KINDS = ("postgres", "temporal", "worker")
#: How long each server stays down, in seconds (Postgres' at most `every`, so a short
#: `--fault-every` still leaves time between faults).
POSTGRES_DOWN = (5.0, 30.0)
TEMPORAL_DOWN = (3.0, 10.0)
#: Seconds of calm after a fault ends, at least, before the next one.
CALM = 3.0


@dataclass
class Fault:
    """One injected fault: when it began (timeline seconds), its kind, and what it did."""

    at: float
    kind: str
    detail: str


@dataclass
class Faults:
    """Injects faults into `stack` until told to stop."""

    stack: Stack
    rng: random.Random
    timeline: Timeline
    every: float
    done: list[Fault] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        """Faults injected, by kind (every kind present, zero if it never happened)."""
        counts = Counter(dict.fromkeys(KINDS, 0))
        counts.update(f.kind for f in self.done)
        return counts

    async def inject(self, stop: asyncio.Event) -> None:
        """Fault after fault until `stop` is set; the fault under way is finished first."""
        bag: list[str] = []
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.every * self.rng.uniform(0.3, 0.7)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - loop.time()))
                return
            except TimeoutError:
                pass
            if not bag:
                bag = list(KINDS)
                self.rng.shuffle(bag)
            began = loop.time()
            await self._one(bag.pop())
            gap = self.every * self.rng.uniform(0.5, 1.5)
            next_at = max(began + gap, loop.time() + CALM)

    async def _one(self, kind: str) -> None:
        at = self.timeline.now()
        if kind == "postgres":
            low, high = POSTGRES_DOWN
            down = self.rng.uniform(low, max(low, min(high, self.every)))
            self.timeline.say(f"fault: postgres stopped for {down:.1f}s")
            self.stack.postgres.stop()
            await asyncio.sleep(down)
            self.stack.postgres.start(timeout=120)
            detail = f"postgres down {self.timeline.now() - at:.1f}s"
        elif kind == "temporal":
            down = self.rng.uniform(*TEMPORAL_DOWN)
            self.timeline.say(f"fault: temporal stopped for {down:.1f}s")
            self.stack.temporal.stop()
            await asyncio.sleep(down)
            self.stack.temporal.start(timeout=120)
            detail = f"temporal down {self.timeline.now() - at:.1f}s"
        else:
            victim = self.stack.workers.kill_one(self.rng)
            detail = f"{victim} killed" if victim else "no worker running to kill"
        self.timeline.say(f"fault over: {detail}")
        self.done.append(Fault(at, kind, detail))

    def restore(self) -> None:
        """Start whichever server a fault left stopped (after an interrupted fault)."""
        if not self.stack.postgres_up():
            self.stack.postgres.start(timeout=120)
            self.timeline.say("postgres started again")
        if not self.stack.temporal_up():
            self.stack.temporal.start(timeout=120)
            self.timeline.say("temporal started again")
