"""Only the right person decides, however they spell themselves and whenever they answer;
and no value a flow author or caller writes freezes the worker or a run at its start.

Found by attacking the engine from outside; each test is one reported way in.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowFailureError
from temporalio.common import RawValue

from flow_language.drawing import edge, node
from flow_language.validation import problems_of
from tests.flows import FlowWorker
from tests.hitl_support import People, decide, inbox, open_task
from workers.client import FLOW_RUN, DecisionRefused


def _review(config: dict[str, Any]) -> dict[str, Any]:
    cfg = {"title": "Look", "decisionType": "approval", **config}
    return {
        "nodes": [
            node("start", "start"),
            node("review", "hitl", cfg),
            node("done", "end", {"outputs": {"review": "{{ nodes.review.output }}"}}),
        ],
        "edges": [edge("start", "review"), edge("review", "done")],
    }


def _raw(value: Any) -> RawValue:
    """JSON text as any client writes it (the Python converter would refuse some of it)."""
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode()))


async def test_a_user_id_spelt_differently_is_still_the_same_person(
    flow_worker: FlowWorker, people: People
) -> None:
    quorum = await flow_worker.start(
        _review({"assigneeRole": "finance", "requiredApprovals": 2}), tenant_id=people.tenant
    )
    (task,) = await open_task(quorum)
    await decide(quorum, task["id"], {"approved": True}, people.finance)
    for spelling in (
        people.finance.upper(),
        f"{{{people.finance}}}",
        people.finance.replace("-", ""),
    ):
        with pytest.raises(DecisionRefused) as again:
            await decide(quorum, task["id"], {"approved": True}, spelling)
        assert "has already approved this task" in again.value.reason
    await quorum.cancel()

    own = await flow_worker.start(
        _review({"assigneeRole": "finance", "allowSelfApproval": False}),
        tenant_id=people.tenant,
        triggered_by=people.finance,
    )
    (task,) = await open_task(own)
    with pytest.raises(DecisionRefused) as self_approval:
        await decide(own, task["id"], {"approved": True}, people.finance.upper())
    assert "may not decide its tasks" in self_approval.value.reason
    await own.cancel()


async def test_a_decision_stored_after_an_escalation_must_come_from_its_target(
    flow_worker: FlowWorker, people: People
) -> None:
    """The reviewer was allowed when the decision arrived; the escalation landed first."""
    handle = await flow_worker.start(
        _review(
            {"assigneeRole": "finance", "escalation": [{"afterSeconds": 2, "toUser": people.lead}]}
        ),
        tenant_id=people.tenant,
    )
    (task,) = await open_task(handle)
    async with flow_worker.sessions() as blocker, blocker.begin():
        # Hold back the decision's write (it reads hitl_decisions first), not the escalation.
        await blocker.execute(text("LOCK TABLE hitl_decisions IN ACCESS EXCLUSIVE MODE"))
        deciding = asyncio.create_task(
            decide(handle, task["id"], {"approved": True}, people.finance)
        )
        deadline = time.monotonic() + 15
        while await _task_status(flow_worker, task["id"]) != "escalated":
            assert time.monotonic() < deadline, "the task never escalated"
            await asyncio.sleep(0.2)
        assert not deciding.done()
    with pytest.raises(DecisionRefused) as late:
        await deciding
    assert "reassigned before the decision was recorded" in late.value.reason
    await decide(handle, task["id"], {"approved": True}, people.lead)
    assert (await handle.result()).outputs["review"]["decided_by"] == people.lead
    row = await inbox(flow_worker, task["id"])
    assert [d["decided_by"] for d in row["decisions"]] == [uuid.UUID(people.lead)]


async def _task_status(flow_worker: FlowWorker, task_id: str) -> str:
    async with flow_worker.sessions() as s:
        status = await s.scalar(text("SELECT status FROM hitl_tasks WHERE id = :i"), {"i": task_id})
    return str(status)


async def test_a_backtracking_pattern_is_matched_in_linear_time_and_the_worker_goes_on(
    flow_worker: FlowWorker, people: People
) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}
    handle = await flow_worker.start(
        {
            "nodes": [
                node("start", "start"),
                node(
                    "form",
                    "hitl",
                    {"title": "Fill", "decisionType": "form_input", "formSchema": schema},
                ),
            ],
            "edges": [edge("start", "form")],
        },
        tenant_id=people.tenant,
    )
    (task,) = await open_task(handle)
    began = time.monotonic()
    with pytest.raises(DecisionRefused) as refused:
        await decide(handle, task["id"], {"form": {"x": "a" * 5000 + "!"}}, people.outsider)
    assert "does not match" in refused.value.reason
    assert time.monotonic() - began < 5  # Python's `re` would take longer than the universe
    await decide(handle, task["id"], {"form": {"x": "aaa"}}, people.outsider)
    await handle.result()


def test_patterns_that_need_backtracking_and_references_to_nowhere_are_refused_up_front() -> None:
    for schema, message in (
        ({"properties": {"x": {"type": "string", "pattern": "(a)\\1"}}}, "is not supported"),
        ({"properties": {"x": {"$ref": "#/$defs/missing"}}}, "cannot be resolved"),
        ({"properties": {"x": {"$ref": "https://example.com/s.json"}}}, "cannot be resolved"),
        ({"properties": {"x": {"$dynamicRef": "#nowhere"}}}, "$dynamicRef is not supported"),
        (
            {"patternProperties": {"^(a+)+$": {}}, "unevaluatedProperties": False},
            "unevaluatedProperties with patternProperties",
        ),
        (  # anyOf branches doubling at each level of a recursive schema
            {
                "$defs": {
                    "n": {
                        "anyOf": [
                            {"properties": {"a": {"$ref": "#/$defs/n"}}, "required": ["x"]},
                            {"properties": {"a": {"$ref": "#/$defs/n"}}, "required": ["y"]},
                        ]
                    }
                },
                "$ref": "#/$defs/n",
            },
            "leads back to itself",
        ),
    ):
        problems = problems_of(_review({"decisionType": "form_input", "formSchema": schema}))
        assert any("config.formSchema" in p and message in p for p in problems), problems


async def test_a_template_computing_a_huge_number_fails_its_node_at_once(
    flow_worker: FlowWorker,
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("big", "transform", {"output": "{{ 9 ** (9 ** 8) }}"}),
        ],
        "edges": [edge("start", "big")],
    }
    row = (await flow_worker.task_rows(await flow_worker.fail(definition)))["big"]
    assert "digits, over 10000" in row["error"]


async def test_reviewers_written_in_or_rendered_must_be_active_members_of_the_tenant(
    flow_worker: FlowWorker, people: People
) -> None:
    async with flow_worker.sessions() as s, s.begin():
        await s.execute(
            text("UPDATE users SET is_active = false WHERE id = :u"), {"u": people.finance2}
        )
    run_id = await flow_worker.fail(
        _review({"assigneeId": people.finance2}), tenant_id=people.tenant
    )
    assert "does not exist in tenant" in (await flow_worker.run_row(run_id))["error"]
    # a role of another tenant, rendered: refused before the task opens
    async with flow_worker.sessions() as s, s.begin():
        other = await s.scalar(
            text("SELECT tenant_id FROM users WHERE id = :u"), {"u": people.stranger_tenant_user}
        )
        await s.execute(
            text("INSERT INTO roles (id, name, tenant_id) VALUES (:i, 'theirs-only', :t)"),
            {"i": uuid.uuid4(), "t": other},
        )
    for config, field in (
        ({"assigneeRole": "{{ input.role }}"}, "config.assigneeRole"),
        (
            {
                "assigneeRole": "finance",
                "escalation": [{"afterSeconds": 60, "toRole": "{{ input.role }}"}],
            },
            "config.escalation[0].toRole",
        ),
    ):
        run_id = await flow_worker.fail(
            _review(config), {"role": "theirs-only"}, tenant_id=people.tenant
        )
        row = (await flow_worker.task_rows(run_id))["review"]
        assert (
            f"role 'theirs-only' (hitl `review`, {field}) does not exist in tenant" in row["error"]
        )
        run = await flow_worker.run_row(run_id)
        async with flow_worker.sessions() as s:
            opened = await s.scalar(
                text("SELECT count(*) FROM hitl_tasks WHERE workflow_run_id = :r"), {"r": run["id"]}
            )
        assert opened == 0


@pytest.mark.parametrize(
    "argument",
    [
        Payload(
            metadata={"encoding": b"json/plain"},
            data=b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        ),
        Payload(metadata={"encoding": b"json/plain"}, data=b'{"v": '),
    ],
    ids=["nested-3000-deep", "not-json"],
)
async def test_an_argument_python_cannot_read_is_refused_with_a_row(
    flow_worker: FlowWorker, argument: Payload
) -> None:
    workflow_id = f"unreadable-{uuid.uuid4().hex[:8]}"
    handle = await flow_worker.client.start_workflow(
        FLOW_RUN, RawValue(argument), id=workflow_id, task_queue=flow_worker.task_queue
    )
    flow_worker.started.append(workflow_id)
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 30)
    assert "invalid FlowRun argument" in str(failed.value.cause)
    assert (await flow_worker.run_row(workflow_id))["status"] == "failed"


async def test_lone_surrogates_in_inputs_are_kept_escaped_and_a_node_id_cannot_hold_one(
    flow_worker: FlowWorker, people: People
) -> None:
    definition = _review({"title": "Look at {{ input.s }}", "assigneeRole": "finance"})
    handle = await flow_worker.client.start_workflow(
        FLOW_RUN,
        _raw(
            {
                "definition": definition,
                "inputs": {"s": "s\ud800x", "\udc00k": 1},
                "tenant_id": people.tenant,
            }
        ),
        id=f"surrogate-{uuid.uuid4().hex[:8]}",
        task_queue=flow_worker.task_queue,
    )
    flow_worker.started.append(handle.id)
    (task,) = await open_task(handle)
    assert (await inbox(flow_worker, task["id"]))["title"] == "Look at s\\ud800x"
    await decide(handle, task["id"], {"approved": True}, people.finance)
    await handle.result()
    assert (await flow_worker.run_row(handle.id))["inputs"] == {"s": "s\\ud800x", "\\udc00k": 1}
    bad_ids = {
        "nodes": [node("start", "start"), node("t\u0000", "transform", {"output": 1})],
        "edges": [],
    }
    assert any("control character or a lone surrogate" in p for p in problems_of(bad_ids))


async def test_a_run_of_no_tenant_may_name_only_roles_of_no_tenant(
    flow_worker: FlowWorker, people: People
) -> None:
    """Its reviewers can hold only those; a tenant's role would make a task nobody decides."""
    run_id = await flow_worker.fail(_review({"assigneeRole": "finance"}))
    assert (
        "role 'finance' (hitl `review`, config.assigneeRole) does not exist among the roles"
        in (await flow_worker.run_row(run_id))["error"]
    )


def test_how_deep_a_payload_may_nest_does_not_depend_on_the_stack() -> None:
    """A payload just over the bound is refused, one at it is read, however deep the stack:
    a replay (e.g. for a query) reads the same history from a deeper stack than the run did.
    """
    from workers.json_converter import DATA_CONVERTER, MAX_JSON_DEPTH, UnreadableJSON

    def payload(depth: int) -> Payload:
        data = b"[" * depth + b"1" + b"]" * depth
        return Payload(metadata={"encoding": b"json/plain"}, data=data)

    def read(depth: int, stack: int) -> Any:
        if stack:
            return read(depth, stack - 1)
        return DATA_CONVERTER.payload_converter.from_payloads([payload(depth)], None)[0]

    for stack in (0, 300, 500):
        assert not isinstance(read(MAX_JSON_DEPTH, stack), UnreadableJSON)
        assert isinstance(read(MAX_JSON_DEPTH + 1, stack), UnreadableJSON)
