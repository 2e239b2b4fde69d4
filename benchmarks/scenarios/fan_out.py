"""Scenario (b): a wide fan-out joined by one node."""

from __future__ import annotations

from typing import Any

from benchmarks.hand_written import FAN_OUT, FAN_OUT_UNSANDBOXED
from benchmarks.scenarios.common import (
    FLOW_RUN,
    HAND,
    HAND_UNSANDBOXED,
    Bench,
    Scenario,
    flow_runs,
    hand_runs,
)
from benchmarks.support import edge, node

RUNS = 20
WIDTH = 50


def fan_out(width: int, url: str) -> dict[str, Any]:
    """Start, `width` parallel `api` nodes GETting `url`, one `end` joining them all."""
    calls = [node(f"n{i}", "api", {"url": url}) for i in range(width)]
    join = node("join", "end", {"outputs": {"first": "{{ nodes.n0.output.status }}"}})
    edges = [edge("start", f"n{i}") for i in range(width)]
    edges += [edge(f"n{i}", "join") for i in range(width)]
    return {"nodes": [node("start", "start"), *calls, join], "edges": edges}


def _hand(bench: Bench, workflow: str, side: str) -> Any:
    return hand_runs(
        bench,
        "b",
        workflow,
        {"url": bench.url, "n": WIDTH},
        runs=bench.size(RUNS),
        nodes_per_run=WIDTH,
        side=side,
    )


FAN_OUT_RUNS = Scenario(
    "b",
    f"{RUNS} runs of a {WIDTH}-way fan-out and join",
    {
        HAND: lambda bench: _hand(bench, FAN_OUT, HAND),
        FLOW_RUN: lambda bench: flow_runs(
            bench, "b", fan_out(WIDTH, bench.url), runs=bench.size(RUNS), nodes_per_run=WIDTH
        ),
        HAND_UNSANDBOXED: lambda bench: _hand(bench, FAN_OUT_UNSANDBOXED, HAND_UNSANDBOXED),
    },
    baseline=HAND,
)
