"""The chaos tool still runs end to end: one minute of workload under every kind of fault, and
every run completes with exactly its rows.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ("--minutes", "1", "--fault-every", "12", "--workers", "2", "--seed", "1")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_minute_of_faults_leaves_every_run_completed_with_exact_rows():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "chaos", *ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    summary = done.stdout
    assert done.returncode == 0, summary + done.stderr[-3000:]
    faults = re.search(
        r"^faults: \d+ \(postgres (\d+), temporal (\d+), worker (\d+)\)", summary, re.M
    )
    assert faults, summary
    assert all(int(n) >= 1 for n in faults.groups()), summary
    rows = re.search(r"^rows: expected (\d+), found (\d+), wrong (\d+)", summary, re.M)
    assert rows, summary
    expected, found, wrong = map(int, rows.groups())
    assert expected == found > 0, summary
    assert wrong == 0, summary
    started = re.search(r"^runs: started (\d+), completed (\d+), failed 0, other 0", summary, re.M)
    assert started, summary
    assert started[1] == started[2], summary
    assert "problems: none" in summary
