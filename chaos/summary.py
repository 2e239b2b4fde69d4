"""The chaos run's summary, printed on stdout when it is over: what was done to the stack, what
the runs did, what the rows say, and every problem found, one line each.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from temporalio.client import WorkflowExecutionStatus

from chaos.check import Findings
from chaos.faults import Fault
from chaos.workload import Run


@dataclass
class Report:
    """Everything the summary prints."""

    settings: str
    workload_seconds: float
    #: How long the fault under way when time was up went on after it.
    fault_overrun_seconds: float
    total_seconds: float
    faults: list[Fault]
    fault_counts: Counter[str]
    runs: list[Run]
    findings: Findings
    retries: list[str]
    worker_notes: list[str]

    def ok(self) -> bool:
        """No problem found and every run completed: the exit code is 0."""
        completed = all(r.status == WorkflowExecutionStatus.COMPLETED for r in self.runs)
        return completed and not self.findings.problems

    def lines(self) -> list[str]:
        """The summary, line by line."""
        runs, f = self.runs, self.findings
        started = [r for r in runs if r.started]
        statuses = Counter(r.status for r in started)
        completed = statuses[WorkflowExecutionStatus.COMPLETED]
        failed = statuses[WorkflowExecutionStatus.FAILED]
        by_kind = Counter(r.kind.name for r in started)
        counts = ", ".join(f"{k} {n}" for k, n in sorted(self.fault_counts.items()))
        out = [
            f"chaos summary ({self.settings})",
            f"duration: workload {self.workload_seconds:.0f}s (its last fault ended "
            f"{self.fault_overrun_seconds:.0f}s later), whole run {self.total_seconds:.0f}s "
            "(stack start, drain and checks included)",
            f"faults: {len(self.faults)} ({counts})",
            *(f"  +{x.at:7.1f}s {x.kind:8} {x.detail}" for x in self.faults),
            f"runs: started {len(started)}, completed {completed}, failed {failed}, "
            f"other {len(started) - completed - failed}, never started {len(runs) - len(started)}",
            "  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())),
            _run_times(started),
            f"rows: expected {f.rows_expected}, found {f.rows_found}, wrong {f.rows_wrong}"
            " (workflow_runs + task_instances of the completed runs)",
            f"hitl: tasks {f.hitl_tasks}, decisions {f.hitl_decisions}",
            f"status queries checked: {f.queried}",
            "driver retries: " + ("; ".join(self.retries) or "none"),
            "worker exits by themselves: " + ("; ".join(self.worker_notes) or "none"),
            f"problems: {len(f.problems) or 'none'}",
            *(f"  {p}" for p in f.problems),
            f"result: {'OK' if self.ok() else 'FAILED'}",
        ]
        return out


def _run_times(runs: list[Run]) -> str:
    """Median, 95th percentile and longest time from a run's first start attempt to the driver
    seeing it closed: how long the faults held runs up (a review's reviewer delay included).
    """
    timed = sorted(
        (r.closed_at - r.begun_at, r.id)
        for r in runs
        if r.closed_at is not None and r.begun_at is not None
    )
    if not timed:
        return "run time: no run closed"
    median = statistics.median(t for t, _ in timed)
    p95 = timed[min(len(timed) - 1, int(0.95 * len(timed)))][0]
    longest, which = timed[-1]
    return (
        f"run time (first start attempt to close): median {median:.1f}s, "
        f"95th percentile {p95:.1f}s, longest {longest:.1f}s ({which})"
    )
