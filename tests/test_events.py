"""Events, emitted over HTTP (tenant-signed) and by the CLI: they start the subscribed flows
of that tenant only and wake that tenant's runs waiting on the event (found by the
`WaitingEvents` search attribute), never another tenant's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hooks_support import (
    make_tenant,
    queue_runs,
    runs_of_flow,
    serving_api,
    signed,
    store_flow,
)
from tests.invariant import assert_run_tells_the_truth
from tests.test_cli import _env, ameta_agent
from workers.api.ownership import keyed_run_id
from workers.api.requests import MAX_BODY_DEPTH
from workers.api.signing import event_message
from workers.client import STATUS_QUERY, start_run
from workflows import search_attributes as sa
from workflows.contract import FlowResult, FlowRunInput

_ECHO = {
    "nodes": [node("start", "start"), node("end", "end", {"outputs": {"got": "{{ input }}"}})],
    "edges": [edge("start", "end")],
}
_WAITS = {
    "nodes": [
        node("start", "start"),
        node("ping", "wait", {"event": "ping", "timeoutSeconds": 120}),
        node("end", "end", {"outputs": {"payload": "{{ nodes.ping.output.payload }}"}}),
    ],
    "edges": [edge("start", "ping"), edge("ping", "end")],
}


def _on(event: str, **config: Any) -> list[dict[str, Any]]:
    return [{"type": "event", "config": {"event": event, **config}}]


async def _outputs(worker: FlowWorker, run_id: str) -> dict[str, Any]:
    handle = worker.client.get_workflow_handle(run_id, result_type=FlowResult)
    return (await handle.result()).outputs


async def _listed_as_waiting(worker: FlowWorker, *handles: WorkflowHandle[Any, Any]) -> None:
    """Until visibility lists each run as waiting on `ping` (the attribute is upserted)."""
    wanted = {h.id for h in handles}
    query = f'{sa.WAITING_EVENTS.name} = "ping" AND TaskQueue = "{worker.task_queue}"'
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if wanted <= {w.id async for w in worker.client.list_workflows(query)}:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"runs {wanted} never listed as waiting on ping")


async def test_a_signed_event_starts_the_tenants_subscribed_flows_only(
    flow_worker: FlowWorker,
) -> None:
    mine = await make_tenant(flow_worker, api_secret="mine")
    theirs = await make_tenant(flow_worker, api_secret="theirs")
    plain = await store_flow(flow_worker, mine, _ECHO, _on("order.paid"))
    mapped = await store_flow(flow_worker, mine, _ECHO, _on("order.paid", payloadInput="order"))
    elsewhere = await store_flow(flow_worker, mine, _ECHO, _on("order.shipped"))
    paused = await store_flow(
        flow_worker,
        mine,
        _ECHO,
        _on("order.paid"),
        "UPDATE workflows SET is_paused = true WHERE id = :id",
    )
    draft = await store_flow(
        flow_worker,
        mine,
        _ECHO,
        _on("order.paid"),
        "UPDATE workflow_versions SET status = 'draft' WHERE workflow_id = :id",
    )
    foreign = await store_flow(flow_worker, theirs, _ECHO, _on("order.paid"))
    as_mine = {"X-Meta-Tenant": str(mine), "Idempotency-Key": "evt-1"}
    async with serving_api(flow_worker) as api:
        answer = await api.post("/events/order.paid", {"id": 9}, "mine", headers=as_mine)
        assert answer.status_code == 202, answer.text
        done = answer.json()
        started = {run["flow_id"]: run["run_id"] for run in done["started"]}
        assert set(started) == {plain, mapped}
        assert [r["flow_id"] for r in done["refused"]] == [draft]
        assert "draft" in done["refused"][0]["error"]
        assert done["woken"] == []
        flow_worker.started.extend(started.values())

        # Redelivered: the same runs, none started twice.
        again = await api.post("/events/order.paid", {"id": 9}, "mine", headers=as_mine)
        assert {r["run_id"] for r in again.json()["started"]} == set(started.values())

        # Signed with another tenant's secret, a bad name: refused, nothing started.
        spoofed = await api.post("/events/order.paid", {"id": 9}, "theirs", headers=as_mine)
        assert spoofed.status_code == 401
        bad_name = await api.post('/events/a"b', {}, "mine", headers=as_mine)
        assert bad_name.status_code == 400

    assert await _outputs(flow_worker, started[plain]) == {"got": {"id": 9}}
    assert await _outputs(flow_worker, started[mapped]) == {"got": {"order": {"id": 9}}}
    for run_id in started.values():
        await assert_run_tells_the_truth(flow_worker.client, flow_worker.sessions, run_id)
    row = await flow_worker.run_row(started[plain])
    assert row["trigger_type"] == "event"
    assert row["trigger_metadata"] == {
        "event": "order.paid",
        "payload": {"id": 9},
        "event_id": "evt-1",
    }
    for flow in (elsewhere, paused, draft, foreign):
        assert await runs_of_flow(flow_worker, flow) == 0
    assert sorted(await queue_runs(flow_worker)) == sorted(started.values())


async def test_an_event_wakes_and_starts_only_that_tenants_runs(
    database_url: str, temporal_env: WorkflowEnvironment, flow_worker: FlowWorker
) -> None:
    mine = await make_tenant(flow_worker, api_secret="mine")
    theirs = await make_tenant(flow_worker, api_secret="theirs")
    my_flow = await store_flow(flow_worker, mine, _ECHO, _on("ping"))
    their_flow = await store_flow(flow_worker, theirs, _ECHO, _on("ping"))
    my_run = await flow_worker.start(_WAITS, {}, tenant_id=str(mine))
    their_run = await flow_worker.start(_WAITS, {}, tenant_id=str(theirs))
    await _listed_as_waiting(flow_worker, my_run, their_run)

    # The operator's CLI, for my tenant.
    env = _env(database_url, temporal_env, flow_worker.task_queue)
    out = await ameta_agent(
        "events", "emit", "ping", "--tenant", str(mine), "--payload", '{"n": 1}', "--json", env=env
    )
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["woken"] == [my_run.id]
    assert [r["flow_id"] for r in done["started"]] == [my_flow]
    flow_worker.started.extend(r["run_id"] for r in done["started"])
    assert await _outputs(flow_worker, my_run.id) == {"payload": {"n": 1}}
    assert await _outputs(flow_worker, done["started"][0]["run_id"]) == {"got": {"n": 1}}
    ended = await my_run.describe()
    assert not ended.typed_search_attributes.get(sa.WAITING_EVENTS)  # cleared as it stopped

    # The other tenant's run still waits, and its flow has not started.
    await asyncio.sleep(1)
    status = await their_run.query(STATUS_QUERY)
    assert status["status"] == "running"
    assert status["nodes"]["ping"]["status"] == "running"
    assert await runs_of_flow(flow_worker, their_flow) == 0

    # Its own tenant's signed event wakes it.
    async with serving_api(flow_worker) as api:
        answer = await api.post(
            "/events/ping", [1, 2], "theirs", headers={"X-Meta-Tenant": str(theirs)}
        )
    assert answer.status_code == 202, answer.text
    assert answer.json()["woken"] == [their_run.id]
    # The payload is no object and the trigger names no input for it: that flow refuses.
    assert [r["flow_id"] for r in answer.json()["refused"]] == [their_flow]
    assert await _outputs(flow_worker, their_run.id) == {"payload": [1, 2]}
    for handle in (my_run, their_run):
        await assert_run_tells_the_truth(flow_worker.client, flow_worker.sessions, handle.id)


async def test_an_unknown_tenant_or_bad_signature_emits_nothing(flow_worker: FlowWorker) -> None:
    mine = await make_tenant(flow_worker, api_secret="mine")
    flow = await store_flow(flow_worker, mine, _ECHO, _on("ping"))
    async with serving_api(flow_worker) as api:

        async def ping_signed_over(message: bytes) -> Any:
            """`POST /events/ping` of `{}` by `mine`, its signature made over `message`."""
            return await api.http.post(
                f"{api.base}/events/ping",
                content=b"{}",
                headers={
                    "Content-Type": "application/json",
                    "X-Meta-Tenant": str(mine),
                    **signed("mine", message),
                },
            )

        answers = [
            await api.post(
                "/events/ping", {}, "mine", headers={"X-Meta-Tenant": str(uuid.uuid4())}
            ),
            await api.post("/events/ping", {}, "guess", headers={"X-Meta-Tenant": str(mine)}),
            await api.post("/events/ping", {}, None, headers={"X-Meta-Tenant": str(mine)}),
            await api.post("/events/ping", {}, "mine"),
            # Signed for another event name: a captured event cannot be re-aimed (F6).
            await ping_signed_over(event_message("pong", b"{}")),
            # Signed over the body alone, as a webhook is.
            await ping_signed_over(b"{}"),
        ]
    assert [a.status_code for a in answers] == [401] * 6
    assert len({a.text for a in answers}) == 1  # one answer: no tenant is told apart
    assert await runs_of_flow(flow_worker, flow) == 0


async def test_a_run_planted_under_an_event_runs_id_is_refused_not_answered(
    flow_worker: FlowWorker,
) -> None:
    """A run of another tenant under the id an event id would give is listed as refused;
    the ids are an HMAC keyed by the tenant's API secret, not a hash anyone can compute.
    """
    mine = await make_tenant(flow_worker, api_secret="mine")
    theirs = await make_tenant(flow_worker)
    flow = await store_flow(flow_worker, mine, _ECHO, _on("ping"))
    their_flow = await store_flow(flow_worker, theirs, _ECHO, [])
    parts = (str(mine), "ping", "evt-1", flow)
    plain = "event-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:48]
    keyed = keyed_run_id("event", "mine", *parts)
    assert plain != keyed
    for run_id in (plain, keyed):
        planted = FlowRunInput(workflow_id=their_flow, tenant_id=str(theirs), inputs={})
        handle = await start_run(flow_worker.client, flow_worker.task_queue, planted, run_id=run_id)
        flow_worker.started.append(handle.id)
    async with serving_api(flow_worker) as api:
        answer = await api.post(
            "/events/ping",
            {"n": 1},
            "mine",
            headers={"X-Meta-Tenant": str(mine), "Idempotency-Key": "evt-1"},
        )
    assert answer.status_code == 202, answer.text
    assert answer.json()["started"] == []
    assert [r["flow_id"] for r in answer.json()["refused"]] == [flow]


def _nested(depth: int) -> bytes:
    """`{"d": [[...1...]]}`, nested `depth` levels in all (written out: too deep to encode)."""
    return b'{"d": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


async def test_a_body_nested_too_deep_is_refused_before_anything_happens(
    flow_worker: FlowWorker,
) -> None:
    """A payload nested past the engine's depth is a 400 with a JSON error, and no waiting
    run is woken and no flow started first (F1: it used to wake runs, then answer 500).
    """
    mine = await make_tenant(flow_worker, api_secret="mine")
    flow = await store_flow(flow_worker, mine, _ECHO, _on("ping", payloadInput="p"))
    waiting = await flow_worker.start(_WAITS, {}, tenant_id=str(mine))
    await _listed_as_waiting(flow_worker, waiting)
    headers = {"X-Meta-Tenant": str(mine)}
    async with serving_api(flow_worker, max_body_bytes=65536) as api:
        for depth in (MAX_BODY_DEPTH + 1, 300, 980, 5000):
            answer = await api.post("/events/ping", _nested(depth), "mine", headers=headers)
            assert answer.status_code == 400, (depth, answer.text)
            assert "levels deep" in answer.json()["error"]
        status = await waiting.query(STATUS_QUERY)
        assert status["nodes"]["ping"]["status"] == "running"
        assert await runs_of_flow(flow_worker, flow) == 0
        # Just within the limit it is taken (the wrappers fit).
        answer = await api.post("/events/ping", _nested(MAX_BODY_DEPTH), "mine", headers=headers)
        assert answer.status_code == 202, answer.text
        assert answer.json()["woken"] == [waiting.id]
        flow_worker.started.extend(r["run_id"] for r in answer.json()["started"])
        assert len(answer.json()["started"]) == 1, answer.text


_TWO_WAITS = {
    "nodes": [
        node("start", "start"),
        node("first", "wait", {"event": "ping", "timeoutSeconds": 120}),
        node("second", "wait", {"event": "ping", "timeoutSeconds": 120}),
        node("end", "end", {"outputs": {"second": "{{ nodes.second.output.payload }}"}}),
    ],
    "edges": [edge("start", "first"), edge("first", "second"), edge("second", "end")],
}


async def test_a_redelivered_event_reaches_a_waiting_run_once(flow_worker: FlowWorker) -> None:
    """The same event id twice is one event for a run (F4): its second wait still waits,
    and a new event id is what ends it.
    """
    mine = await make_tenant(flow_worker, api_secret="mine")
    run = await flow_worker.start(_TWO_WAITS, {}, tenant_id=str(mine))
    await _listed_as_waiting(flow_worker, run)

    async def emit(event_id: str, n: int) -> list[str]:
        headers = {"X-Meta-Tenant": str(mine), "Idempotency-Key": event_id}
        answer = await api.post("/events/ping", {"n": n}, "mine", headers=headers)
        assert answer.status_code == 202, answer.text
        return list(answer.json()["woken"])

    async with serving_api(flow_worker) as api:
        assert await emit("evt-9", 1) == [run.id]
        deadline = time.monotonic() + 30
        while (await run.query(STATUS_QUERY))["nodes"].get("second", {}).get("status") != "running":
            assert time.monotonic() < deadline, "the second wait never started"
            await asyncio.sleep(0.2)
        await _listed_as_waiting(flow_worker, run)
        assert await emit("evt-9", 1) == [run.id]  # signalled, and dropped by Temporal
        await asyncio.sleep(2)
        status = await run.query(STATUS_QUERY)
        assert status["nodes"]["second"]["status"] == "running", status
        assert await emit("evt-10", 2) == [run.id]
    assert await _outputs(flow_worker, run.id) == {"second": {"n": 2}}
