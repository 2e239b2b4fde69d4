"""One timeline for the driver's messages: every line stamped with the seconds since the start,
so a fault and what the runs did around it can be read side by side, and with the wall clock,
to find the same moment in the workers' logs and the runs' histories.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class Timeline:
    """Prints `[+SECONDS HH:MM:SS] message` lines on stderr (stdout is kept for the summary)."""

    started: float = field(default_factory=time.monotonic)
    quiet: bool = False

    def now(self) -> float:
        """Seconds since the timeline started."""
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        """One stamped line, flushed at once so a hung run still shows where it stopped."""
        if not self.quiet:
            clock = time.strftime("%H:%M:%S")
            print(f"[+{self.now():7.1f}s {clock}] {message}", file=sys.stderr, flush=True)
