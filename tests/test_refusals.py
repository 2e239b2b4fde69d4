"""Runs refused before any node runs: unknown ids, malformed configs, inputs against the schema.

Each refusal fails the workflow with one plain message, leaves a `failed` run row
carrying that message (the refused ids left out, so no foreign key trips), and
no `task_instances` row: nothing ran.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import People, review_flow
from tests.support import make_tenant
from workers.client import FLOW_RUN, InvalidInputs, check_inputs, start_run
from workflows.contract import FlowResult, FlowRunInput

TRIVIAL = {
    "nodes": [node("start", "start"), node("done", "transform", {"output": 1})],
    "edges": [edge("start", "done")],
}


async def refused(
    flow_worker: FlowWorker,
    definition: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    **fields: Any,
) -> tuple[ApplicationError, dict[str, Any]]:
    """The failure of a run that must be refused before any node runs, and its run row."""
    handle = await flow_worker.client.start_workflow(
        FLOW_RUN,
        FlowRunInput(definition=definition, inputs=inputs or {}, **fields),
        id=f"refused-{uuid.uuid4().hex[:12]}",
        task_queue=flow_worker.task_queue,
        result_type=FlowResult,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), cause
    row = await flow_worker.run_row(handle.id)
    assert row["status"] == "failed"
    assert row["error"] == cause.message
    assert row["completed_at"] is not None
    assert await flow_worker.task_rows(handle.id) == {}, "a node ran"
    return cause, row


async def test_an_unknown_tenant_is_refused_with_a_row_that_leaves_it_out(
    flow_worker: FlowWorker,
) -> None:
    tenant = str(uuid.uuid4())
    cause, row = await refused(flow_worker, TRIVIAL, tenant_id=tenant)
    assert cause.message == f"tenant {tenant} does not exist"
    assert cause.type == "UnknownReference"
    assert row["tenant_id"] is None


async def test_a_tenant_id_that_is_not_a_uuid_is_refused_the_same_way(
    flow_worker: FlowWorker,
) -> None:
    cause, row = await refused(flow_worker, TRIVIAL, tenant_id="acme")
    assert cause.message == "tenant 'acme' does not exist (a tenant id is a UUID)"
    assert cause.type == "UnknownReference"
    assert row["tenant_id"] is None


async def test_an_unknown_user_starting_the_run_is_refused(
    flow_worker: FlowWorker, people: People
) -> None:
    ghost = str(uuid.uuid4())
    cause, row = await refused(flow_worker, TRIVIAL, tenant_id=people.tenant, triggered_by=ghost)
    assert cause.message == f"user {ghost} (triggered_by) does not exist in tenant {people.tenant}"
    assert (str(row["tenant_id"]), row["triggered_by"]) == (people.tenant, None)

    # So is an id that is not a UUID at all.
    cause, _ = await refused(flow_worker, TRIVIAL, tenant_id=people.tenant, triggered_by="alice")
    assert cause.message == (
        f"user 'alice' (triggered_by) does not exist in tenant {people.tenant} "
        "(a user id is a UUID)"
    )

    # A user of another tenant is refused in the very same words as an unknown one.
    stranger = people.stranger_tenant_user
    cause, _ = await refused(flow_worker, TRIVIAL, tenant_id=people.tenant, triggered_by=stranger)
    assert cause.message == (
        f"user {stranger} (triggered_by) does not exist in tenant {people.tenant}"
    )


async def test_a_workspace_of_another_tenant_is_refused(
    flow_worker: FlowWorker, people: People
) -> None:
    async with flow_worker.sessions() as s, s.begin():
        elsewhere = await make_tenant(s)
        workspace = uuid.uuid4()
        await s.execute(
            text("INSERT INTO workspaces (id, name, tenant_id) VALUES (:i, 'theirs', :t)"),
            {"i": workspace, "t": elsewhere},
        )
    cause, row = await refused(
        flow_worker, TRIVIAL, tenant_id=people.tenant, workspace_id=str(workspace)
    )
    assert cause.message == f"workspace {workspace} does not exist in tenant {people.tenant}"
    assert row["workspace_id"] is None


async def test_a_stored_flow_of_another_tenant_reads_as_unknown(
    flow_worker: FlowWorker, people: People
) -> None:
    async with flow_worker.sessions() as s, s.begin():
        theirs = await queries.save_workflow_version(
            s,
            name=f"theirs-{uuid.uuid4().hex[:6]}",
            definition=TRIVIAL,
            tenant_id=await make_tenant(s),
        )
    other, _ = await refused(
        flow_worker, workflow_id=str(theirs.workflow_id), tenant_id=people.tenant
    )
    missing = uuid.uuid4()
    unknown, row = await refused(flow_worker, workflow_id=str(missing), tenant_id=people.tenant)
    assert other.message == f"no workflow with id {theirs.workflow_id}"
    assert unknown.message == f"no workflow with id {missing}"
    assert other.type == unknown.type == "UnknownReference"
    assert row["workflow_id"] is None
    # By name, another tenant's flow is not found either.
    by_name, _ = await refused(flow_worker, workflow_id=theirs.name, tenant_id=people.tenant)
    assert by_name.message.startswith(f"no stored flow named {theirs.name!r}")


async def test_a_malformed_assignee_is_refused_by_validation_naming_node_and_field(
    flow_worker: FlowWorker, people: People
) -> None:
    cause, _ = await refused(
        flow_worker, review_flow(assigneeId="bob"), {"what": "x"}, tenant_id=people.tenant
    )
    assert cause.type == "InvalidFlow"
    assert cause.message.startswith(
        "invalid flow (1 problem):\n- node 'review': config.assigneeId:"
    )
    assert "'bob' is not a user id (UUID)" in cause.message


async def test_unknown_reviewers_named_outright_are_refused(
    flow_worker: FlowWorker, people: People
) -> None:
    ghost = str(uuid.uuid4())
    definition = review_flow(
        assigneeId=ghost,
        escalation=[
            {"afterSeconds": 60, "toUser": people.stranger_tenant_user},
            {"afterSeconds": 120, "toUser": people.lead},
            {"afterSeconds": 180, "toUser": "{{ input.backup }}"},
        ],
    )
    cause, _ = await refused(flow_worker, definition, {"what": "x"}, tenant_id=people.tenant)
    assert cause.type == "UnknownReference"
    assert cause.message.splitlines() == [
        f"user {ghost} (hitl `review`, config.assigneeId) does not exist in tenant {people.tenant}",
        f"user {people.stranger_tenant_user} (hitl `review`, config.escalation[0].toUser) "
        f"does not exist in tenant {people.tenant}",
    ]


async def test_inputs_that_break_the_schema_are_invalid_inputs_not_an_invalid_flow(
    flow_worker: FlowWorker,
) -> None:
    definition = {
        "nodes": [
            node(
                "start",
                "start",
                inputSchema={
                    "type": "object",
                    "required": ["order_id"],
                    "properties": {"order_id": {"type": "integer"}},
                },
            ),
            node("done", "transform", {"output": "{{ input.order_id }}"}),
        ],
        "edges": [edge("start", "done")],
    }
    cause, row = await refused(flow_worker, definition, {"order_id": "7"})
    assert cause.type == "InvalidInputs"
    assert cause.message == (
        "invalid inputs (1 problem):\n- inputs.order_id: '7' is not of type 'integer'"
    )
    assert row["inputs"] == {"order_id": "7"}


async def test_an_unknown_parent_run_is_refused(flow_worker: FlowWorker) -> None:
    parent = str(uuid.uuid4())
    cause, row = await refused(flow_worker, TRIVIAL, parent_run_id=parent)
    assert cause.message == f"parent run {parent} does not exist"
    assert row["parent_run_id"] is None


async def test_start_run_refuses_invalid_inputs_of_an_inline_flow_and_starts_nothing(
    flow_worker: FlowWorker,
) -> None:
    definition = {
        "nodes": [
            node("start", "start", inputSchema={"type": "object", "required": ["order_id"]}),
        ],
        "edges": [],
    }
    run_id = f"client-{uuid.uuid4().hex[:12]}"
    params = FlowRunInput(definition=definition, inputs={"order": 7})
    with pytest.raises(InvalidInputs) as err:
        await start_run(flow_worker.client, flow_worker.task_queue, params, run_id=run_id)
    assert err.value.problems == ["inputs: 'order_id' is a required property"]
    assert (
        str(err.value) == "invalid inputs (1 problem):\n- inputs: 'order_id' is a required property"
    )
    with pytest.raises(RPCError) as missing:
        await flow_worker.client.get_workflow_handle(run_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    assert check_inputs(definition, {"order_id": 7}) == []
