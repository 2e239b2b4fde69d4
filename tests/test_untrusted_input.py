"""No input wedges a run or lets the wrong person decide: the reported cases, one test each.

Each test ends with the run invariant (the `flow_worker` fixture asserts it for every
run of the test, including a `status` query answering within five seconds). The tenant
matrix is in `test_tenant_boundary.py`; generated payloads in `test_decision_fuzz.py`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from flow_language.drawing import edge, node
from flow_language.validation import problems_of
from tests.flows import FlowWorker
from tests.hitl_support import (
    People,
    approval_flow,
    decide,
    inbox,
    open_task,
    quick_status,
    wait_for,
)
from tests.http_peer import HttpPeer, Reply
from tests.invariant import assert_run_tells_the_truth
from workers.client import (
    SUBMIT_HITL_DECISION_UPDATE,
    DecisionRefused,
)

# -- 2. a task always has someone who may decide it, and only them -----------------------


def test_an_escalation_step_without_a_target_is_refused_by_validation() -> None:
    problems = problems_of(
        approval_flow({"assigneeRole": "finance", "escalation": [{"afterSeconds": 2}]})
    )
    assert any("config.escalation[0]" in p and "review" in p for p in problems), problems


async def test_after_escalating_only_the_target_decides_and_the_escalation_resolves(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(
        approval_flow(
            {
                "assigneeRole": "finance",
                "escalation": [{"afterSeconds": 1, "toRole": "finance-lead"}],
            }
        ),
        tenant_id=people.tenant,
    )
    (task,) = await open_task(handle)
    escalated = await wait_for(
        lambda: _row_status_is(flow_worker, task["id"], "escalated"), seconds=15
    )
    assert escalated
    await wait_for(
        lambda: _query_assignee_is(handle, "finance-lead"),
    )
    for who in (people.finance, people.outsider):  # the first assignee, and a member
        with pytest.raises(DecisionRefused) as refused:
            await decide(handle, task["id"], {"approved": True}, who)
        assert "is not the assignee" in refused.value.reason
    await decide(handle, task["id"], {"approved": True}, people.lead)
    result = await handle.result()
    assert result.outputs["review"]["decided_by"] == people.lead
    row = await inbox(flow_worker, task["id"])
    assert row["status"] == "completed"
    assert [e["status"] for e in row["escalations"]] == ["resolved"]


async def _row_status_is(flow_worker: FlowWorker, task_id: str, status: str) -> bool:
    return (await inbox(flow_worker, task_id))["status"] == status


async def _query_assignee_is(handle: WorkflowHandle[Any, Any], role: str) -> bool:
    tasks = (await quick_status(handle))["open_hitl_tasks"]
    return bool(tasks) and tasks[0]["assignee_role"] == role


# -- 3. an invalid formSchema never wedges a run -----------------------------------------

_BAD_SCHEMA = {"type": "object", "properties": {"n": {"type": "integr"}}}


async def test_an_invalid_form_schema_is_refused_before_any_node_runs(
    flow_worker: FlowWorker, people: People
) -> None:
    definition = approval_flow({"decisionType": "form_input", "formSchema": _BAD_SCHEMA})
    assert any("config.formSchema.properties.n.type" in p for p in problems_of(definition))
    run_id = await flow_worker.fail(definition, tenant_id=people.tenant)
    assert "not a valid JSON Schema" in (await flow_worker.run_row(run_id))["error"]
    assert await flow_worker.task_rows(run_id) == {}


# -- 4. a NUL character is stored, escaped, and blocks nothing ------------------------------


async def test_a_nul_in_comments_inputs_and_agent_output_is_stored_escaped(
    flow_worker: FlowWorker, people: People, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/nul", Reply(body={"text": "a\u0000b"}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("call", "api", {"method": "GET", "url": "{{ input.base }}/nul"}),
            node(
                "review",
                "hitl",
                {
                    "title": "Look at {{ input.note }}",
                    "decisionType": "approval",
                    "assigneeRole": "finance",
                    "requiredApprovals": 2,
                },
            ),
            node("done", "end", {"outputs": {"text": "{{ nodes.call.output.json.text }}"}}),
        ],
        "edges": [edge("start", "call"), edge("call", "review"), edge("review", "done")],
    }
    handle = await flow_worker.start(
        definition, {"base": http_peer.base, "note": "x\u0000y"}, tenant_id=people.tenant
    )
    (task,) = await open_task(handle)
    first = await decide(handle, task["id"], {"approved": True}, people.finance, "fine\u0000")
    assert first["comments"] == "fine\\u0000"  # the row's escaped form
    await decide(handle, task["id"], {"approved": True}, people.finance2, "clean")
    result = await handle.result()
    assert result.outputs == {"text": "a\u0000b"}  # Temporal keeps the original
    run = await flow_worker.run_row(handle.id)
    assert run["inputs"]["note"] == "x\\u0000y"
    assert run["outputs"] == {"text": "a\\u0000b"}
    rows = await flow_worker.task_rows(handle.id)
    assert rows["call"]["status"] == "completed"
    assert rows["call"]["retry_count"] == 0
    assert rows["call"]["outputs"]["json"] == {"text": "a\\u0000b"}
    row = await inbox(flow_worker, task["id"])
    assert row["title"] == "Look at x\\u0000y"
    assert [d["comments"] for d in row["decisions"]] == ["fine\\u0000", "clean"]


# -- 5. every malformed signal is recorded with its reason -----------------------------------


# -- 6. a late format error leaves no open task -------------------------------------------


async def test_a_reviewer_id_that_is_no_uuid_is_refused_written_out_and_fails_templated(
    flow_worker: FlowWorker, people: People
) -> None:
    literal = approval_flow(
        {"assigneeRole": "finance", "escalation": [{"afterSeconds": 2, "toUser": "lead-bob"}]}
    )
    assert any("config.escalation[0].toUser" in p for p in problems_of(literal))
    templated = approval_flow(
        {
            "assigneeRole": "finance",
            "escalation": [{"afterSeconds": 2, "toUser": "{{ input.lead }}"}],
        }
    )
    run_id = await flow_worker.fail(templated, {"lead": "lead-bob"}, tenant_id=people.tenant)
    row = (await flow_worker.task_rows(run_id))["review"]
    assert row["status"] == "failed"
    assert "config.escalation[0].toUser: 'lead-bob' is not a user id" in row["error"]
    run = await flow_worker.run_row(run_id)
    assert run["status"] == "failed"


# -- 7. after the run closes, query and rows agree; escalations end with their task ---------


async def test_an_expired_or_cancelled_task_rejects_its_escalations(
    flow_worker: FlowWorker, people: People
) -> None:
    escalating = {
        "assigneeRole": "finance",
        "escalation": [{"afterSeconds": 1, "toUser": people.lead}],
    }
    expiring = await flow_worker.start(
        approval_flow({**escalating, "deadlineSeconds": 3}, expired_edge=True),
        tenant_id=people.tenant,
    )
    cancelled = await flow_worker.start(approval_flow(escalating), tenant_id=people.tenant)
    (expiring_task,) = await open_task(expiring)
    (cancelled_task,) = await open_task(cancelled)
    assert await wait_for(lambda: _row_status_is(flow_worker, cancelled_task["id"], "escalated"))
    await flow_worker.cancel_and_wait(cancelled)
    assert (await expiring.result()).outputs == {"late": True}
    for handle, task, status in (
        (expiring, expiring_task, "expired"),
        (cancelled, cancelled_task, "cancelled"),
    ):
        row = await inbox(flow_worker, task["id"])
        assert row["status"] == status
        assert [e["status"] for e in row["escalations"]] == ["rejected"]
        assert (await quick_status(handle))["open_hitl_tasks"] == []
        await assert_run_tells_the_truth(flow_worker.client, flow_worker.sessions, handle.id)


async def test_an_update_over_temporals_payload_limit_is_refused_and_the_run_goes_on(
    flow_worker: FlowWorker, people: People
) -> None:
    """The server admits it, but no worker could answer it (an answer carries the request)."""
    handle = await flow_worker.start(
        approval_flow({"assigneeRole": "finance", "deadlineSeconds": 4}, expired_edge=True),
        tenant_id=people.tenant,
    )
    (task,) = await open_task(handle)
    huge = {
        "hitl_task_id": task["id"],
        "decision": {"text": "x" * 2_500_000},
        "decided_by": people.finance,
    }
    with pytest.raises(RPCError):
        await handle.execute_update(
            SUBMIT_HITL_DECISION_UPDATE, huge, rpc_timeout=timedelta(seconds=20)
        )
    assert (await quick_status(handle))["status"] == "waiting_hitl"
    assert (await handle.result()).outputs == {"late": True}


# -- a deadline that passes while a decision is being recorded ------------------------------


async def test_the_deadline_wins_over_a_decision_still_being_recorded(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(
        approval_flow({"assigneeRole": "finance", "deadlineSeconds": 3}, expired_edge=True),
        tenant_id=people.tenant,
    )
    (task,) = await open_task(handle)
    async with flow_worker.sessions() as blocker, blocker.begin():
        # Hold the task's row: the decision's write waits on it until after the deadline.
        locked = await blocker.execute(
            text("SELECT id FROM hitl_tasks WHERE id = :i FOR UPDATE"), {"i": task["id"]}
        )
        assert len(locked.all()) == 1
        deciding = asyncio.create_task(
            decide(handle, task["id"], {"approved": True}, people.finance)
        )
        await asyncio.sleep(4.5)  # past the deadline, the write still waiting
        assert not deciding.done()
        assert (await quick_status(handle))["status"] in ("waiting_hitl", "running")
    with pytest.raises(DecisionRefused) as lost:
        await deciding
    assert "passed before the decision was recorded" in lost.value.reason
    assert (await handle.result()).outputs == {"late": True}
    row = await inbox(flow_worker, task["id"])
    assert (row["status"], row["decisions"]) == ("expired", [])


# -- a run's argument cannot skip its checks or overwrite another run's record -------------
