"""Fault injection: a mixed workload while Postgres stops, Temporal restarts and workers die.

    python -m chaos [--minutes M] [--workers N] [--seed S] [--fault-every SECONDS]
                    [--rate RUNS_PER_SECOND] [--max-in-flight N] [--drain-minutes M] [--keep]

Starts a throwaway stack (embedded Postgres, Temporal dev server, N worker processes, an
HTTP peer), runs chains, fan-outs, loops and reviews for M minutes while faults hit it,
then waits for every run to close and checks each against the run invariant. Prints the
timeline on stderr and the summary on stdout; exit 0 only if every run completed and no
problem was found. Everything started is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time

from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from chaos.check import Findings, check
from chaos.faults import Faults
from chaos.flows import kinds
from chaos.log import Timeline
from chaos.retry import Retries
from chaos.stack import Stack, chaos_stack
from chaos.summary import Report
from chaos.workload import Workload


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; refuses sizes that cannot make a run."""
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="workload duration")
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--fault-every", type=float, default=30.0, help="mean seconds apart")
    parser.add_argument("--rate", type=float, default=1.0, help="runs started per second")
    parser.add_argument("--max-in-flight", type=int, default=25, help="runs open at once")
    parser.add_argument("--drain-minutes", type=float, default=5.0, help="wait for runs to close")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder (logs)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.workers < 1 or args.rate <= 0 or args.max_in_flight < 1:
        parser.error("--minutes and --rate must be positive, --workers and --max-in-flight >= 1")
    if args.fault_every < 1 or args.drain_minutes <= 0:
        parser.error("--fault-every must be at least 1 and --drain-minutes positive")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    return args


async def _workload(
    args: argparse.Namespace, stack: Stack, timeline: Timeline, retries: Retries
) -> tuple[Workload, Faults, float, float]:
    """The workload under faults for `--minutes`, then drained; returns how long runs were
    started, and how much longer the fault under way at the end lasted.
    """
    rng = random.Random(args.seed)
    workload = Workload(
        stack, kinds(stack.peer_url), rng, timeline, retries, args.rate, args.max_in_flight
    )
    faults = Faults(stack, random.Random(rng.random()), timeline, args.fault_every)
    stop = asyncio.Event()
    supervisor = asyncio.create_task(stack.workers.supervise())
    tasks = [asyncio.create_task(workload.drive(stop)), asyncio.create_task(faults.inject(stop))]
    began = time.monotonic()
    try:
        timeline.say(f"workload for {args.minutes:g} min, seed {args.seed}")
        await asyncio.sleep(args.minutes * 60)
        stop.set()
        duration = time.monotonic() - began
        timeline.say(f"time is up: no new runs, no new faults ({len(workload.runs)} runs begun)")
        await asyncio.gather(*tasks)
        overrun = time.monotonic() - began - duration
        faults.restore()
        timeline.say(f"draining {workload.in_flight()} open runs ({stack.workers.alive()} workers)")
        await workload.drain(args.drain_minutes * 60)
        timeline.say("every run followed to its end; checking")
        return workload, faults, duration, overrun
    finally:
        stop.set()
        for task in [*tasks, supervisor]:
            task.cancel()
        await asyncio.gather(*tasks, supervisor, return_exceptions=True)
        await workload.cancel()


async def chaos(args: argparse.Namespace) -> Report:
    """The whole chaos run, from stack start to the report (servers stopped at the end)."""
    timeline = Timeline()
    retries = Retries()
    async with chaos_stack(args.workers, args.seed, timeline, keep=args.keep) as stack:
        workload, faults, duration, overrun = await _workload(args, stack, timeline, retries)
        retries.deadline = asyncio.get_running_loop().time() + 180
        findings = await check(stack, retries, workload.runs)
        worker_notes = _worker_exits(stack, findings)
        stack.keep = stack.keep or bool(findings.problems)
        timeline.say(f"checked; stopping the stack{f' (kept in {stack.home})' * stack.keep}")
    return Report(
        f"seed {args.seed}, {args.workers} workers, {args.minutes:g} min, "
        f"a fault every ~{args.fault_every:g}s, {args.rate:g} runs/s, "
        f"at most {args.max_in_flight} in flight (peak {workload.peak})",
        duration,
        overrun,
        timeline.now(),
        faults.done,
        faults.counts(),
        workload.runs,
        findings,
        retries.lines(),
        worker_notes,
    )


def _worker_exits(stack: Stack, findings: Findings) -> list[str]:
    """A worker that died while polling is a problem; one that could not start (Temporal was
    down) is only noted: it is started again.
    """
    notes = []
    for name, code, polling, last in stack.workers.exits:
        if polling:
            findings.problems.append(f"{name} exited by itself (code {code}): {last[:200]}")
        else:
            notes.append(f"{name} could not start (code {code}): {last[:120]}")
    return notes


async def _main(args: argparse.Namespace, signals: list[int]) -> Report:
    """`chaos` with SIGTERM handled as Ctrl-C is: the stack is stopped on the way out."""
    task = asyncio.current_task()
    assert task is not None

    def terminate() -> None:
        signals.append(signal.SIGTERM)
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    return await chaos(args)


def quiet_client_logs() -> None:
    """The driver's Temporal client logs each call it retries while the server is down (dozens
    of lines per outage); the summary counts the driver's retries instead.
    """
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    runtime = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))
    Runtime.set_default(runtime, error_if_already_set=False)


def main(argv: list[str] | None = None) -> int:
    """Run, print the summary; 0 when every run completed and nothing was wrong."""
    args = parse_args(argv)
    quiet_client_logs()
    signals: list[int] = []
    try:
        report = asyncio.run(_main(args, signals))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 128 + (signals[0] if signals else signal.SIGINT)
    for line in report.lines():
        print(line)
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
