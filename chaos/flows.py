"""The workload's four kinds of run, and the node rows each one must leave.

Each kind is drawn the way the builder saves it (`flow_language.drawing`). `expected_tasks`
is the set of `task_instances.orchestrator_task_id`s a completed run of the kind writes,
read off real runs: a loop's body writes one row per item, keyed `<loop>[<index>].<node>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.support import REVIEW_FLOW
from flow_language.drawing import edge, node

#: Items of the loop kind, and how many run at once.
LOOP_ITEMS = 6
LOOP_CONCURRENCY = 2
#: Branches of the fan-out kind.
FAN_OUT = 5
#: `api` nodes of the chain kind.
CHAIN = 3


def chain(base: str) -> dict[str, Any]:
    """Start, three `api` calls one after the other, an `end` returning the last answer."""
    calls = [node(f"call{i}", "api", {"url": f"{base}/chain/{i}"}) for i in range(CHAIN)]
    edges = [edge("start", "call0")]
    edges += [edge(f"call{i}", f"call{i + 1}") for i in range(CHAIN - 1)]
    edges += [edge(f"call{CHAIN - 1}", "done")]
    done = node(
        "done", "end", {"outputs": {"last": f"{{{{ nodes.call{CHAIN - 1}.output.json }}}}"}}
    )
    return {"nodes": [node("start", "start"), *calls, done], "edges": edges}


def fan_out(base: str) -> dict[str, Any]:
    """Start, five `api` calls at once, one `end` joining them."""
    calls = [node(f"call{i}", "api", {"url": f"{base}/fan/{i}"}) for i in range(FAN_OUT)]
    edges = [edge("start", f"call{i}") for i in range(FAN_OUT)]
    edges += [edge(f"call{i}", "join") for i in range(FAN_OUT)]
    join = node("join", "end", {"outputs": {"first": "{{ nodes.call0.output.status }}"}})
    return {"nodes": [node("start", "start"), *calls, join], "edges": edges}


def loop(base: str) -> dict[str, Any]:
    """Start, a loop over `input.items` two at a time whose body is one `api` call, an `end`."""
    return {
        "nodes": [
            node("start", "start"),
            node(
                "each",
                "loop",
                {"items": "{{ input.items }}", "maxConcurrency": LOOP_CONCURRENCY},
            ),
            {**node("call", "api", {"url": f"{base}/loop/{{{{ item }}}}"}), "parentId": "each"},
            node("done", "end", {"outputs": {"n": "{{ nodes.each.output | length }}"}}),
        ],
        "edges": [edge("start", "each"), edge("each", "done")],
    }


@dataclass(frozen=True)
class Kind:
    """One kind of run: its drawing, its inputs, whether it parks on a review, its rows."""

    name: str
    definition: dict[str, Any]
    inputs: dict[str, Any]
    review: bool
    expected_tasks: frozenset[str]


def kinds(base: str) -> dict[str, Kind]:
    """The four kinds, their `api` nodes calling the peer at `base`."""
    return {
        "chain": Kind(
            "chain",
            chain(base),
            {},
            False,
            frozenset({"start", *(f"call{i}" for i in range(CHAIN)), "done"}),
        ),
        "fan_out": Kind(
            "fan_out",
            fan_out(base),
            {},
            False,
            frozenset({"start", *(f"call{i}" for i in range(FAN_OUT)), "join"}),
        ),
        "loop": Kind(
            "loop",
            loop(base),
            {"items": list(range(LOOP_ITEMS))},
            False,
            frozenset({"start", "each", "done", *(f"each[{i}].call" for i in range(LOOP_ITEMS))}),
        ),
        "review": Kind(
            "review",
            REVIEW_FLOW,
            {"what": "chaos"},
            True,
            frozenset({"start", "review", "on_approved", "on_rejected"}),
        ),
    }


def expected_rows(kind: Kind, approve: bool | None) -> dict[str, str]:
    """Each node row a completed run of `kind` leaves, with its status: all completed but a
    review's branch not taken, which is skipped.
    """
    rows = dict.fromkeys(kind.expected_tasks, "completed")
    if kind.review:
        rows["on_rejected" if approve else "on_approved"] = "skipped"
    return rows
