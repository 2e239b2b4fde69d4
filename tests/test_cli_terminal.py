"""`meta-agent run --wait` in a real terminal (a tmux pane): the live table, the review it
waits on with the `hitl decide` line to paste, and the run's end once that line is run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.flows import FlowWorker
from tests.hitl_support import People, review_flow

ROOT = Path(__file__).resolve().parents[1]
DECIDE_LINE = re.compile(r"meta-agent hitl decide (\S+) --approve --as (\S+)")

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Pane:
    """One tmux pane on a private server (its own socket), so nothing else's tmux is touched."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    def start(self, command: str) -> None:
        # The pane stays after the command ends, so its last screen can still be read.
        self.tmux("new-session", "-d", "-s", "t", "-x", "200", "-y", "50", command + "; sleep 600")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "t")  # -J: wrapped lines joined

    async def wait_for(self, pattern: str, polls: int = 600) -> str:
        """The screen once it shows `pattern` (a regex); fails with the screen if it never does."""
        screen = ""
        for _ in range(polls):
            screen = await asyncio.to_thread(self.screen)
            if re.search(pattern, screen):
                return screen
            await asyncio.sleep(0.1)
        raise AssertionError(f"the pane never showed {pattern!r}:\n{screen}")


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    p = Pane(tmp_path / "tmux.sock")
    yield p
    subprocess.run(["tmux", "-S", str(p.socket), "kill-server"], capture_output=True, check=False)


async def test_run_wait_draws_the_review_and_the_line_that_decides_it(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    flow_worker: FlowWorker,
    people: People,
    pane: Pane,
    tmp_path: Path,
) -> None:
    flow = tmp_path / "review.json"
    flow.write_text(json.dumps(review_flow(deadlineSeconds=3600)))
    env = {
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": flow_worker.task_queue,
        "PYTHONPATH": str(ROOT),
        "TERM": "xterm-256color",
    }
    run_id = f"tmux-{uuid.uuid4().hex[:10]}"
    command = " ".join(
        [
            "cd",
            shlex.quote(str(ROOT)),
            "&&",
            "env",
            "-u",
            "COLUMNS",  # the pane's own width, not the width of whoever runs the tests
            "-u",
            "LINES",
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            shlex.quote(sys.executable),
            "-m",
            "workers.cli",
            "run",
            shlex.quote(str(flow)),
            "--tenant",
            people.tenant,
            "--id",
            run_id,
            "--input",
            shlex.quote('{"what": "the tmux order"}'),
            "--wait",
            ";",
            "echo",
            "EXIT=$?",
        ]
    )
    pane.start(command)

    screen = await pane.wait_for(DECIDE_LINE.pattern)
    assert "waiting for review: Review the tmux order" in screen
    assert "role finance" in screen
    assert re.search(r"deadline\s+\d{4}-\d\d-\d\d", screen), screen
    assert re.search(r"review\W.*running\W+hitl", screen), screen  # the table's row
    task_id, who = DECIDE_LINE.search(screen).groups()  # type: ignore[union-attr]
    assert who.startswith(("finance-", "finance2-"))  # a holder of the role, by username

    decided = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workers.cli", "hitl", "decide", task_id, "--approve", "--as", who],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert decided.returncode == 0, decided.stdout + decided.stderr

    screen = await pane.wait_for(r"EXIT=\d+")
    assert "EXIT=0" in screen, screen
    assert f"run {run_id} completed" in screen
    assert re.search(r"on_approved\W.*completed\W+transform", screen), screen
    assert re.search(r"on_rejected\W.*skipped", screen), screen
    assert "waiting for review" not in screen  # the final frame has no open review
