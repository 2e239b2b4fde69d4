"""Recorded histories must replay against today's FlowRun without non-determinism.

The histories in tests/histories/ were recorded from real runs. A change to the
interpreter that would break runs already in flight fails here; such a change
needs `workflow.patched()` (or a new workflow version), not a new recording.
Record only when adding cases: META_AGENT_RECORD_HISTORIES=1 pytest tests/test_replay.py
writes the cases that have no file yet; existing files keep the histories of older versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.worker import Replayer

from flow_language.drawing import edge, node
from tests.a2a_peer import A2APeer
from tests.flows import FlowWorker
from tests.hitl_support import decide, make_people, open_task, review_flow
from tests.http_peer import HttpPeer, Reply
from workers.client import HITL_DECISION_SIGNAL, send_event
from workers.json_converter import DATA_CONVERTER
from workers.sandbox_runner import flow_sandbox_runner
from workflows.flow_run import FlowRun

HISTORIES = Path(__file__).parent / "histories"
RECORD = os.environ.get("META_AGENT_RECORD_HISTORIES") == "1"


def _cases(base: str, a2a_base: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    examples = Path(__file__).resolve().parents[1] / "examples" / "flows"
    load = lambda name: json.loads((examples / f"{name}.json").read_text())  # noqa: E731
    return {
        "customer-360": (load("customer-360"), {"api_base": base, "customer_id": 1}),
        "basket-loop": (
            load("basket-loop"),
            {
                "api_base": base,
                "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}, {"sku": "a", "qty": 3}],
            },
        ),
        "route-and-wait": (
            {
                "nodes": [
                    node("start", "start"),
                    node(
                        "charge",
                        "api",
                        {"method": "POST", "url": f"{base}/charge"},
                        onError="route",
                        retry={"maxAttempts": 2, "initialIntervalSeconds": 0.1},
                    ),
                    node("paid", "transform", {"output": "paid"}),
                    node("failed", "transform", {"output": "{{ nodes.charge.output.error }}"}),
                    node("nap", "wait", {"seconds": 1}),
                    node("ping", "wait", {"event": "ping", "timeoutSeconds": 30}),
                    node(
                        "check",
                        "condition",
                        {
                            "branches": [{"handle": "yes", "when": "{{ input.n > 1 }}"}],
                            "default": "no",
                        },
                    ),
                    node("yes", "transform", {"output": "yes"}),
                    node("no", "transform", {"output": "no"}),
                ],
                "edges": [
                    edge("start", "charge"),
                    edge("charge", "paid"),
                    edge("charge", "failed", "error"),
                    edge("failed", "nap"),
                    edge("nap", "ping"),
                    edge("ping", "check"),
                    edge("check", "yes", "yes"),
                    edge("check", "no", "no"),
                ],
            },
            {"n": 2},
        ),
        "approval": (
            review_flow(
                deadlineSeconds=3600, escalation=[{"afterSeconds": 1800, "toRole": "finance-lead"}]
            ),
            {"what": "replay"},
        ),
        # Agents beyond api: a sensor alert drives a condition, an a2a task needing input
        # leaves by its input_required edge.
        "sensor-and-a2a": (
            {
                "nodes": [
                    node("start", "start"),
                    node(
                        "probe",
                        "sensor",
                        {
                            "source": {"type": "inline", "values": "{{ input.readings }}"},
                            "thresholds": [
                                {"name": "hot", "aggregate": "max", "op": ">", "value": 80}
                            ],
                        },
                    ),
                    node(
                        "check",
                        "condition",
                        {
                            "branches": [
                                {"handle": "hot", "when": "{{ nodes.probe.output.alerting }}"}
                            ],
                            "default": "calm",
                        },
                    ),
                    node("ask", "a2a", {"agentUrl": f"{a2a_base}/asker", "message": "paint"}),
                    node("calm", "transform", {"output": "calm"}),
                    node("answered", "transform", {"output": "{{ nodes.ask.output.state }}"}),
                    node("needs", "transform", {"output": "{{ nodes.ask.output.messages }}"}),
                ],
                "edges": [
                    edge("start", "probe"),
                    edge("probe", "check"),
                    edge("check", "ask", "hot"),
                    edge("check", "calm", "calm"),
                    edge("ask", "answered"),
                    edge("ask", "needs", "input_required"),
                ],
            },
            {"readings": [20, 21, 95]},
        ),
        # Strict template lookups: keys named like dict methods, a join reading a skipped
        # branch, absence written out with default.
        "data-first": (
            {
                "nodes": [
                    node("start", "start"),
                    node("items", "loop", {"items": "{{ input.items }}"}),
                    {
                        **node("get", "transform", {"output": "{{ item.values * 2 }}"}),
                        "parentId": "items",
                    },
                    node(
                        "keys",
                        "condition",
                        {
                            "branches": [{"handle": "big", "when": "{{ input.get > 10 }}"}],
                            "default": "small",
                        },
                    ),
                    node("big", "transform", {"output": {"size": "big"}}),
                    node("small", "transform", {"output": {"size": "small"}}),
                    node(
                        "update",
                        "end",
                        {
                            "outputs": {
                                "doubled": "{{ nodes.items.output }}",
                                "big": "{{ nodes.big.output.size }}",
                                "small": "{{ nodes.small.output.size }}",
                                "missing": "{{ input.nothing | default('none') }}",
                            }
                        },
                    ),
                ],
                "edges": [
                    edge("start", "items"),
                    edge("items", "keys"),
                    edge("keys", "big", "big"),
                    edge("keys", "small", "small"),
                    edge("big", "update"),
                    edge("small", "update"),
                ],
            },
            {"items": [{"values": 1}, {"values": 2}], "get": 3},
        ),
        # Every end recorded: a run parked on a wait and a review, cancelled by request.
        "cancelled-while-parked": (
            {
                "nodes": [
                    node("start", "start"),
                    node("nap", "wait", {"seconds": 3600}),
                    node(
                        "review",
                        "hitl",
                        {"title": "Look", "decisionType": "approval", "assigneeRole": "finance"},
                    ),
                    node("yes", "transform", {"output": "{{ nodes.review.output }}"}),
                    node("no", "transform", {"output": "{{ nodes.review.output }}"}),
                ],
                "edges": [
                    edge("start", "nap"),
                    edge("start", "review"),
                    edge("review", "yes", "approved"),
                    edge("review", "no", "rejected"),
                ],
            },
            {},
        ),
        # A review escalated, sent a refused and a malformed decision, then expired.
        "expired-review": (
            {
                "nodes": [
                    node("start", "start"),
                    node(
                        "review",
                        "hitl",
                        {
                            "title": "Look",
                            "decisionType": "approval",
                            "assigneeRole": "finance",
                            "deadlineSeconds": 3,
                            "escalation": [{"afterSeconds": 1, "toRole": "finance-lead"}],
                        },
                    ),
                    node("late", "transform", {"output": "{{ nodes.review.output.handle }}"}),
                ],
                "edges": [edge("start", "review"), edge("review", "late", "expired")],
            },
            {},
        ),
        # Waits that do wait on events (WaitingEvents): two on one name (one upsert), one
        # that times out by its edge; the events arrive while they wait.
        "event-waits": (
            {
                "nodes": [
                    node("start", "start"),
                    node("go1", "wait", {"event": "go", "timeoutSeconds": 60}),
                    node("go2", "wait", {"event": "go", "timeoutSeconds": 60}),
                    node("never", "wait", {"event": "never", "timeoutSeconds": 1}),
                    node("late", "transform", {"output": "timed out"}),
                    node(
                        "end",
                        "end",
                        {"outputs": {"first": "{{ nodes.go1.output.payload }}"}},
                    ),
                ],
                "edges": [
                    edge("start", "go1"),
                    edge("start", "go2"),
                    edge("start", "never"),
                    edge("never", "late", "timeout"),
                    edge("go1", "end"),
                    edge("go2", "end"),
                ],
            },
            {},
        ),
        # A named inline flow (FlowName) whose loop continues as new (checkpoint apart); its
        # first run and its last are recorded (`-continued`).
        "named-continued": (
            {
                "name": "history-named-flow",
                "nodes": [
                    node("start", "start"),
                    node("each", "loop", {"items": "{{ range(60) | list }}", "maxConcurrency": 10}),
                    {**node("price", "api", {"url": f"{base}/products/a"}), "parentId": "each"},
                ],
                "edges": [edge("start", "each")],
            },
            {},
        ),
    }


#: Cases started with a small history limit, so they continue as new.
_CONTINUED = {"named-continued": 100}


def _peer_routes(peer: HttpPeer) -> None:
    peer.route("GET", "/customers/1", Reply(body={"name": "Ada"}))
    peer.route("GET", "/customers/1/orders", Reply(body=[{"id": 1}]))
    peer.route("GET", "/customers/1/tickets", Reply(status=500, body={"down": True}))
    peer.route("GET", "/products/a", Reply(body={"price": 1.5}))
    peer.route("GET", "/products/b", Reply(body={"price": 4}))
    peer.route("POST", "/charge", Reply(status=500, body={"error": "gateway"}))


@pytest.mark.skipif(not RECORD, reason="recording only on request (META_AGENT_RECORD_HISTORIES=1)")
async def test_record_histories(
    flow_worker: FlowWorker, http_peer: HttpPeer, a2a_peer: A2APeer
) -> None:
    _peer_routes(http_peer)
    reviewers = await make_people(flow_worker.sessions)
    HISTORIES.mkdir(exist_ok=True)
    # A release that changes the commands a run issues records its histories beside the
    # older ones under a suffix of its own (META_AGENT_HISTORY_SUFFIX, e.g. `-local`).
    suffix = os.environ.get("META_AGENT_HISTORY_SUFFIX", "")
    for name, (definition, inputs) in _cases(http_peer.base, a2a_peer.base).items():
        if (HISTORIES / f"{name}{suffix}.json").exists():
            continue
        reviewed = ("approval", "cancelled-while-parked", "expired-review")
        tenant = reviewers.tenant if name in reviewed else None
        handle = await flow_worker.start(
            definition,
            inputs,
            workflow_id=f"history-{name}{suffix}",
            tenant_id=tenant,
            **({"history_limit": _CONTINUED[name]} if name in _CONTINUED else {}),
        )
        if name == "route-and-wait":
            await asyncio.sleep(2)
            await send_event(flow_worker.client, handle.id, "ping", 1)
        if name == "event-waits":
            await asyncio.sleep(2)
            for n in (1, 2):
                await send_event(flow_worker.client, handle.id, "go", n)
        if name == "approval":
            task = (await open_task(handle))[0]
            await decide(handle, task["id"], {"approved": True}, reviewers.finance, "ok")
        if name == "expired-review":
            task = (await open_task(handle))[0]
            await handle.signal(
                HITL_DECISION_SIGNAL,
                {
                    "hitl_task_id": task["id"],
                    "decision": {"approved": True},
                    "decided_by": reviewers.outsider,
                },
            )
            await handle.signal(
                HITL_DECISION_SIGNAL, {"hitl_task_id": task["id"], "decision": "yes"}
            )
        if name == "cancelled-while-parked":
            await open_task(handle)
            await handle.cancel()
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
        # The chain's first run (a handle from a start follows the chain to its last run).
        first = flow_worker.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        history = await first.fetch_history()
        (HISTORIES / f"{name}{suffix}.json").write_text(history.to_json())
        if name in _CONTINUED:  # the chain's last run, started with the checkpoint apart
            last = await flow_worker.client.get_workflow_handle(handle.id).fetch_history()
            assert last.run_id != history.run_id
            (HISTORIES / f"{name}-continued{suffix}.json").write_text(last.to_json())


def _history_files() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_histories_are_recorded() -> None:
    assert len(_history_files()) >= 3


@pytest.mark.parametrize("path", _history_files(), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[FlowRun],
        data_converter=DATA_CONVERTER,
        workflow_runner=flow_sandbox_runner(),
    )
    from temporalio.client import WorkflowHistory

    history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
    await replayer.replay_workflow(history)


async def test_a_random_choice_is_the_same_on_every_replay(flow_worker: FlowWorker) -> None:
    """`| random` decides a branch: a replay that chose differently would issue other commands."""
    flow = {
        "nodes": [
            node("start", "start"),
            node(
                "coin",
                "condition",
                {"branches": [{"handle": "heads", "when": "{{ [true, false] | random }}"}]},
            ),
            node("pause", "wait", {"seconds": 0.1}),
        ],
        "edges": [edge("start", "coin"), edge("coin", "pause", "heads")],
    }
    replayer = Replayer(
        workflows=[FlowRun],
        data_converter=DATA_CONVERTER,
        workflow_runner=flow_sandbox_runner(),
    )
    for _ in range(3):
        _, run_id = await flow_worker.run(flow)
        history = await flow_worker.client.get_workflow_handle(run_id).fetch_history()
        for _ in range(4):
            await replayer.replay_workflow(history)
