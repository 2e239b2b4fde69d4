"""Scenario (c): one run looping over many items, a bounded number at a time.

The body is one `api` node per item on both sides. Both continue as new when Temporal
suggests it (FlowRun by itself; the hand-written loop as written in `hand_written.py`).
"""

from __future__ import annotations

from typing import Any

from benchmarks.hand_written import LOOP
from benchmarks.scenarios.common import FLOW_RUN, HAND, Scenario, flow_runs, hand_runs
from benchmarks.support import node

ITEMS = 10_000
CONCURRENCY = 50


def loop(url: str) -> dict[str, Any]:
    """Start, then a loop over `input.items` whose body is one `api` node GETting `url`."""
    return {
        "nodes": [
            node("start", "start"),
            node("loop", "loop", {"items": "{{ input.items }}", "maxConcurrency": CONCURRENCY}),
            {**node("call", "api", {"url": url}), "parentId": "loop"},
        ],
        "edges": [{"id": "start-loop", "source": "start", "target": "loop"}],
    }


LOOP_RUN = Scenario(
    "c",
    f"1 run of a loop over {ITEMS:,} items, maxConcurrency {CONCURRENCY}, body one api node",
    {
        HAND: lambda bench: hand_runs(
            bench,
            "c",
            LOOP,
            {"url": bench.url, "items": bench.size(ITEMS), "concurrency": CONCURRENCY},
            runs=1,
            nodes_per_run=bench.size(ITEMS),
        ),
        FLOW_RUN: lambda bench: flow_runs(
            bench,
            "c",
            loop(bench.url),
            runs=1,
            nodes_per_run=bench.size(ITEMS),
            inputs={"items": list(range(bench.size(ITEMS)))},
        ),
    },
    baseline=HAND,
)
