"""The results block of docs/benchmarks.md: the table and what it was measured on.

Only the text between the two markers is replaced, so the page's prose (methods, findings)
is kept when the suite writes new figures; a file without the markers gets them appended.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks.scenarios import Scenario

BEGIN = "<!-- results: written by `python -m benchmarks --out`; edit outside this block -->"
END = "<!-- end of results -->"


def machine() -> str:
    """CPU model and count, memory, Python and temporalio versions."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        ram = f"{kib / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration):
        ram = "RAM unknown"
    return (
        f"{os.cpu_count()} x {cpu}, {ram}, Python {platform.python_version()}, "
        f"temporalio {version('temporalio')}"
    )


def commit() -> str:
    """The short commit of the tree measured (`+dirty` when it has uncommitted changes)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def block(command: str, scenarios: Sequence[Scenario], table: str, notes: Sequence[str]) -> str:
    """The results block: when, where, how invoked, the scenarios, the table and the notes."""
    lines = [
        BEGIN,
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: `{commit()}`",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        "",
        "Scenarios:",
        "",
        *[f"- ({s.key}) {s.title}; baseline of the ratio: {s.baseline}" for s in scenarios],
        "",
        table,
        "",
        *[f"- {n}" for n in notes],
        "",
        END,
    ]
    return "\n".join(lines)


def write(
    path: str, command: str, scenarios: Sequence[Scenario], table: str, notes: Sequence[str]
) -> None:
    """Put the results block into `path`, replacing an earlier one."""
    out = Path(path)
    new = block(command, scenarios, table, notes)
    old = out.read_text() if out.exists() else "# Benchmarks\n\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        text = head + new + rest.split(END, 1)[1]
    else:
        text = old.rstrip("\n") + "\n\n" + new + "\n"
    out.write_text(text)
