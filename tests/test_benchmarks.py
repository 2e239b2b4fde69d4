"""The benchmark suite still runs end to end: tiny sizes, no timing asserted."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workers.client import FLOW_RUN

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = "a,b,c,e,g"
ARGS = ("--scale", "0.02", "--rounds", "1", "--scenarios", SCENARIOS)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_suite_prints_a_row_per_scenario_and_side():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in done.stdout.splitlines()
        if re.match(r"\| [a-g] \|", line)
    ]
    seen = {(row[0], row[1]) for row in rows}
    for key in SCENARIOS.split(","):
        assert (key, FLOW_RUN) in seen  # the side is named after the workflow
        assert (key, "hand-written") in seen
    for row in rows:
        float(row[-1])  # the ratio column is a number
