"""The processes a benchmark measures: FlowRun workers, the hand-written worker, the HTTP peer.

Each worker is its own OS process, so its CPU time and peak memory are its own: not the
driver's (which starts runs and waits for them) nor the HTTP peer's nor the other side's.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from workers.processes import spawn, stop, wait_ready

_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class WorkerProcess:
    """One running worker process and what the suite reads of it."""

    name: str
    proc: psutil.Process

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (its threads included: the SDK's Rust core's too)."""
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def rss_mib(self) -> float:
        """Resident memory right now."""
        return float(self.proc.memory_info().rss) / 2**20

    def reset_peak(self) -> None:
        """Restart the peak-RSS count (VmHWM) at the current RSS (Linux: clear_refs 5)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def peak_rss_mib(self) -> float:
        """The kernel's high-water mark of resident memory (VmHWM) since the last reset."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return self.rss_mib()


def worker_env(temporal_address: str, database_url: str, task_queue: str, home: Path) -> dict:
    """The environment of a worker process (README's configuration table), this tree first."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")])),
        DATABASE_URL=database_url,
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_TASK_QUEUE=task_queue,
        API_ALLOWED_HOSTS=env.get("API_ALLOWED_HOSTS", "127.0.0.0/8"),
        META_AGENT_HOME=str(home),
    )
    return env


@contextmanager
def worker_process(
    name: str, argv: list[str], env: dict[str, str], logs: Path
) -> Iterator[WorkerProcess]:
    """Start a worker, wait until it polls its queue, stop it (SIGTERM) on exit."""
    log = logs / f"{name}.log"
    proc = spawn(argv, log=log, env=env)

    def polling() -> bool:
        return "worker polling task queue" in log.read_text(errors="replace")

    try:
        wait_ready(
            proc,
            polling,
            name=name,
            ready_means="poll its task queue",
            log=log,
            timeout=120,
            stop=lambda: stop(proc),
        )
        yield WorkerProcess(name, psutil.Process(proc.pid))
    finally:
        stop(proc)


@dataclass
class Workers:
    """The processes of one suite run: FlowRun's worker and the hand-written one."""

    flow_run: WorkerProcess
    hand: WorkerProcess
    flow_queue: str
    hand_queue: str
    temporal_address: str
    database_url: str
    logs: Path

    def extra_flow_run_worker(self, name: str) -> AbstractContextManager[WorkerProcess]:
        """Another FlowRun worker process on the same queue (scenario f)."""
        return worker_process(
            name,
            [sys.executable, "-m", "workers.cli", "worker", "--no-register"],
            worker_env(self.temporal_address, self.database_url, self.flow_queue, self.logs / name),
            self.logs,
        )

    @property
    def no_rows_queue(self) -> str:
        """The queue of (d)'s write-back-off FlowRun worker."""
        return f"{self.flow_queue}-no-rows"

    def flow_run_without_rows_worker(self) -> AbstractContextManager[WorkerProcess]:
        """FlowRun's worker with its database writes left out, on `no_rows_queue` (scenario d)."""
        name = "flowrun-no-rows"
        env = worker_env(
            self.temporal_address, self.database_url, self.no_rows_queue, self.logs / name
        )
        # Both would write rows for its runs, which have none: the reconciler records any
        # closed run without a row as ended without recording its end.
        env.update(RECONCILE_INTERVAL_SECONDS="0", SCHEDULE_SYNC_INTERVAL_SECONDS="0")
        argv = [sys.executable, "-m", "benchmarks.flow_run_without_rows"]
        return worker_process(name, argv, env, self.logs)


@contextmanager
def start_workers(temporal_address: str, database_url: str, tag: str) -> Iterator[Workers]:
    """Both sides' workers, each on its own task queue, for the whole suite run."""
    flow_queue, hand_queue = f"bench-flow-{tag}", f"bench-hand-{tag}"
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp, ExitStack() as stack:
        logs = Path(tmp)
        flow = stack.enter_context(
            worker_process(
                "flowrun-1",
                [sys.executable, "-m", "workers.cli", "worker", "--no-register"],
                worker_env(temporal_address, database_url, flow_queue, logs / "flowrun-1"),
                logs,
            )
        )
        hand = stack.enter_context(
            worker_process(
                "hand-written",
                [sys.executable, "-m", "benchmarks.hand_written", "--task-queue", hand_queue],
                worker_env(temporal_address, database_url, hand_queue, logs / "hand"),
                logs,
            )
        )
        yield Workers(flow, hand, flow_queue, hand_queue, temporal_address, database_url, logs)


@contextmanager
def http_peer() -> Iterator[str]:
    """The sample service in a process of its own (its threads would otherwise share the
    driver's GIL); yields its base URL.
    """
    code = (
        "import sys, threading\n"
        "from workers.sample_service import start_sample_service\n"
        "server, url = start_sample_service()\n"
        "print(url, flush=True)\n"
        "threading.Event().wait()\n"
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-http-") as tmp,
        peer_process([sys.executable, "-c", code], Path(tmp)) as url,
    ):
        yield url


@contextmanager
def peer_process(argv: list[str], home: Path) -> Iterator[str]:
    """An HTTP peer run as `argv` (which prints its base URL first), its log in `home`;
    yields that URL and stops the process on the way out.
    """
    log = home / "http.log"
    proc = spawn(argv, log=log, env=worker_env("", "", "", home))
    try:
        wait_ready(
            proc,
            lambda: "http://" in log.read_text(errors="replace"),
            name="the HTTP peer",
            ready_means="listen",
            log=log,
            timeout=60,
            stop=lambda: stop(proc),
        )
        yield log.read_text().split()[0]
    finally:
        stop(proc)
