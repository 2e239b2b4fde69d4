"""The benchmark suite: each scenario as FlowRun and as a hand-written Temporal workflow.

    python -m benchmarks [--scenarios a,b,c,d,e,f,g] [--rounds 3] [--scale 1]
                         [--temporal ADDRESS --database-url URL] [--out docs/benchmarks.md]

Both sides of a scenario run in the same suite run, alternating (the order flips each
round), so the shared machine's drift hits them alike; each side has its own worker
process, so its CPU and memory are its own. See docs/benchmarks.md for what each figure is.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shlex
import sys
import uuid
from contextlib import AsyncExitStack, suppress
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from benchmarks import report
from benchmarks.measure import Measurement
from benchmarks.scenarios import SCENARIOS, Bench, Scenario
from benchmarks.scenarios.chain import HAND_NO_ROWS, HAND_ROWS
from benchmarks.scenarios.common import FLOW_RUN, HAND_UNSANDBOXED
from benchmarks.support import bench_stack, make_reviewer
from benchmarks.table import HEADER, markdown, notes, rows, side_ratios
from benchmarks.worker_processes import http_peer, start_workers
from workers.cli import known_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; refuses unknown scenarios and half of an external stack."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="e.g. a,b,e")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every size")
    parser.add_argument("--temporal", help="a running Temporal frontend, host:port")
    parser.add_argument("--database-url", help="a running Postgres (migrated if needed)")
    parser.add_argument("--out", help="write the table and the machine's description here")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown or not keys:
        parser.error(f"unknown scenarios {unknown}; choose among {','.join(SCENARIOS)}")
    if bool(args.temporal) != bool(args.database_url):
        parser.error("--temporal and --database-url go together")
    if args.rounds < 1 or not (0 < args.scale < math.inf):
        parser.error("--rounds must be at least 1 and --scale a positive number")
    if args.out and set(keys) != set(SCENARIOS):
        # The block holds one run's table: a subset would drop the other scenarios' rows.
        parser.error("--out writes the whole results table: run every scenario with it")
    args.keys = keys
    return args


async def run_suite(
    args: argparse.Namespace, failures: list[str]
) -> tuple[list[Scenario], list[Measurement]]:
    """Every round of every chosen scenario, sides alternating; prints progress to stderr."""
    scenarios = [SCENARIOS[k] for k in args.keys]
    measurements: list[Measurement] = []
    err: dict[str, Any] = {"file": sys.stderr, "flush": True}
    async with AsyncExitStack() as stack:
        servers = await stack.enter_async_context(bench_stack(args.temporal, args.database_url))
        api_base = stack.enter_context(http_peer())
        workers = stack.enter_context(
            start_workers(servers.temporal_address, servers.database_url, uuid.uuid4().hex[:6])
        )
        bench = Bench(
            servers.client,
            servers.sessions,
            workers,
            api_base,
            args.scale,
            await make_reviewer(servers.sessions),
        )
        # One small run per worker first: the first FlowRun imports its sandbox's modules.
        await warm_up(bench)
        for r in range(args.rounds):
            for scenario in scenarios:
                sides = list(scenario.sides.items())
                for side, measure in sides if r % 2 == 0 else reversed(sides):
                    try:
                        m = await measure(bench)
                    except Exception as exc:  # one failed side must not lose the others
                        print(f"round {r + 1} ({scenario.key}) {side} FAILED: {exc!r}", **err)
                        failures.append(f"({scenario.key}) {side}: failed in round {r + 1}")
                        continue
                    print(
                        f"round {r + 1} ({scenario.key}) {side}: {m.runs_per_second:.2f} runs/s, "
                        f"{m.nodes_per_second:.1f} nodes/s, worker CPU {m.cpu_seconds:.1f}s",
                        **err,
                    )
                    measurements.append(m)
    return scenarios, measurements


async def warm_up(bench: Bench) -> None:
    """A few chain runs on each side, not measured."""
    warm = Bench(bench.client, bench.sessions, bench.workers, bench.api_base, 0, bench.reviewer)
    for measure in SCENARIOS["a"].sides.values():
        await measure(warm)


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print the table, and write it to `--out` when asked."""
    args = parse_args(argv)
    failures: list[str] = []
    try:
        scenarios, measurements = asyncio.run(run_suite(args, failures))
    except Exception as exc:
        known = known_error(exc)  # an unreachable stack, as `meta-agent` says it
        if known is None:
            raise
        print(f"python -m benchmarks: {known}", file=sys.stderr)
        return 1
    table = markdown(HEADER, rows(scenarios, measurements))
    extra = (
        side_ratios(scenarios, measurements, FLOW_RUN, HAND_UNSANDBOXED)
        + side_ratios(scenarios, measurements, HAND_ROWS, HAND_NO_ROWS)
        + notes(measurements)
        + failures
    )
    print(table)
    for line in extra:
        print(line)
    if args.out:
        given = sys.argv[1:] if argv is None else argv
        command = "python -m benchmarks " + shlex.join(_without_password(given))
        report.write(args.out, command, scenarios, table, extra)
        print(f"written to {args.out}", file=sys.stderr)
    return 1 if failures else 0


def _without_password(argv: list[str]) -> list[str]:
    """The command line as the report records it: a database URL's password masked."""
    masked = []
    for arg in argv:
        if arg.startswith("--database-url="):
            arg = "--database-url=" + _without_password([arg.split("=", 1)[1]])[0]
        elif "://" in arg:
            with suppress(ArgumentError):
                arg = make_url(arg).render_as_string(hide_password=True)
        masked.append(arg)
    return masked


if __name__ == "__main__":
    sys.exit(main())
