"""The webhook API against what an outside tester tried (h-attack14 FINDINGS): a planted
run under a delivery's id, bodies nested too deep or that stop arriving, sub-flow run ids,
and small surface slips. Each refusal is a JSON answer and starts nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import pytest

from tests.flows import FlowWorker
from tests.hooks_support import hooked_flow, make_tenant, runs_of_flow, serving_api, signed
from tests.test_webhooks import _FLOW, _result
from workers.api.ownership import keyed_run_id
from workers.client import start_run
from workflows.contract import FlowRunInput


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
