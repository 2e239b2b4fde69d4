"""The tenant boundary: every lookup a run makes stays within the run's tenant.

Two tenants, A and B, hold objects of the same names (a flow, an agent, a model,
a role) and some of B's own. A run of A that names any of B's objects, by id or by
name, outright or through a template, is refused in the very words of a run naming
nothing; A's objects of the shared names resolve to A's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import decide, open_task, review_flow
from tests.http_peer import HttpPeer, Reply
from tests.support import make_tenant, make_user
from tests.test_agent_llm import completion
from tests.test_agent_media import one_node_flow
from workers.client import DecisionRefused, start_run
from workflows.contract import FlowResult, FlowRunInput


@dataclass
class Side:
    label: str
    tenant: str
    flow: str  # the id of its flow named `Sides.name`
    only: str  # the name of a flow only this side has
    agent: str  # a private `workflow` agent calling its own flow
    public_agent: str  # a public `workflow` agent calling its own flow (by id)
    model: str  # a private vision model named `Sides.name`
    user: str  # holds the side's `reviewers` role
    role: str  # a role only this side has
    workspace: str
    run: str  # a run row of the side


@dataclass
class Sides:
    name: str  # the name A, B and a shared (tenant-less) flow all use
    a: Side
    b: Side


def side_flow(label: str) -> dict[str, Any]:
    """A flow whose outputs say whose it is."""
    return {
        "nodes": [
            node("start", "start"),
            node("which", "transform", {"output": label}),
            node("done", "end", {"outputs": {"side": "{{ nodes.which.output }}"}}),
        ],
        "edges": [edge("start", "which"), edge("which", "done")],
    }


def calling(**subs: dict[str, Any]) -> dict[str, Any]:
    """A flow calling sub-flows, one `workflow` node per keyword (its config or agentId)."""
    nodes = [node("start", "start")]
    for sub_id, data in subs.items():
        agent = data.pop("agentId", None)
        nodes.append(node(sub_id, "workflow", data, **({"agentId": agent} if agent else {})))
    outputs = {s: f"{{{{ nodes.{s}.output.side }}}}" for s in subs}
    nodes.append(node("done", "end", {"outputs": outputs}))
    edges = [edge("start", s) for s in subs] + [edge(s, "done") for s in subs]
    return {"nodes": nodes, "edges": edges}


async def _row(flow_worker: FlowWorker, table: str, **values: Any) -> str:
    row_id = str(uuid.uuid4())
    values = {"id": row_id, **values}
    params = ", ".join(
        f"CAST(:{k} AS jsonb)" if isinstance(v, dict) else f":{k}" for k, v in values.items()
    )
    async with flow_worker.sessions() as s, s.begin():
        await s.execute(
            text(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({params})"),
            {k: json.dumps(v) if isinstance(v, dict) else v for k, v in values.items()},
        )
    return row_id


async def _side(flow_worker: FlowWorker, label: str, name: str, endpoint: str) -> Side:
    async with flow_worker.sessions() as s, s.begin():
        tenant = await make_tenant(s)
        flow = await queries.save_workflow_version(
            s, name=name, definition=side_flow(label), tenant_id=tenant
        )
        only = await queries.save_workflow_version(
            s, name=f"{label}-only-{name}", definition=side_flow(label), tenant_id=tenant
        )
        user = await make_user(s, tenant)
        run = await queries.upsert_run(
            s, f"{label}-{uuid.uuid4().hex}", {"status": "completed", "tenant_id": tenant}
        )
        role = f"{label}-only-role-{name}"
        for role_name in ("reviewers", role):
            await s.execute(
                text("INSERT INTO roles (id, name, tenant_id) VALUES (:i, :n, :t)"),
                {"i": uuid.uuid4(), "n": role_name, "t": tenant},
            )
        await s.execute(
            text(
                "INSERT INTO user_roles (user_id, role_id) SELECT :u, id FROM roles "
                "WHERE name = 'reviewers' AND tenant_id = :t"
            ),
            {"u": user, "t": tenant},
        )
    flow_id = str(flow.workflow_id)
    agent: dict[str, Any] = {"name": name, "type": "workflow", "tenant_id": str(tenant)}
    return Side(
        label=label,
        tenant=str(tenant),
        flow=flow_id,
        only=only.name,
        agent=await _row(flow_worker, "agents", **agent, configuration={"workflowId": name}),
        public_agent=await _row(
            flow_worker,
            "agents",
            **agent,
            visibility="public",
            configuration={"workflowId": flow_id},
        ),
        model=await _row(
            flow_worker, "vision_models", name=name, tenant_id=str(tenant), api_endpoint=endpoint
        ),
        user=str(user),
        role=role,
        workspace=await _row(flow_worker, "workspaces", name=name, tenant_id=str(tenant)),
        run=str(run),
    )


@pytest.fixture
async def sides(flow_worker: FlowWorker, http_peer: HttpPeer) -> Sides:
    name = f"shared-name-{uuid.uuid4().hex[:8]}"
    for label in ("A", "B"):
        http_peer.route(
            "POST", f"/{label}/v1/chat/completions", Reply(200, completion(f"{label} saw it"))
        )
    async with flow_worker.sessions() as s, s.begin():  # and a shared flow of the same name
        await queries.save_workflow_version(s, name=name, definition=side_flow("shared"))
    a, b = [await _side(flow_worker, x, name, f"{http_peer.base}/{x}/v1") for x in ("A", "B")]
    return Sides(name, a, b)


async def _start(flow_worker: FlowWorker, **fields: Any) -> WorkflowHandle[Any, FlowResult]:
    """Start FlowRun with these FlowRunInput fields (`workflow_id` names the stored flow)."""
    handle = await start_run(
        flow_worker.client,
        flow_worker.task_queue,
        FlowRunInput(**fields),
        run_id=f"boundary-{uuid.uuid4().hex[:12]}",
    )
    flow_worker.started.append(handle.id)
    return handle


async def _run(flow_worker: FlowWorker, **fields: Any) -> dict[str, Any]:
    """The outputs of a run that must complete."""
    return (await (await _start(flow_worker, **fields)).result()).outputs


@dataclass
class Case:
    """A run of A naming `ref`: B's object (`theirs`) or nothing (`unknown`)."""

    build: Callable[[str], dict[str, Any]]  # ref -> the run's FlowRunInput fields
    theirs: Callable[[Side], str]
    unknown: Callable[[], str] = lambda: str(uuid.uuid4())
    at_start: bool = True  # refused before any node runs (else: when its node runs)


def _name() -> str:
    return f"nothing-{uuid.uuid4().hex[:8]}"


def _review(**config: Any) -> Callable[[str], dict[str, Any]]:
    """A hitl node of A whose `config` names `ref` (the "?" in its values)."""

    def build(ref: str) -> dict[str, Any]:
        # A deadline, so that a reference let through fails the run soon instead of waiting.
        values = {"assigneeRole": "reviewers", "deadlineSeconds": 1, **config}
        filled = json.loads(json.dumps(values).replace("?", ref))
        return {"definition": review_flow(**filled), "inputs": {"what": "x"}}

    return build


TRIVIAL = side_flow("A")
CASES = {
    "run by id": Case(lambda r: {"workflow_id": r}, lambda b: b.flow),
    "run by name": Case(lambda r: {"workflow_id": r}, lambda b: b.only, _name),
    "sub-flow by id": Case(
        lambda r: {"definition": calling(s={"workflowId": r})}, lambda b: b.flow
    ),
    "sub-flow by name": Case(
        lambda r: {"definition": calling(s={"workflowId": r})}, lambda b: b.only, _name
    ),
    "sub-flow by templated name": Case(
        lambda r: {"definition": calling(s={"workflowId": "{{ input.f }}"}), "inputs": {"f": r}},
        lambda b: b.only,
        _name,
        at_start=False,
    ),
    "sub-flow by templated id": Case(
        lambda r: {"definition": calling(s={"workflowId": "{{ input.f }}"}), "inputs": {"f": r}},
        lambda b: b.flow,
        at_start=False,
    ),
    "private agent": Case(lambda r: {"definition": calling(s={"agentId": r})}, lambda b: b.agent),
    "private agent of another type": Case(
        lambda r: {"definition": one_node_flow("n", "llm", {"prompt": "x"}, agentId=r)},
        lambda b: b.agent,
    ),
    "model": Case(
        lambda r: {"definition": one_node_flow("n", "vision", {"image": "aGk=", "modelId": r})},
        lambda b: b.model,
    ),
    "assigneeId": Case(_review(assigneeId="?"), lambda b: b.user),
    "escalation toUser": Case(
        _review(escalation=[{"afterSeconds": 60, "toUser": "?"}]), lambda b: b.user
    ),
    "assigneeRole": Case(_review(assigneeRole="?"), lambda b: b.role, _name),
    "escalation toRole": Case(
        _review(escalation=[{"afterSeconds": 60, "toRole": "?"}]), lambda b: b.role, _name
    ),
    "triggered_by": Case(lambda r: {"definition": TRIVIAL, "triggered_by": r}, lambda b: b.user),
    "workspace": Case(lambda r: {"definition": TRIVIAL, "workspace_id": r}, lambda b: b.workspace),
    "parent run": Case(lambda r: {"definition": TRIVIAL, "parent_run_id": r}, lambda b: b.run),
}


async def _failure(handle: WorkflowHandle[Any, FlowResult]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


async def _refusal(flow_worker: FlowWorker, case: Case, ref: str, tenant: str) -> tuple[str, str]:
    """How a run of `tenant` naming `ref` fails: its message (`ref` as <ref>) and type."""
    handle = await _start(flow_worker, tenant_id=tenant, **case.build(ref))
    cause = await _failure(handle)
    assert (await flow_worker.run_row(handle.id))["error"] == cause.message
    assert (await flow_worker.task_rows(handle.id) == {}) is case.at_start
    assert ref in cause.message, cause.message
    return cause.message.replace(ref, "<ref>").replace(handle.id, "<run>"), str(cause.type)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_another_tenants_object_reads_as_an_unknown_one(
    flow_worker: FlowWorker, sides: Sides, case: Case
) -> None:
    theirs = await _refusal(flow_worker, case, case.theirs(sides.b), sides.a.tenant)
    unknown = await _refusal(flow_worker, case, case.unknown(), sides.a.tenant)
    assert theirs == unknown
    assert "tenant" not in theirs[0].replace(f"in tenant {sides.a.tenant}", "")


async def test_a_public_agent_of_another_tenant_cannot_reach_its_private_flow(
    flow_worker: FlowWorker, sides: Sides
) -> None:
    """A marketplace agent is shared, the flow it names is not: A's run is refused for it."""
    flow = calling(s={"agentId": sides.b.public_agent})
    cause = await _failure(await _start(flow_worker, definition=flow, tenant_id=sides.a.tenant))
    assert cause.message == (
        f"invalid flow (1 problem):\n- node 's': config.workflowId: no workflow with id "
        f"{sides.b.flow}"
    )
    flow = calling(s={"agentId": sides.b.public_agent})
    assert await _run(flow_worker, definition=flow, tenant_id=sides.b.tenant) == {"s": "B"}


async def test_same_names_resolve_to_the_runs_own_tenant(
    flow_worker: FlowWorker, sides: Sides
) -> None:
    for side in (sides.a, sides.b):
        mine = {"side": side.label}
        assert await _run(flow_worker, workflow_id=sides.name, tenant_id=side.tenant) == mine
        assert await _run(flow_worker, workflow_id=side.flow, tenant_id=side.tenant) == mine
        parent = calling(
            literal={"workflowId": sides.name},
            templated={"workflowId": "{{ input.f }}"},
            agent={"agentId": side.agent},
        )
        outputs = await _run(
            flow_worker, definition=parent, inputs={"f": sides.name}, tenant_id=side.tenant
        )
        assert outputs == {"literal": side.label, "templated": side.label, "agent": side.label}
        # The parent stored in the tenant and started by its id alone takes the tenant.
        async with flow_worker.sessions() as s, s.begin():
            stored = await queries.save_workflow_version(
                s, name=f"parent-{sides.name}", definition=parent, tenant_id=uuid.UUID(side.tenant)
            )
        outputs = await _run(
            flow_worker, workflow_id=str(stored.workflow_id), inputs={"f": sides.name}
        )
        assert set(outputs.values()) == {side.label}
        # The model of the name is the tenant's own (its endpoint answers for the side).
        config = {"image": "https://example.invalid/x.png", "prompt": "?", "modelId": side.model}
        outputs = await _run(
            flow_worker, definition=one_node_flow("n", "vision", config), tenant_id=side.tenant
        )
        assert outputs["n"]["text"] == f"{side.label} saw it"
    # A run of no tenant takes the shared flow of the name.
    assert await _run(flow_worker, workflow_id=sides.name) == {"side": "shared"}


async def test_a_role_of_the_same_name_in_another_tenant_does_not_let_its_holder_decide(
    flow_worker: FlowWorker, sides: Sides
) -> None:
    flow = review_flow(assigneeRole="reviewers")
    run = await _start(flow_worker, definition=flow, inputs={"what": "x"}, tenant_id=sides.a.tenant)
    (task,) = await open_task(run)
    with pytest.raises(DecisionRefused) as err:
        await decide(run, task["id"], {"approved": True}, sides.b.user)
    assert "does not belong to the run's tenant" in err.value.reason
    await decide(run, task["id"], {"approved": True}, sides.a.user)
    assert "on_approved" in (await run.result()).outputs


async def test_a_run_of_no_tenant_reaches_shared_objects_only(
    flow_worker: FlowWorker, sides: Sides
) -> None:
    """Only a top-level start of a stored flow by id runs in that flow's tenant (an
    operator's run); anything a tenant-less flow names must be shared.
    """
    b = sides.b
    for flow, message in (
        (calling(s={"workflowId": b.flow}), f"no workflow with id {b.flow}"),
        (calling(s={"workflowId": b.only}), f"no stored flow named {b.only!r}"),
        (calling(s={"agentId": b.agent}), "data.agentId"),
    ):
        cause = await _failure(await _start(flow_worker, definition=flow))
        assert message in cause.message, cause.message
    templated = calling(s={"workflowId": "{{ input.f }}"})
    cause = await _failure(await _start(flow_worker, definition=templated, inputs={"f": b.flow}))
    assert f"no workflow with id {b.flow}" in cause.message
    assert await _run(flow_worker, definition=calling(s={"workflowId": sides.name})) == {
        "s": "shared"
    }
    assert await _run(flow_worker, workflow_id=b.flow) == {"side": "B"}
