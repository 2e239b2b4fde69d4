"""A final decision writes the run's `running` status itself, and only when that is the truth.

The decision's transaction moves the run's row from `waiting_hitl` to `running`, so no
`record_run` follows it. It must not when something else keeps the run waiting (another
open review, a decision short of its quorum): the row says `waiting_hitl` as long as the
run does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from temporalio.client import WorkflowHandle

from tests.flows import FlowWorker
from tests.hitl_support import (
    People,
    decide,
    edge,
    legal_and_money,
    node,
    open_task,
    wait_for,
)
from tests.http_peer import HttpPeer, Reply
from workers.client import STATUS_QUERY
from workflows.contract import RECORD_RUN

#: How long the node after the review takes: the row is read while it runs.
SLOW_SECONDS = 3.0


def _review_then_slow(http_peer: HttpPeer) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node(
                "review",
                "hitl",
                {"title": "Ship?", "decisionType": "approval", "assigneeRole": "finance"},
            ),
            node("ship", "api", {"url": f"{http_peer.base}/slow"}),
        ],
        "edges": [edge("start", "review"), edge("review", "ship", "approved")],
    }


async def _is_running(flow_worker: FlowWorker, handle: WorkflowHandle[Any, Any]) -> bool:
    return await _row_status(flow_worker, handle) == "running"


async def _row_status(flow_worker: FlowWorker, handle: WorkflowHandle[Any, Any]) -> str:
    return str((await flow_worker.run_row(handle.id))["status"])


async def _stays(
    flow_worker: FlowWorker, handle: WorkflowHandle[Any, Any], status: str, seconds: float = 1.5
) -> None:
    """The run's row and its status query say `status` throughout `seconds`."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        assert await _row_status(flow_worker, handle) == status
        assert (await handle.query(STATUS_QUERY))["status"] == status
        await asyncio.sleep(0.1)


async def test_a_final_decision_sets_the_run_running_without_a_write_of_its_own(
    flow_worker: FlowWorker, people: People, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/slow", Reply(body={"ok": True}, delay=SLOW_SECONDS))
    run = await flow_worker.start(_review_then_slow(http_peer), tenant_id=people.tenant)
    (task,) = await open_task(run)
    assert await _row_status(flow_worker, run) == "waiting_hitl"
    await decide(run, task["id"], {"approved": True}, people.finance)
    # Right after the decision, while `ship` waits for its answer, the row says `running`.
    assert await _row_status(flow_worker, run) == "running"
    await _stays(flow_worker, run, "running", seconds=1.0)
    await run.result()
    assert await _row_status(flow_worker, run) == "completed"
    # Only the run's end was written by `record_run`: the decision carried `running`.
    assert (await flow_worker.scheduled_activities(run.id)).count(RECORD_RUN) == 1


async def test_a_decision_that_finds_the_row_moved_has_the_run_write_its_status(
    flow_worker: FlowWorker, people: People, http_peer: HttpPeer
) -> None:
    """The decision's compare-and-set finds the row no longer `waiting_hitl` (here another
    writer moved it): the run does not take it as written, and writes `running` itself.
    """
    http_peer.route("GET", "/slow", Reply(body={"ok": True}, delay=SLOW_SECONDS))
    run = await flow_worker.start(_review_then_slow(http_peer), tenant_id=people.tenant)
    (task,) = await open_task(run)
    async with flow_worker.sessions() as s, s.begin():
        await s.execute(
            text("UPDATE workflow_runs SET status = 'queued' WHERE orchestrator_run_id = :r"),
            {"r": run.id},
        )
    await decide(run, task["id"], {"approved": True}, people.finance)
    assert await wait_for(lambda: _is_running(flow_worker, run), seconds=2)
    await _stays(flow_worker, run, "running", seconds=0.5)
    await run.result()
    assert await _row_status(flow_worker, run) == "completed"
    assert (await flow_worker.scheduled_activities(run.id)).count(RECORD_RUN) == 2


async def test_a_decision_leaves_the_run_waiting_while_another_review_is_open(
    flow_worker: FlowWorker, people: People
) -> None:
    definition = legal_and_money(people, requiredApprovals=2)
    run = await flow_worker.start(definition, tenant_id=people.tenant)
    tasks = {t["title"]: t for t in await open_task(run, 2)}
    await decide(run, tasks["Legal"]["id"], {"text": "ok"}, people.lead)
    await _stays(flow_worker, run, "waiting_hitl")
    # One approval of two: the task is still open, and so the run still waits.
    await decide(run, tasks["Money"]["id"], {"approved": True}, people.finance)
    await _stays(flow_worker, run, "waiting_hitl")
    await decide(run, tasks["Money"]["id"], {"approved": True}, people.finance2)
    result = await run.result()
    assert result.outputs == {"legal": "ok"}
    assert await _row_status(flow_worker, run) == "completed"
