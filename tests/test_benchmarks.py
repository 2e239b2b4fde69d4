"""The benchmark suite still runs end to end: tiny sizes, no timing asserted."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import _without_password, main, parse_args
from benchmarks.measure import straggler
from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from workers.client import FLOW_RUN
from workers.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = "a,b,c,d,e,g"
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
        if key != "d":
            assert (key, "hand-written") in seen
    # (d): write-back on and off, FlowRun's (its worker without database writes) the baseline.
    no_rows = [row for row in rows if row[:2] == ["d", "FlowRun, no rows"]]
    assert [row[-1] for row in no_rows] == ["1.00"]
    assert {("d", "hand-written, rows"), ("d", "hand-written, no rows")} <= seen
    hand_cost = r"^\(d\) hand-written, rows ÷ hand-written, no rows: [0-9.]+$"
    assert re.search(hand_cost, done.stdout, re.M)
    for row in rows:
        float(row[-1])  # the ratio column is a number
    # (e) also times decisions sent one at a time, on each side.
    one_at_a_time = re.findall(
        r"^\(e\) (.+?):.*one at a time: decision → next node p50 s ([0-9.]+)", done.stdout, re.M
    )
    assert {side for side, _ in one_at_a_time} == {FLOW_RUN, "hand-written"}


async def test_a_straggler_is_named_with_the_pauses_in_its_history(
    flow_worker: FlowWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run far slower than the others is reported with where its history waited."""
    definition = {
        "nodes": [node("start", "start"), node("nap", "wait", {"seconds": 1.5})],
        "edges": [edge("start", "nap")],
    }
    _, slow = await flow_worker.run(definition)
    even = {"a": 1.0, "b": 1.2, "c": 0.9}
    assert await straggler(flow_worker.client, "x", "side", even) == {}
    notes = await straggler(flow_worker.client, "x", "side", {**even, slow: 9.0})
    assert notes == {"slowest run s": 9.0, "median run s": 1.1}
    report = capsys.readouterr().err
    assert f"run {slow} took 9.0 s" in report
    # The timer's 1.5 s is the pause: it started and fired 1.5 s apart.
    assert "timer_fired after 1." in report


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (["--scale", "nan"], "--scale a positive number"),
        (["--scale", "inf"], "--scale a positive number"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--scenarios", "a,d", "--out", "x.md"], "--out writes the whole results table"),
        (["--temporal", "localhost:7233"], "--temporal and --database-url go together"),
    ],
)
def test_a_command_line_that_would_mislead_is_refused(
    args: list[str], refusal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(args)
    assert exited.value.code == 2
    assert refusal in capsys.readouterr().err


def test_the_recorded_command_hides_a_database_password() -> None:
    given = ["--database-url", "postgresql://u:s3cret@db:5432/x", "--temporal", "t:7233"]
    assert _without_password(given) == [
        "--database-url",
        "postgresql://u:***@db:5432/x",
        "--temporal",
        "t:7233",
    ]
    assert _without_password(["--database-url=postgresql+asyncpg://u:pw@db/x"]) == [
        "--database-url=postgresql+asyncpg://u:***@db/x"
    ]


def test_an_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    assert main(["--temporal", "127.0.0.1:1", "--database-url", closed, "--scale", "0.01"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks: cannot reach the database: ")
    assert "Traceback" not in err
