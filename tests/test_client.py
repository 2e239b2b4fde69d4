"""`workers.client`, the one way to talk to a run: decide, retry, and their refusals."""

from __future__ import annotations

import ast
import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hitl_support import People, inbox, open_task, review_flow
from tests.http_peer import HttpPeer, Reply, Request
from tests.test_cli import _env, ameta_agent
from workers import client
from workflows.contract import FlowRunInput

#: Parks until the event `go` arrives: a run that stays running as long as a test needs.
PARKED = {
    "nodes": [
        node("start", "start"),
        node("hold", "wait", {"event": "go"}),
        node("done", "end", {"outputs": {"got": "{{ nodes.hold.output.payload }}"}}),
    ],
    "edges": [edge("start", "hold"), edge("hold", "done")],
}


def _item_flow(base: str) -> dict[str, Any]:
    """Fetches `/items/<input.id>`; fails when that answers 400 (not retried)."""
    return {
        "nodes": [
            node("start", "start"),
            node("fetch", "api", {"url": f"{base}/items/{{{{ input.id }}}}"}),
            node("done", "end", {"outputs": {"item": "{{ nodes.fetch.output.json }}"}}),
        ],
        "edges": [edge("start", "fetch"), edge("fetch", "done")],
    }


async def test_decide_returns_the_decision_row_and_the_run_goes_on(
    flow_worker: FlowWorker, people: People
) -> None:
    run = await flow_worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
    (task,) = await open_task(run)
    row = await client.decide(
        flow_worker.client, run.id, task["id"], {"approved": True}, people.finance, "fine"
    )
    assert (row["decided_by"], row["decision"]) == (people.finance, {"approved": True})
    assert "on_approved" in (await client.result(flow_worker.client, run.id)).outputs
    (recorded,) = (await inbox(flow_worker, task["id"]))["decisions"]
    assert (str(recorded["decided_by"]), recorded["comments"]) == (people.finance, "fine")
    # The reviewer is checked by the activity that records the decision: one step, not two.
    scheduled = await flow_worker.scheduled_activities(run.id)
    assert scheduled.count("hitl_decide_resuming") == 1
    assert "hitl_check_reviewer" not in scheduled
    assert "hitl_record_decision" not in scheduled
    # Opening the review carries the start's row and the status: no write before it.
    assert scheduled[:2] == ["prepare_flow", "hitl_open"]


async def test_a_refused_decision_raises_with_the_runs_reason_and_changes_nothing(
    flow_worker: FlowWorker, people: People
) -> None:
    run = await flow_worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
    (task,) = await open_task(run)
    with pytest.raises(client.DecisionRefused) as refused:
        await client.decide(
            flow_worker.client, run.id, task["id"], {"approved": True}, people.outsider
        )
    assert "is not the assignee" in refused.value.reason
    assert str(refused.value) == refused.value.reason
    assert refused.value.kind == "ReviewerNotAllowed"
    with pytest.raises(client.DecisionRefused) as wrong_shape:
        await client.decide(flow_worker.client, run.id, task["id"], {"choice": "x"}, people.finance)
    assert "an approval decision is" in wrong_shape.value.reason
    # Refused by the update's validator: the same type as a refusal in its handler, and
    # final (a caller retrying would be refused again).
    assert wrong_shape.value.kind == "DecisionRejected"
    update_failure = wrong_shape.value.__cause__
    assert getattr(getattr(update_failure, "cause", None), "non_retryable", None) is True
    assert (await inbox(flow_worker, task["id"]))["decisions"] == []

    await client.cancel(flow_worker.client, run.id)
    with pytest.raises(WorkflowFailureError):
        await run.result()
    with pytest.raises(client.DecisionRefused) as ended:
        await client.decide(
            flow_worker.client, run.id, task["id"], {"approved": True}, people.finance
        )
    assert ended.value.kind == "RunEnded"


async def test_send_decision_decides_without_waiting_and_a_refused_one_is_listed(
    flow_worker: FlowWorker, people: People
) -> None:
    run = await flow_worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
    (task,) = await open_task(run)
    await client.send_decision(
        flow_worker.client, run.id, task["id"], {"approved": True}, people.outsider
    )
    for _ in range(100):
        rejected = (await client.get_status(flow_worker.client, run.id))["rejected_decisions"]
        if rejected:
            break
        await asyncio.sleep(0.1)
    assert "is not the assignee" in rejected[0]["reason"]
    await client.send_decision(
        flow_worker.client, run.id, task["id"], {"approved": True}, people.finance
    )
    assert "on_approved" in (await client.result(flow_worker.client, run.id)).outputs


async def test_retry_of_a_failed_run_starts_a_new_run_with_the_same_request(
    flow_worker: FlowWorker, http_peer: HttpPeer, people: People
) -> None:
    answers = itertools.chain(
        [Reply(400, {"error": "not yet"})], itertools.repeat(Reply(200, {"n": 7}))
    )

    def item(_request: Request) -> Reply:
        return next(answers)

    http_peer.route("GET", "/items/7", item)
    request = FlowRunInput(
        definition=_item_flow(http_peer.base),
        inputs={"id": 7},
        tenant_id=people.tenant,
        triggered_by=people.finance,
        tags=["nightly", "retry-me"],
    )
    failed_id = await flow_worker.fail(**request.model_dump(exclude_defaults=True))

    retried = await client.retry(flow_worker.client, failed_id)
    flow_worker.started.append(retried.id)
    assert retried.id != failed_id
    assert (await client.result(flow_worker.client, retried.id)).outputs == {"item": {"n": 7}}

    old, new = await flow_worker.run_row(failed_id), await flow_worker.run_row(retried.id)
    assert (old["status"], new["status"]) == ("failed", "completed")
    for column in ("inputs", "tenant_id", "triggered_by", "tags", "workflow_id"):
        assert new[column] == old[column], column
    assert new["inputs"] == {"id": 7}
    started_with = await client.original_request(flow_worker.client, retried.id)
    assert (started_with.request, started_with.task_queue) == (request, flow_worker.task_queue)


async def test_retry_refuses_a_running_or_completed_run_and_takes_a_cancelled_one(
    flow_worker: FlowWorker,
) -> None:
    run = await flow_worker.start(PARKED, {"k": 1}, tags=["parked"])
    with pytest.raises(client.RetryRefused, match="is still running"):
        await client.retry(flow_worker.client, run.id)

    await client.cancel(flow_worker.client, run.id)
    with pytest.raises(WorkflowFailureError):
        await run.result()
    again = await client.retry(flow_worker.client, run.id, new_run_id=f"{run.id}-again")
    flow_worker.started.append(again.id)
    assert again.id == f"{run.id}-again"
    await client.send_event(flow_worker.client, again.id, "go", 5)
    assert (await again.result()).outputs == {"got": 5}
    assert (await flow_worker.run_row(again.id))["inputs"] == {"k": 1}
    assert (await flow_worker.run_row(again.id))["tags"] == ["parked"]

    with pytest.raises(client.RetryRefused, match="completed: only a failed or cancelled run"):
        await client.retry(flow_worker.client, again.id)
    with pytest.raises(client.RunIdRefused, match="already used"):
        await client.retry(flow_worker.client, run.id, new_run_id=again.id)


async def test_runs_retry_on_the_command_line(
    database_url: str, temporal_env: WorkflowEnvironment, flow_worker: FlowWorker
) -> None:
    run = await flow_worker.start(PARKED)
    env = _env(database_url, temporal_env, flow_worker.task_queue)
    running = await ameta_agent("runs", "retry", run.id, env=env)
    assert running.returncode == 1
    assert running.stderr == (
        f"meta-agent: run {run.id!r} is still running: cancel it or wait for its end\n"
    )
    await client.cancel(flow_worker.client, run.id)
    with pytest.raises(WorkflowFailureError):
        await run.result()
    new_id = f"{run.id}-cli"
    out = await ameta_agent("runs", "retry", run.id, "--id", new_id, env=env)
    assert (out.returncode, out.stdout) == (0, f"{new_id}\n"), out.stderr
    flow_worker.started.append(new_id)
    await client.cancel(flow_worker.client, new_id)
    with pytest.raises(WorkflowFailureError):
        await client.result(flow_worker.client, new_id)


def test_no_module_outside_workflows_spells_a_run_name_out() -> None:
    """Callers use the names of `workers.client` (from `workflows.contract`), so a rename
    there is a rename everywhere.
    """
    root = Path(__file__).resolve().parents[1]
    names = {client.FLOW_RUN, client.HITL_DECISION_SIGNAL, client.SUBMIT_HITL_DECISION_UPDATE}
    spelled = [
        f"{path.relative_to(root)}:{leaf.lineno}"
        for folder in ("workers", "tests", "benchmarks", "activities", "persistence")
        for path in sorted((root / folder).rglob("*.py"))
        for leaf in ast.walk(ast.parse(path.read_text()))
        if isinstance(leaf, ast.Constant) and leaf.value in names
    ]
    assert spelled == []
