"""Human-in-the-loop nodes on the dev server and Postgres: decisions, rules, inbox rows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.registry import Dependencies
from persistence import secret_queries
from persistence.secret_keys import SecretKeys
from tests.flows import FlowWorker, shared_flow
from tests.hitl_support import (
    People,
    decide,
    inbox,
    legal_and_money,
    make_people,
    open_task,
    review_flow,
    wait_for,
)
from tests.http_peer import HttpPeer, Reply
from tests.invariant import assert_queue_tells_the_truth
from tests.test_cli import ROOT
from workers.client import STATUS_QUERY, SUBMIT_HITL_DECISION_UPDATE, DecisionRefused, send_decision
from workers.sandbox_runner import flow_sandbox_runner
from workers.temporal_dev import temporal_cli
from workers.worker import activity_functions, workflow_classes
from workflows.contract import HITL_OPEN, HitlOpen

CONTRACT_EXAMPLE = json.loads((ROOT / "examples" / "flows" / "contract-example.json").read_text())


async def test_an_approval_creates_the_inbox_row_waits_and_follows_the_approved_edge(
    flow_worker: FlowWorker, people: People
) -> None:
    handle = await flow_worker.start(
        review_flow(priority=2), {"what": "invoice 9"}, tenant_id=people.tenant
    )
    (task,) = await open_task(handle)
    row = await inbox(flow_worker, task["id"])
    assert (row["title"], row["status"], row["assignee_role"], row["priority"]) == (
        "Review invoice 9",
        "assigned",
        "finance",
        2,
    )
    assert row["context"]["input"] == {"what": "invoice 9"}
    assert (await flow_worker.run_row(handle.id))["status"] == "waiting_hitl"

    decision = await decide(handle, task["id"], {"approved": True}, people.finance, "fine")
    assert decision["decided_by"] == people.finance
    assert decision["decision"] == {"approved": True}
    result = await handle.result()
    assert result.outputs["on_approved"]["handle"] == "approved"
    assert result.outputs["on_approved"]["comments"] == "fine"
    assert "on_rejected" not in result.outputs
    row = await inbox(flow_worker, task["id"])
    assert row["status"] == "completed"
    assert [d["comments"] for d in row["decisions"]] == ["fine"]
    tasks = await flow_worker.task_rows(handle.id)
    assert tasks["on_rejected"]["status"] == "skipped"
    assert tasks["review"]["status"] == "completed"


@pytest.mark.parametrize(
    ("config", "decision", "handle"),
    [
        (
            {"decisionType": "choice", "options": [{"value": "green", "label": "Green"}, "red"]},
            {"choice": "red"},
            "red",
        ),
        (
            {
                "decisionType": "form_input",
                "formSchema": {
                    "type": "object",
                    "required": ["amount"],
                    "properties": {"amount": {"type": "number"}},
                },
            },
            {"form": {"amount": 12.5}},
            "submitted",
        ),
        (
            {"decisionType": "annotation"},
            {"annotations": [{"label": "cat", "box": [1, 2, 3, 4]}]},
            "submitted",
        ),
        ({"decisionType": "free_text"}, {"text": "ship it on Monday"}, "submitted"),
        ({"decisionType": "approval"}, {"approved": False}, "rejected"),
    ],
)
async def test_each_decision_type_routes_by_its_handle(
    flow_worker: FlowWorker,
    people: People,
    config: dict[str, Any],
    decision: dict[str, Any],
    handle: str,
) -> None:
    run = await flow_worker.start(review_flow(**config), {"what": "x"}, tenant_id=people.tenant)
    (task,) = await open_task(run)
    await decide(run, task["id"], decision, people.finance)
    result = await run.result()
    assert result.outputs[f"on_{handle}"]["decision"] == decision
    assert [k for k in result.outputs if k.startswith("on_")] == [f"on_{handle}"]


async def test_a_quorum_of_two_needs_two_distinct_approvers(
    flow_worker: FlowWorker, people: People
) -> None:
    run = await flow_worker.start(
        review_flow(requiredApprovals=2), {"what": "x"}, tenant_id=people.tenant
    )
    (task,) = await open_task(run)
    await decide(run, task["id"], {"approved": True}, people.finance)
    with pytest.raises(DecisionRefused) as err:
        await decide(run, task["id"], {"approved": True}, people.finance)
    assert "already approved" in err.value.reason
    assert (await inbox(flow_worker, task["id"]))["status"] == "in_progress"
    assert (await run.query(STATUS_QUERY))["open_hitl_tasks"][0]["approvals"] == [people.finance]
    await decide(run, task["id"], {"approved": True}, people.finance2)
    result = await run.result()
    assert result.outputs["on_approved"]["approvals"] == [people.finance, people.finance2]
    assert len((await inbox(flow_worker, task["id"]))["decisions"]) == 2


async def test_self_approval_is_refused_when_not_allowed(
    flow_worker: FlowWorker, people: People
) -> None:
    run = await flow_worker.start(
        review_flow(allowSelfApproval=False),
        {"what": "x"},
        tenant_id=people.tenant,
        triggered_by=people.finance,
    )
    (task,) = await open_task(run)
    with pytest.raises(DecisionRefused) as err:
        await decide(run, task["id"], {"approved": True}, people.finance)
    assert "may not decide its tasks" in err.value.reason
    await decide(run, task["id"], {"approved": True}, people.finance2)
    assert "on_approved" in (await run.result()).outputs


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t, p: (str(uuid.uuid4()), {"approved": True}, p.finance), "unknown HITL task"),
        (lambda t, p: (t, {"approved": "yes"}, p.finance), "an approval decision is"),
        (lambda t, p: (t, {"choice": "x"}, p.finance), "an approval decision is"),
        (lambda t, p: (t, {"approved": True}, p.outsider), "is not the assignee"),
        (
            lambda t, p: (t, {"approved": True}, p.stranger_tenant_user),
            "does not belong to the run's tenant",
        ),
        (lambda t, p: (t, {"approved": True}, str(uuid.uuid4())), "does not exist"),
    ],
)
async def test_each_rejection_rule_through_the_update_and_the_signal(
    flow_worker: FlowWorker, people: People, mutate: Any, message: str
) -> None:
    run = await flow_worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
    (task,) = await open_task(run)
    task_id, decision, who = mutate(task["id"], people)
    with pytest.raises(DecisionRefused) as err:
        await decide(run, task_id, decision, who)
    assert message in err.value.reason

    await send_decision(flow_worker.client, run.id, task_id, decision, who)
    for _ in range(100):
        rejected = (await run.query(STATUS_QUERY))["rejected_decisions"]
        if rejected:
            break
        await asyncio.sleep(0.1)
    assert message in rejected[0]["reason"]
    row = await inbox(flow_worker, task["id"])
    assert (row["status"], row["decisions"]) == ("assigned", [])  # nothing changed
    # ... and the run still waits, and a valid signal decides it
    await send_decision(flow_worker.client, run.id, task["id"], {"approved": True}, people.finance)
    assert "on_approved" in (await run.result()).outputs


async def test_two_parallel_reviews_and_cancel_while_waiting(
    flow_worker: FlowWorker, people: People
) -> None:
    definition = legal_and_money(people)
    run = await flow_worker.start(definition, tenant_id=people.tenant)
    tasks = {t["title"]: t for t in await open_task(run, 2)}
    await decide(run, tasks["Legal"]["id"], {"text": "ok"}, people.lead)
    assert [t["title"] for t in (await run.query(STATUS_QUERY))["open_hitl_tasks"]] == ["Money"]
    await run.cancel()
    with pytest.raises(WorkflowFailureError):
        await run.result()
    assert (await inbox(flow_worker, tasks["Money"]["id"]))["status"] == "cancelled"
    assert (await inbox(flow_worker, tasks["Legal"]["id"]))["status"] == "completed"
    assert (await flow_worker.run_row(run.id))["status"] == "cancelled"


async def test_order_approval_runs_with_a_finance_decision(
    flow_worker: FlowWorker, people: People, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/orders/5", Reply(body={"total": 5000}))
    http_peer.route("POST", "/orders/5/ship", Reply(body={"shipped": True}))
    http_peer.route("GET", "/orders/6", Reply(body={"total": 50}))
    http_peer.route("POST", "/orders/6/ship", Reply(body={"shipped": True}))
    big = await flow_worker.start(
        shared_flow("order-approval"),
        {"api_base": http_peer.base, "order_id": 5},
        tenant_id=people.tenant,
    )
    (task,) = await open_task(big)
    assert task["title"] == "Approve order 5"
    await decide(big, task["id"], {"approved": True}, people.finance)
    assert (await big.result()).outputs == {"total": 5000}
    assert len(http_peer.calls("POST", "/orders/5/ship")) == 1

    small, run_id = await flow_worker.run(
        shared_flow("order-approval"),
        {"api_base": http_peer.base, "order_id": 6},
        tenant_id=people.tenant,
    )
    assert small.outputs == {"total": 50}
    rows = await flow_worker.task_rows(run_id)
    assert (rows["approve"]["status"], rows["reject"]["status"], rows["ship"]["status"]) == (
        "skipped",
        "skipped",
        "completed",
    )


async def test_the_plain_temporal_cli_update_decides_like_the_sdk(
    flow_worker: FlowWorker, people: People
) -> None:
    run = await flow_worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
    (task,) = await open_task(run)
    address = flow_worker.client.service_client.config.target_host

    def update(decided_by: str) -> subprocess.CompletedProcess[str]:
        payload = {
            "hitl_task_id": task["id"],
            "decision": {"approved": True},
            "decided_by": decided_by,
            "comments": "via CLI",
        }
        return subprocess.run(
            [
                temporal_cli(),
                "workflow",
                "update",
                "execute",
                "--address",
                address,
                "--workflow-id",
                run.id,
                "--name",
                SUBMIT_HITL_DECISION_UPDATE,
                "--input",
                json.dumps(payload),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    refused = await asyncio.to_thread(update, people.outsider)
    assert refused.returncode != 0
    assert "is not the assignee" in refused.stdout + refused.stderr
    accepted = await asyncio.to_thread(update, people.finance)
    assert accepted.returncode == 0, accepted.stderr
    assert "via CLI" in accepted.stdout
    assert (await run.result()).outputs["on_approved"]["comments"] == "via CLI"


async def test_reviewer_cli_lists_shows_and_decides_through_the_update(
    flow_worker: FlowWorker, people: People, database_url: str
) -> None:
    from tests.test_cli import ameta_agent

    run = await flow_worker.start(
        review_flow(decisionType="choice", options=["green", "red"]),
        {"what": "colour"},
        tenant_id=people.tenant,
    )
    (task,) = await open_task(run)
    env = {
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": flow_worker.client.service_client.config.target_host,
    }
    listed = await ameta_agent("hitl", "list", "--role", "finance", env=env)
    assert task["id"] in listed.stdout
    assert "Review colour" in listed.stdout
    shown = await ameta_agent("hitl", "show", task["id"], env=env)
    assert json.loads(shown.stdout)["options"] == ["green", "red"]

    refused = await ameta_agent(
        "hitl", "decide", task["id"], "--choice", "blue", "--as", people.finance, env=env
    )
    assert refused.returncode == 1
    assert "a choice decision is" in refused.stdout
    accepted = await ameta_agent(
        "hitl",
        "decide",
        task["id"],
        "--choice",
        "green",
        "--comment",
        "nice",
        "--as",
        people.finance,
        env=env,
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert json.loads(accepted.stdout)["decision"] == {"choice": "green"}
    assert (await run.result()).outputs["on_green"]["comments"] == "nice"


async def test_a_waiting_task_survives_a_worker_restart(
    temporal_env: Any, session_maker: Any, people: People, flow_worker: FlowWorker
) -> None:
    from activities.registry import Dependencies
    from workers.settings import Settings
    from workers.worker import build_worker

    queue = f"restart-{uuid.uuid4().hex[:8]}"
    restart = FlowWorker(temporal_env.client, queue, session_maker)
    deps = Dependencies(sessions=session_maker)
    async with build_worker(temporal_env.client, Settings(temporal_task_queue=queue), deps):
        run = await restart.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
        (task,) = await open_task(run)
    # no worker at all now; a new one takes over the waiting run from its history
    async with build_worker(temporal_env.client, Settings(temporal_task_queue=queue), deps):
        await decide(run, task["id"], {"approved": True}, people.finance)
        assert "on_approved" in (await run.result()).outputs
    await deps.aclose()


async def test_the_contract_example_flow_runs_as_written(
    flow_worker: FlowWorker, people: People, http_peer: HttpPeer
) -> None:
    """CONTRACT section 1's example, verbatim: a secret base URL, a branch, an escalation."""
    definition = CONTRACT_EXAMPLE
    async with flow_worker.sessions() as s, s.begin():
        keys = SecretKeys.parse(os.environ["SECRETS_KEYS"])
        await secret_queries.set_secret(
            s, keys, uuid.UUID(people.tenant), "ORDERS_URL", http_peer.base
        )
    http_peer.route("GET", "/orders/42", Reply(body={"total": 1500}))
    http_peer.route("GET", "/orders/43", Reply(body={"total": 20}))
    big = await flow_worker.start(definition, {"order_id": 42}, tenant_id=people.tenant)
    (task,) = await open_task(big)
    assert task["title"] == "Approve order 42"
    assert task["assignee_role"] == "finance"
    await decide(big, task["id"], {"approved": True}, people.finance)
    assert (await big.result()).outputs == {"total": 1500}
    small, run_id = await flow_worker.run(definition, {"order_id": 43}, tenant_id=people.tenant)
    assert small.outputs == {"total": 20}
    rows = await flow_worker.task_rows(run_id)
    assert rows["approve"]["status"] == "skipped"
    assert http_peer.base not in json.dumps(rows["fetch"]["agent_config"])  # the secret stays out


async def test_the_cli_narrowed_to_a_tenant_shows_none_of_another_tenants_runs_or_tasks(
    flow_worker: FlowWorker, people: People, database_url: str
) -> None:
    from tests.test_cli import ameta_agent

    ours = await flow_worker.start(review_flow(), {"what": "ours"}, tenant_id=people.tenant)
    (task,) = await open_task(ours)
    other = await make_people(flow_worker.sessions)
    theirs = await flow_worker.start(review_flow(), {"what": "theirs"}, tenant_id=other.tenant)
    (their_task,) = await open_task(theirs)
    env = {
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": flow_worker.client.service_client.config.target_host,
    }
    for listing in (("runs", "list", "--limit", "500"), ("hitl", "list", "--limit", "500")):
        everyone = await ameta_agent(*listing, env=env)
        narrowed = await ameta_agent(*listing, "--tenant", people.tenant, env=env)
        assert narrowed.returncode == 0, narrowed.stderr
        mine, not_mine = (
            (ours.id, theirs.id) if listing[0] == "runs" else (task["id"], their_task["id"])
        )
        assert mine in everyone.stdout
        assert not_mine in everyone.stdout
        assert mine in narrowed.stdout
        assert not_mine not in narrowed.stdout
    # Another tenant's run or task reads as one that does not exist; so does deciding it.
    for command in (
        ("runs", "show", theirs.id),
        ("hitl", "show", their_task["id"]),
        ("hitl", "decide", their_task["id"], "--approve", "--as", people.finance),
    ):
        refused = await ameta_agent(*command, "--tenant", people.tenant, env=env)
        assert refused.returncode == 1
        assert "no " in refused.stderr
        assert "theirs" not in refused.stdout + refused.stderr
    shown = await ameta_agent("runs", "show", ours.id, "--tenant", people.tenant, env=env)
    assert shown.returncode == 0
    assert ours.id in shown.stdout
    unknown = await ameta_agent("runs", "list", "--tenant", str(uuid.uuid4()), env=env)
    assert unknown.returncode == 1
    assert "no tenant" in unknown.stderr
    await decide(theirs, their_task["id"], {"approved": True}, other.finance)
    await decide(ours, task["id"], {"approved": True}, people.finance)


async def test_a_decision_from_the_inbox_before_the_run_hears_its_task_opened_waits_for_it(
    temporal_env: WorkflowEnvironment,
    session_maker: async_sessionmaker[AsyncSession],
    people: People,
) -> None:
    """The inbox row is written inside `hitl_open`; until Temporal hears the activity ended
    (which a fault can delay for a minute), the run does not know the task. A decision sent
    meanwhile waits for it, rather than being refused as an unknown task.
    """
    deps = Dependencies(sessions=session_maker)
    activities = list(activity_functions(deps))
    original = next(
        a for a in activities if activity._Definition.must_from_callable(a).name == HITL_OPEN
    )
    hold = asyncio.Event()

    @activity.defn(name=HITL_OPEN)
    async def held_open(req: HitlOpen) -> Any:
        done = await original(req)  # the row is committed: the inbox shows the task
        await hold.wait()  # ... but the run has not heard so yet
        return done

    queue = f"held-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        temporal_env.client,
        task_queue=queue,
        workflows=list(workflow_classes()),
        activities=[held_open if a is original else a for a in activities],
        workflow_runner=flow_sandbox_runner(),
    )
    try:
        async with worker:
            flow = FlowWorker(temporal_env.client, queue, session_maker)
            handle = await flow.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
            task_id = await wait_for(lambda: _inbox_task(session_maker, handle.id), 30)
            assert (await handle.query(STATUS_QUERY))["open_hitl_tasks"] == []
            deciding = asyncio.create_task(
                decide(handle, task_id, {"approved": True}, people.finance, "early")
            )
            await asyncio.sleep(1)
            assert not deciding.done()  # waiting, not refused
            hold.set()
            row = await asyncio.wait_for(deciding, 30)
            assert row["decided_by"] == people.finance
            result = await asyncio.wait_for(handle.result(), 30)
            assert result.outputs["on_approved"]["comments"] == "early"
            await assert_queue_tells_the_truth(
                temporal_env.client, session_maker, queue, flow.started
            )
    finally:
        hold.set()
        await deps.aclose()


async def _inbox_task(sessions: async_sessionmaker[AsyncSession], run_id: str) -> str | None:
    async with sessions() as s:
        found = await s.scalar(
            text(
                "SELECT h.id FROM hitl_tasks h JOIN workflow_runs r ON r.id = h.workflow_run_id"
                " WHERE r.orchestrator_run_id = :o"
            ),
            {"o": run_id},
        )
    return str(found) if found else None
