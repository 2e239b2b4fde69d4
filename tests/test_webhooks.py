"""`POST /hooks/ID` over real HTTP: a signed delivery starts exactly one run of the hook's
flow, every refusal starts nothing, a redelivery gets the same run, and `GET /runs/ID`
shows a run only to its own tenant (or hook).
"""

from __future__ import annotations

import asyncio
import hashlib
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
    signed,
)
from tests.invariant import assert_run_tells_the_truth
from tests.test_cli import _env, ameta_agent
from workers.api.ownership import keyed_run_id
from workers.client import start_run
from workflows.contract import FlowResult, FlowRunInput

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


async def test_a_run_planted_under_a_deliverys_id_is_never_answered_with(
    flow_worker: FlowWorker,
) -> None:
    """Another tenant that knows the hook id (and guesses the key) plants a run where the
    delivery's run would go: the delivery must not be answered 202 with that run. The run
    id is an HMAC keyed by the hook's secret, so it cannot be computed without it; and even
    a run found under the right id is refused (409) unless it is that hook's.
    """
    tenant = await make_tenant(flow_worker)
    theirs = await make_tenant(flow_worker)
    hook = await hooked_flow(flow_worker, tenant, _FLOW)
    their_flow = await hooked_flow(flow_worker, theirs, _FLOW)
    plain = "hook-" + hashlib.sha256(f"{hook.trigger_id}\npre-1".encode()).hexdigest()[:48]
    keyed = keyed_run_id("hook", hook.secret, hook.trigger_id, "pre-1")
    assert keyed != plain
    for run_id in (plain, keyed):  # the old, guessable id, and (worst case) the real one
        planted = FlowRunInput(
            workflow_id=their_flow.flow_id, tenant_id=str(theirs), inputs={"order_id": 0}
        )
        handle = await start_run(flow_worker.client, flow_worker.task_queue, planted, run_id=run_id)
        flow_worker.started.append(handle.id)
    path = f"/hooks/{hook.trigger_id}"
    async with serving_api(flow_worker) as api:
        answer = await api.post(
            path, {"order_id": 808}, hook.secret, headers={"Idempotency-Key": "pre-1"}
        )
        assert answer.status_code == 409, answer.text
        assert "error" in answer.json()
        # Another key starts the hook's own run, and its redelivery gets that run again.
        key = {"Idempotency-Key": "pre-2"}
        first = await api.post(path, {"order_id": 809}, hook.secret, headers=key)
        again = await api.post(path, {"order_id": 809}, hook.secret, headers=key)
        assert first.status_code == again.status_code == 202, (first.text, again.text)
        assert first.json()["run_id"] == again.json()["run_id"]
        assert await _result(api, first.json()["run_id"]) == {"order": 809}
    assert await runs_of_flow(flow_worker, hook.flow_id) == 1


async def test_a_body_nested_too_deep_is_a_400_and_starts_nothing(flow_worker: FlowWorker) -> None:
    """Nested past what a run may carry (F1: it used to be a 500 that invites a retry)."""
    tenant = await make_tenant(flow_worker)
    hook = await hooked_flow(flow_worker, tenant, _FLOW)
    async with serving_api(flow_worker, max_body_bytes=65536) as api:
        for depth in (260, 500, 950, 5000):
            body = b'{"order_id": 1, "d": ' + b"[" * depth + b"]" * depth + b"}"
            answer = await api.post(f"/hooks/{hook.trigger_id}", body, hook.secret)
            assert answer.status_code == 400, (depth, answer.text)
            assert "levels deep" in answer.json()["error"]
    assert await runs_of_flow(flow_worker, hook.flow_id) == 0


async def test_a_sub_flows_run_and_an_encoded_id_are_read(flow_worker: FlowWorker) -> None:
    """Sub-flow runs are `<parent>/<node>`: readable as such or with `%2F`, and an id that
    needs encoding (a space) too; the path is signed as sent (F8).
    """
    tenant = await make_tenant(flow_worker, api_secret="mine")
    as_tenant = {"X-Meta-Tenant": str(tenant)}
    parent = f"p-{uuid.uuid4().hex[:8]}"
    ids = [f"{parent}/sub", f"{parent} spaced"]
    for run_id in ids:
        handle = await flow_worker.start(_FLOW, {"order_id": 5}, run_id, tenant_id=str(tenant))
        await handle.result()
    async with serving_api(flow_worker) as api:
        for sent in (f"{parent}/sub", f"{parent}%2Fsub", f"{parent}%20spaced"):
            read = await api.get_run(sent, "mine", headers=as_tenant)
            assert read.status_code == 200, (sent, read.text)
            assert read.json()["run_id"] in ids
            assert read.json()["outputs"] == {"order": 5}
        # Signed over the decoded path while the encoded one was sent: refused.
        wrong = await api.get_run(
            f"{parent}%2Fsub", "mine", headers=as_tenant, path=f"/runs/{parent}/sub"
        )
        assert wrong.status_code == 401


async def test_a_body_that_stops_arriving_is_a_408_within_the_bound(
    flow_worker: FlowWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender that sends half a body and waits holds no request slot past the bound (F12);
    one that hangs up mid-body is no API failure in the log.
    """
    tenant = await make_tenant(flow_worker)
    hook = await hooked_flow(flow_worker, tenant, _FLOW)
    async with serving_api(flow_worker, body_seconds=1.0) as api:
        host, port = api.base.removeprefix("http://").split(":")
        head = (
            f"POST /hooks/{hook.trigger_id} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
        ).encode()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head)
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(4096), timeout=10)
        assert time.monotonic() - started < 5
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b'"error"' in answer
        writer.close()
        # Hanging up mid-body.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head)
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    assert await runs_of_flow(flow_worker, hook.flow_id) == 0


async def test_small_api_surface_fixes(flow_worker: FlowWorker) -> None:
    """F11: a trailing slash is a JSON 404 (no bodiless redirect), a signature in capitals
    is the same signature, and a UTF-8 Idempotency-Key is stored as sent.
    """
    tenant = await make_tenant(flow_worker)
    hook = await hooked_flow(flow_worker, tenant, _FLOW)
    async with serving_api(flow_worker) as api:
        slash = await api.post(f"/hooks/{hook.trigger_id}/", {"order_id": 1}, hook.secret)
        assert slash.status_code == 404
        assert "error" in slash.json()
        raw = b'{"order_id": 2}'
        sig = signed(hook.secret, raw)
        headers = {
            b"X-Meta-Timestamp": sig["X-Meta-Timestamp"].encode(),
            b"X-Meta-Signature": sig["X-Meta-Signature"].upper().encode(),
            b"Idempotency-Key": "ключ".encode(),
            b"Content-Type": b"application/json",
        }
        answer = await api.http.post(
            f"{api.base}/hooks/{hook.trigger_id}", content=raw, headers=headers
        )
        assert answer.status_code == 202, answer.text
        flow_worker.started.append(answer.json()["run_id"])
        await _result(api, answer.json()["run_id"])
        row = await flow_worker.run_row(answer.json()["run_id"])
        assert row["trigger_metadata"]["idempotency_key"] == "ключ"
        tab = await api.post(
            f"/hooks/{hook.trigger_id}", raw, hook.secret, headers={"Idempotency-Key": "a\tb"}
        )
        assert tab.status_code == 400
