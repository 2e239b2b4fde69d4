"""`runs retry` reusing the recorded outputs: a retry pays only for what did not complete.

Every flow here calls a real HTTP server that fails one path until the test lets it
succeed; the retry must not call again what completed (the server counts the calls),
must route and iterate as the retried run did, and its rows must say what they reused.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from sqlalchemy import text
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import People, open_task
from tests.http_peer import HttpPeer, Reply, Request
from tests.invariant import _row_problems, _rows
from tests.test_cli import _env, ameta_agent
from workers import client
from workers.json_converter import DATA_CONVERTER
from workers.sandbox_runner import flow_sandbox_runner
from workflows.flow_run import FlowRun
from workflows.patches import REUSE_RETRIED_OUTPUTS

ONCE = {"maxAttempts": 1}


class Flaky:
    """Routes that answer `{"n": <their number>}`, except `broken` ones, which answer 404
    (not retried) until `mend()`.
    """

    def __init__(self, peer: HttpPeer, paths: dict[str, int], broken: set[str]) -> None:
        self.peer, self.broken = peer, set(broken)
        for path, n in paths.items():
            peer.route("GET", path, self._answer(path, n))

    def _answer(self, path: str, n: int) -> Any:
        def answer(_request: Request) -> Reply:
            return Reply(404, {"error": "not yet"}) if path in self.broken else Reply(200, {"n": n})

        return answer

    def mend(self) -> None:
        """Every route succeeds from now on."""
        self.broken.clear()

    def counts(self, *paths: str) -> list[int]:
        """How many calls each path received so far."""
        return [len(self.peer.calls("GET", p)) for p in paths]


async def _retried(flow_worker: FlowWorker, run_id: str, **options: Any) -> str:
    """Retry `run_id`, wait for the new run to complete; its id."""
    handle = await client.retry(flow_worker.client, run_id, **options)
    flow_worker.started.append(handle.id)
    await client.result(flow_worker.client, handle.id)
    return handle.id


def _patches(history: WorkflowHistory) -> set[str]:
    """The patch ids a run's history recorded markers of."""
    return {
        json.loads(payload.data)["id"]
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        for payload in e.marker_recorded_event_attributes.details["patch-data"].payloads
    }


def _replayer() -> Replayer:
    """A replayer configured as the worker runs FlowRun."""
    return Replayer(
        workflows=[FlowRun],
        data_converter=DATA_CONVERTER,
        workflow_runner=flow_sandbox_runner(),
    )


def _chain(base: str) -> dict[str, Any]:
    """Start, s1 ... s5, end: each step passes on the sum so far in its query."""
    nodes = [node("start", "start")]
    edges = []
    previous = "start"
    for i in range(1, 6):
        total = "0" if i == 1 else f"{{{{ nodes.s{i - 1}.output.json.n }}}}"
        nodes.append(node(f"s{i}", "api", {"url": f"{base}/s{i}?after={total}"}, retry=ONCE))
        edges.append(edge(previous, f"s{i}"))
        previous = f"s{i}"
    outputs = {f"s{i}": f"{{{{ nodes.s{i}.output.json.n }}}}" for i in range(1, 6)}
    nodes.append(node("done", "end", {"outputs": outputs}))
    edges.append(edge(previous, "done"))
    return {"nodes": nodes, "edges": edges}


async def test_a_retry_calls_only_the_failed_node_and_what_follows_it(
    flow_worker: FlowWorker,
    http_peer: HttpPeer,
    database_url: str,
    temporal_env: WorkflowEnvironment,
) -> None:
    paths = [f"/s{i}" for i in range(1, 6)]
    server = Flaky(http_peer, {p: 10 * i for i, p in enumerate(paths, 1)}, {"/s3"})
    failed = await flow_worker.fail(_chain(http_peer.base), {"k": 1})
    assert server.counts(*paths) == [1, 1, 1, 0, 0]

    server.mend()
    again = await _retried(flow_worker, failed)
    assert server.counts(*paths) == [1, 1, 2, 1, 1]  # no second call for s1 and s2
    result = await client.result(flow_worker.client, again)
    assert result.outputs == {"s1": 10, "s2": 20, "s3": 30, "s4": 40, "s5": 50}
    # s3 read the output s2 recorded in the first run
    assert [r.path for r in http_peer.calls("GET", "/s3")] == ["/s3?after=20"] * 2

    # Only the nodes that run again are activities; the retry replays deterministically.
    history = await flow_worker.client.get_workflow_handle(again).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    agents = [a.activity_id for a in scheduled if a.activity_type.name.startswith("agent.")]
    assert agents == ["s3", "s4", "s5"]
    assert "load_reused_outputs" in [a.activity_type.name for a in scheduled]
    await _replayer().replay_workflow(history)
    first = await flow_worker.client.get_workflow_handle(failed).fetch_history()
    assert REUSE_RETRIED_OUTPUTS not in _patches(first)  # other runs take no marker
    assert REUSE_RETRIED_OUTPUTS in _patches(history)

    old, new = await flow_worker.task_rows(failed), await flow_worker.task_rows(again)
    reused = {t for t, row in new.items() if row["reused_from"] is not None}
    assert reused == {"start", "s1", "s2"}
    for task_id in reused:
        assert new[task_id]["reused_from"] == old[task_id]["id"]
        assert (new[task_id]["status"], new[task_id]["outputs"]) == (
            "completed",
            old[task_id]["outputs"],
        )
        assert new[task_id]["prompt_tokens"] is None
    assert {t: new[t]["status"] for t in ("s3", "s4", "s5", "done")} == dict.fromkeys(
        ("s3", "s4", "s5", "done"), "completed"
    )
    old_row, new_row = await flow_worker.run_row(failed), await flow_worker.run_row(again)
    assert new_row["retry_of_run_id"] == old_row["id"]
    assert (old_row["status"], new_row["status"]) == ("failed", "completed")
    view = await client.get_status(flow_worker.client, again)
    assert view["nodes"]["s1"]["reused"] is True
    assert "reused" not in view["nodes"]["s3"]

    env = _env(database_url, temporal_env, flow_worker.task_queue)
    shown = await ameta_agent("runs", "show", again, env=env)
    assert f"retry of {failed}\n" in shown.stdout, shown.stderr
    marked = {line.split()[0] for line in shown.stdout.splitlines() if "(reused)" in line}
    assert marked == reused
    s1 = next(line.split() for line in shown.stdout.splitlines() if line.split()[:1] == ["s1"])
    assert s1[1:4] == ["completed", "(reused)", "api"]
    assert not s1[-1].isdigit()  # no ATTEMPTS: none was made in this run
    original = await ameta_agent("runs", "show", failed, env=env)
    assert f"retried  {again}\n" in original.stdout

    # --from-scratch: today's behaviour, every node runs again (still linked to the run).
    scratch = await _retried(flow_worker, failed, from_scratch=True)
    assert server.counts(*paths) == [2, 2, 3, 2, 2]
    assert all(
        row["reused_from"] is None for row in (await flow_worker.task_rows(scratch)).values()
    )
    assert (await flow_worker.run_row(scratch))["retry_of_run_id"] == old_row["id"]


async def test_a_reused_condition_routes_as_recorded_and_skips_the_same_branch(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    server = Flaky(http_peer, {"/score": 9, "/high": 1, "/low": 2, "/notify": 3}, {"/notify"})
    base = http_peer.base
    definition = {
        "nodes": [
            node("start", "start"),
            node("score", "api", {"url": f"{base}/score"}, retry=ONCE),
            node(
                "check",
                "condition",
                {
                    "branches": [{"handle": "high", "when": "{{ nodes.score.output.json.n > 5 }}"}],
                    "default": "low",
                },
            ),
            node("high", "api", {"url": f"{base}/high"}, retry=ONCE),
            node("low", "api", {"url": f"{base}/low"}, retry=ONCE),
            node("notify", "api", {"url": f"{base}/notify"}, retry=ONCE),
        ],
        "edges": [
            edge("start", "score"),
            edge("score", "check"),
            edge("check", "high", "high"),
            edge("check", "low", "low"),
            edge("high", "notify"),
            edge("low", "notify"),
        ],
    }
    failed = await flow_worker.fail(definition)
    # Were the condition evaluated again, it would now take the other branch.
    http_peer.route("GET", "/score", Reply(200, {"n": 0}))
    server.mend()
    again = await _retried(flow_worker, failed)
    assert server.counts("/score", "/high", "/low", "/notify") == [1, 1, 0, 2]
    rows = await flow_worker.task_rows(again)
    assert {t: (r["status"], r["reused_from"] is not None) for t, r in rows.items()} == {
        "start": ("completed", True),
        "score": ("completed", True),
        "check": ("completed", True),
        "high": ("completed", True),
        "low": ("skipped", False),
        "notify": ("completed", False),
    }
    assert rows["check"]["outputs"] == {"handle": "high"}

    # The run invariant catches a reused row that does not hold the output it names.
    lie = "UPDATE task_instances SET outputs = CAST(:o AS jsonb) WHERE id = :i"
    async with flow_worker.sessions() as s, s.begin():
        await s.execute(text(lie), {"o": '{"handle": "low"}', "i": rows["check"]["id"]})
    assert _row_problems("completed", *await _rows(flow_worker.sessions, again)) == [
        f"node row 'check' says it reused row {rows['check']['reused_from']},"
        " which does not hold that output"
    ]
    async with flow_worker.sessions() as s, s.begin():
        await s.execute(text(lie), {"o": '{"handle": "high"}', "i": rows["check"]["id"]})


async def test_a_retried_loop_runs_only_the_iterations_that_did_not_complete(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    items = {f"/item/{i}": i * 100 for i in range(1, 5)}
    server = Flaky(http_peer, {**items, "/after": 7}, {"/item/3"})
    base = http_peer.base
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": "{{ input.items }}", "maxConcurrency": 1}),
            {
                **node("fetch", "api", {"url": f"{base}/item/{{{{ item }}}}"}, retry=ONCE),
                "parentId": "each",
            },
            node("after", "api", {"url": f"{base}/after"}, retry=ONCE),
            node("done", "end", {"outputs": {"got": "{{ nodes.each.output }}"}}),
        ],
        "edges": [edge("start", "each"), edge("each", "after"), edge("after", "done")],
    }
    failed = await flow_worker.fail(definition, {"items": [1, 2, 3, 4]})
    assert server.counts(*items, "/after") == [1, 1, 1, 0, 0]
    server.mend()
    again = await _retried(flow_worker, failed)
    assert server.counts(*items, "/after") == [1, 1, 2, 1, 1]
    result = await client.result(flow_worker.client, again)
    assert [got["json"]["n"] for got in result.outputs["got"]] == [100, 200, 300, 400]
    rows = await flow_worker.task_rows(again)
    reused = sorted(t for t, row in rows.items() if row["reused_from"] is not None)
    assert reused == ["each[0].fetch", "each[1].fetch", "start"]
    assert rows["each"]["reused_from"] is None
    assert rows["each"]["status"] == "completed"


async def test_a_decided_review_is_not_asked_again_and_an_open_one_is(
    flow_worker: FlowWorker, http_peer: HttpPeer, people: People
) -> None:
    server = Flaky(http_peer, {"/pay": 1}, set())
    review = {"title": "Pay?", "decisionType": "approval", "assigneeId": people.finance}
    definition = {
        "nodes": [
            node("start", "start"),
            node("approve", "hitl", review),
            node("pay", "api", {"url": f"{http_peer.base}/pay"}, retry=ONCE),
            node("confirm", "hitl", {**review, "title": "Confirm?"}),
        ],
        "edges": [
            edge("start", "approve"),
            edge("approve", "pay", "approved"),
            edge("pay", "confirm"),
        ],
    }
    run = await flow_worker.start(definition, tenant_id=people.tenant)
    (task,) = await open_task(run)
    await client.decide(flow_worker.client, run.id, task["id"], {"approved": True}, people.finance)
    await open_task(run)  # `confirm` is open: cancel the run while it waits
    await flow_worker.cancel_and_wait(run)

    handle = await client.retry(flow_worker.client, run.id)
    flow_worker.started.append(handle.id)
    (asked,) = await open_task(handle)
    assert asked["node_id"] == "confirm"  # `approve` was decided: its decision is reused
    decided = {"approved": True}
    await client.decide(flow_worker.client, handle.id, asked["id"], decided, people.finance)
    await client.result(flow_worker.client, handle.id)
    assert server.counts("/pay") == [1]
    rows = await flow_worker.task_rows(handle.id)
    assert rows["approve"]["reused_from"] is not None
    assert rows["approve"]["outputs"]["handle"] == "approved"
    assert rows["confirm"]["reused_from"] is None
    async with flow_worker.sessions() as s:
        nodes = (
            await s.execute(
                text(
                    "SELECT t.title FROM hitl_tasks t JOIN workflow_runs r"
                    " ON r.id = t.workflow_run_id WHERE r.orchestrator_run_id = :o"
                ),
                {"o": handle.id},
            )
        ).scalars()
        assert list(nodes) == ["Confirm?"]


async def test_a_retried_sub_flow_reuses_what_its_child_completed(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    server = Flaky(http_peer, {"/c1": 1, "/c2": 2}, {"/c2"})
    child = {
        "nodes": [
            node("start", "start"),
            node("c1", "api", {"url": f"{http_peer.base}/c1"}, retry=ONCE),
            node("c2", "api", {"url": f"{http_peer.base}/c2"}, retry=ONCE),
            node("done", "end", {"outputs": {"n": "{{ nodes.c2.output.json.n }}"}}),
        ],
        "edges": [edge("start", "c1"), edge("c1", "c2"), edge("c2", "done")],
    }
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"child-{uuid.uuid4().hex[:6]}", definition=child
        )
    parent = {
        "nodes": [
            node("start", "start"),
            node("sub", "workflow", {"workflowId": str(stored.workflow_id)}),
            node("done", "end", {"outputs": {"n": "{{ nodes.sub.output.n }}"}}),
        ],
        "edges": [edge("start", "sub"), edge("sub", "done")],
    }
    failed = await flow_worker.fail(parent)
    server.mend()
    again = await _retried(flow_worker, failed)
    assert (await client.result(flow_worker.client, again)).outputs == {"n": 2}
    assert server.counts("/c1", "/c2") == [1, 2]
    new_child = await flow_worker.task_rows(f"{again}/sub")
    assert new_child["c1"]["reused_from"] is not None
    assert new_child["c2"]["reused_from"] is None
    old_child_row = await flow_worker.run_row(f"{failed}/sub")
    assert (await flow_worker.run_row(f"{again}/sub"))["retry_of_run_id"] == old_child_row["id"]


async def test_a_terminated_run_is_retried_from_its_rows(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    server = Flaky(http_peer, {"/s1": 1}, set())
    definition = {
        "nodes": [
            node("start", "start"),
            node("s1", "api", {"url": f"{http_peer.base}/s1"}, retry=ONCE),
            node("hold", "wait", {"event": "go"}),
            node("done", "end", {"outputs": {"n": "{{ nodes.s1.output.json.n }}"}}),
        ],
        "edges": [edge("start", "s1"), edge("s1", "hold"), edge("hold", "done")],
    }
    run = await flow_worker.start(definition)
    for _ in range(100):
        if (await client.get_status(flow_worker.client, run.id))["nodes"].get("hold"):
            break
        await asyncio.sleep(0.1)
    # Terminated: no workflow code runs at its end; the rows are all a retry has.
    await run.terminate("operator")
    handle = await client.retry(flow_worker.client, run.id)
    flow_worker.started.append(handle.id)
    await client.send_event(flow_worker.client, handle.id, "go")
    assert (await handle.result()).outputs == {"n": 1}
    assert server.counts("/s1") == [1]
    rows = await flow_worker.task_rows(handle.id)
    assert rows["s1"]["reused_from"] is not None
    assert rows["hold"]["reused_from"] is None


async def test_a_retry_continues_as_new_with_what_it_reused(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    items = {f"/item/{i}": i for i in range(1, 41)}
    server = Flaky(http_peer, items, {"/item/10"})
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": "{{ input.items }}", "maxConcurrency": 1}),
            {
                **node(
                    "fetch", "api", {"url": f"{http_peer.base}/item/{{{{ item }}}}"}, retry=ONCE
                ),
                "parentId": "each",
            },
            node("done", "end", {"outputs": {"got": "{{ nodes.each.output }}"}}),
        ],
        "edges": [edge("start", "each"), edge("each", "done")],
    }
    inputs = {"items": list(range(1, 41))}
    failed = await flow_worker.fail(definition, inputs, history_limit=100)
    server.mend()
    again = await _retried(flow_worker, failed)  # the retry keeps the request's history_limit
    assert (await client.get_status(flow_worker.client, again))["continued_as_new"] > 0
    result = await client.result(flow_worker.client, again)
    assert [got["json"]["n"] for got in result.outputs["got"]] == list(range(1, 41))
    assert server.counts(*items) == [1] * 9 + [2] + [1] * 30
    rows = await flow_worker.task_rows(again)
    reused = {t for t, row in rows.items() if row["reused_from"] is not None}
    assert reused == {"start"} | {f"each[{i}].fetch" for i in range(9)}
    assert len(rows) == 2 + 40 + 1  # one row per execution across the hops
