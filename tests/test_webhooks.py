"""`POST /hooks/ID` over real HTTP: a signed delivery starts exactly one run of the hook's
flow, every refusal starts nothing, a redelivery gets the same run, and `GET /runs/ID`
shows a run only to its own tenant (or hook).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hooks_support import (
    Api,
    hooked_flow,
    make_tenant,
    queue_runs,
    runs_of_flow,
    serving_api,
)
from tests.invariant import assert_run_tells_the_truth
from tests.test_cli import _env, ameta_agent
from workflows.contract import FlowResult

_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "integer"}},
    "required": ["order_id"],
}
_FLOW = {
    "nodes": [
        node("start", "start", inputSchema=_SCHEMA),
        node("end", "end", {"outputs": {"order": "{{ input.order_id }}"}}),
    ],
    "edges": [edge("start", "end")],
}


async def _result(api: Api, run_id: str) -> dict[str, Any]:
    handle = api.worker.client.get_workflow_handle(run_id, result_type=FlowResult)
    return (await handle.result()).outputs


async def test_a_signed_delivery_starts_one_run_with_the_body_as_inputs(
    flow_worker: FlowWorker,
) -> None:
    tenant = await make_tenant(flow_worker)
    hook = await hooked_flow(flow_worker, tenant, _FLOW)
    async with serving_api(flow_worker) as api:
        answer = await api.post(f"/hooks/{hook.trigger_id}", {"order_id": 7}, hook.secret)
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        assert answer.json()["status_url"] == f"/runs/{run_id}"
        assert await _result(api, run_id) == {"order": 7}
        await assert_run_tells_the_truth(flow_worker.client, flow_worker.sessions, run_id)
        row = await flow_worker.run_row(run_id)
        assert row["trigger_type"] == "webhook"
        assert row["inputs"] == {"order_id": 7}
        assert str(row["workflow_id"]) == hook.flow_id
        assert str(row["tenant_id"]) == str(tenant)
        meta = row["trigger_metadata"]
        assert meta["trigger_id"] == hook.trigger_id
        assert meta["idempotency_key"] is None
        assert abs(time.time() - _epoch(meta["received_at"])) < 120
        assert hook.secret not in str(meta)
        assert await runs_of_flow(flow_worker, hook.flow_id) == 1

        # Its sender reads it, signing with the hook's secret.
        read = await api.get_run(run_id, hook.secret, headers={"X-Meta-Hook": hook.trigger_id})
        assert read.status_code == 200, read.text
        assert read.json()["status"] == "completed"
        assert read.json()["outputs"] == {"order": 7}
        assert read.json()["trigger_type"] == "webhook"


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


async def test_every_refusal_starts_nothing(flow_worker: FlowWorker) -> None:
    tenant = await make_tenant(flow_worker)
    hook = await hooked_flow(flow_worker, tenant, _FLOW, config={"toleranceSeconds": 60})
    path = f"/hooks/{hook.trigger_id}"
    good = {"order_id": 7}
    async with serving_api(flow_worker, max_body_bytes=4096) as api:
        cases = [
            (401, await api.post(path, good, None)),
            (401, await api.post(path, good, "not-the-secret")),
            (401, await api.post(path, good, hook.secret, at=int(time.time()) - 61)),
            (401, await api.post(path, good, hook.secret, at=int(time.time()) + 61)),
            (400, await api.post(path, good, hook.secret, headers={"X-Meta-Timestamp": "soon"})),
            (413, await api.post(path, {"pad": "x" * 5000}, hook.secret)),
            (415, await api.post(path, good, hook.secret, content_type="text/plain")),
            (400, await api.post(path, b"{not json", hook.secret)),
            (400, await api.post(path, [1, 2], hook.secret)),
            (400, await api.post(path, b'{"order_id": NaN}', hook.secret)),
            (422, await api.post(path, {"order_id": "seven"}, hook.secret)),
            (422, await api.post(path, {}, hook.secret)),
        ]

        # A body streamed without Content-Length is cut off at the limit too.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1000

        streamed = await api.http.post(
            f"{api.base}{path}", content=chunks(), headers={"Content-Type": "application/json"}
        )
        cases.append((413, streamed))
        for status, answer in cases:
            assert answer.status_code == status, (status, answer.text)
            assert isinstance(answer.json()["error"], str), answer.text
        problems = cases[-3][1].json()["problems"]
        assert any("order_id" in p for p in problems), problems
        # The body that was signed, with another body sent: refused.
        from tests.hooks_support import signed

        headers = {"Content-Type": "application/json", **signed(hook.secret, b'{"order_id": 7}')}
        swapped = await api.http.post(
            f"{api.base}{path}", content=b'{"order_id": 8}', headers=headers
        )
        assert swapped.status_code == 401
    await asyncio.sleep(0.5)  # visibility
    assert await queue_runs(flow_worker) == []
    assert await runs_of_flow(flow_worker, hook.flow_id) == 0


async def test_the_same_idempotency_key_twice_gives_one_run(flow_worker: FlowWorker) -> None:
    tenant = await make_tenant(flow_worker)
    hook = await hooked_flow(flow_worker, tenant, _FLOW)
    path = f"/hooks/{hook.trigger_id}"
    async with serving_api(flow_worker) as api:
        key = {"Idempotency-Key": "delivery-1"}
        first = await api.post(path, {"order_id": 1}, hook.secret, headers=key)
        again = await asyncio.gather(
            *(api.post(path, {"order_id": 1}, hook.secret, headers=key) for _ in range(3))
        )
        assert first.status_code == 202
        assert {a.status_code for a in again} == {202}
        assert {a.json()["run_id"] for a in again} == {first.json()["run_id"]}
        await _result(api, first.json()["run_id"])
        # Once it has ended, still the same run.
        late = await api.post(path, {"order_id": 1}, hook.secret, headers=key)
        assert late.json()["run_id"] == first.json()["run_id"]
        row = await flow_worker.run_row(first.json()["run_id"])
        assert row["trigger_metadata"]["idempotency_key"] == "delivery-1"
        # Another key, and no key at all, each start a run of their own.
        other = await api.post(path, {"order_id": 1}, hook.secret, headers={"Idempotency-Key": "2"})
        bare = [await api.post(path, {"order_id": 1}, hook.secret) for _ in range(2)]
        ids = {other.json()["run_id"], *(b.json()["run_id"] for b in bare)}
        assert len(ids) == 3
        assert first.json()["run_id"] not in ids
        for run_id in ids:
            await _result(api, run_id)
    assert await runs_of_flow(flow_worker, hook.flow_id) == 4


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("UPDATE workflows SET is_paused = true WHERE id = :id", "is paused: resume it"),
        ("UPDATE workflows SET is_active = false WHERE id = :id", "is inactive"),
        ("UPDATE workflows SET status = 'archived' WHERE id = :id", "is archived"),
    ],
    ids=["paused", "inactive", "archived"],
)
async def test_a_flow_that_may_not_run_refuses_its_hook(
    flow_worker: FlowWorker, change: str, words: str
) -> None:
    tenant = await make_tenant(flow_worker)
    hook = await hooked_flow(flow_worker, tenant, _FLOW, change)
    async with serving_api(flow_worker) as api:
        answer = await api.post(f"/hooks/{hook.trigger_id}", {"order_id": 1}, hook.secret)
    assert answer.status_code == 409, answer.text
    assert words in answer.json()["error"]
    assert await runs_of_flow(flow_worker, hook.flow_id) == 0
    assert await queue_runs(flow_worker) == []


async def test_an_invalid_flow_is_refused_before_it_starts(flow_worker: FlowWorker) -> None:
    tenant = await make_tenant(flow_worker)
    broken = {"nodes": [node("start", "start"), node("x", "mystery")], "edges": []}
    hook = await hooked_flow(flow_worker, tenant, broken)
    async with serving_api(flow_worker) as api:
        answer = await api.post(f"/hooks/{hook.trigger_id}", {}, hook.secret)
    assert answer.status_code == 422, answer.text
    assert any("mystery" in p for p in answer.json()["problems"])
    assert await runs_of_flow(flow_worker, hook.flow_id) == 0


async def test_unknown_short_and_ambiguous_ids_are_not_found(flow_worker: FlowWorker) -> None:
    mine, theirs = await make_tenant(flow_worker), await make_tenant(flow_worker)
    shared_id = "wh_" + uuid.uuid4().hex
    a = await hooked_flow(flow_worker, mine, _FLOW, trigger_id=shared_id)
    # Another tenant copies the id onto its own flow: neither flow starts, no delivery
    # reaches the copier, and the operator is told (logged).
    b = await hooked_flow(flow_worker, theirs, _FLOW, trigger_id=shared_id)
    short = await hooked_flow(flow_worker, mine, _FLOW, trigger_id="hook1")
    async with serving_api(flow_worker) as api:
        for secret in (a.secret, b.secret):
            answer = await api.post(f"/hooks/{shared_id}", {"order_id": 1}, secret)
            assert answer.status_code == 404, answer.text
            assert answer.json() == {"error": "no such hook"}
        unknown = await api.post(f"/hooks/wh_{uuid.uuid4().hex}", {"order_id": 1}, a.secret)
        assert unknown.status_code == 404
        guessable = await api.post("/hooks/hook1", {"order_id": 1}, short.secret)
        assert guessable.status_code == 404
        wrong_method = await api.http.get(f"{api.base}/hooks/{shared_id}")
        assert wrong_method.status_code == 405
        assert "error" in wrong_method.json()
    for flow in (a, b, short):
        assert await runs_of_flow(flow_worker, flow.flow_id) == 0


async def test_a_run_is_read_only_by_its_tenant_or_its_hook(flow_worker: FlowWorker) -> None:
    mine = await make_tenant(flow_worker, api_secret="mine-api-secret")
    theirs = await make_tenant(flow_worker, api_secret="their-api-secret")
    hook = await hooked_flow(flow_worker, mine, _FLOW)
    other_hook = await hooked_flow(flow_worker, mine, _FLOW)
    async with serving_api(flow_worker) as api:
        answer = await api.post(f"/hooks/{hook.trigger_id}", {"order_id": 3}, hook.secret)
        run_id = answer.json()["run_id"]
        await _result(api, run_id)

        as_tenant = {"X-Meta-Tenant": str(mine)}
        ok = await api.get_run(run_id, "mine-api-secret", headers=as_tenant)
        assert ok.status_code == 200, ok.text
        assert ok.json()["status"] == "completed"
        # Another tenant, with its own valid secret: the run does not exist for it.
        foreign = await api.get_run(
            run_id, "their-api-secret", headers={"X-Meta-Tenant": str(theirs)}
        )
        assert foreign.status_code == 404
        missing = await api.get_run("hook-nothing", "mine-api-secret", headers=as_tenant)
        assert foreign.json() == missing.json()
        # Another hook of the same tenant reads only the runs it started.
        by_other_hook = await api.get_run(
            run_id, other_hook.secret, headers={"X-Meta-Hook": other_hook.trigger_id}
        )
        assert by_other_hook.status_code == 404
        # Claiming another tenant, a bad secret, a signature of another path, none at all.
        spoofed = await api.get_run(run_id, "their-api-secret", headers=as_tenant)
        assert spoofed.status_code == 401
        elsewhere = await api.get_run(
            run_id, "mine-api-secret", headers=as_tenant, path="/runs/other"
        )
        assert elsewhere.status_code == 401
        unsigned = await api.http.get(f"{api.base}/runs/{run_id}", headers=as_tenant)
        assert unsigned.status_code == 401
        nobody = await api.get_run(run_id, "x", headers={"X-Meta-Tenant": str(uuid.uuid4())})
        assert nobody.status_code == 401
        assert nobody.json() == spoofed.json()


async def test_hooks_add_makes_a_working_hook(
    database_url: str, temporal_env: WorkflowEnvironment, flow_worker: FlowWorker
) -> None:
    tenant = await make_tenant(flow_worker)
    from tests.hooks_support import store_flow

    flow_id = await store_flow(flow_worker, tenant, _FLOW, [])
    env = _env(database_url, temporal_env, flow_worker.task_queue)
    out = await ameta_agent("hooks", "add", "--flow", flow_id, "--tolerance", "120", env=env)
    assert out.returncode == 0, out.stderr
    trigger_id = re.search(r"/hooks/(\S+)", out.stdout).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret  (\S+)", out.stdout).group(1)  # type: ignore[union-attr]
    assert len(trigger_id) >= 22
    assert "{API}" not in out.stdout  # the API's URL, not a placeholder (F11)
    assert "POST http://" in out.stdout
    async with serving_api(flow_worker) as api:
        answer = await api.post(f"/hooks/{trigger_id}", {"order_id": 5}, secret)
        assert answer.status_code == 202, answer.text
        assert await _result(api, answer.json()["run_id"]) == {"order": 5}
        stale = await api.post(
            f"/hooks/{trigger_id}", {"order_id": 5}, secret, at=int(time.time()) - 200
        )
        assert stale.status_code == 401  # its own tolerance: 120 s
