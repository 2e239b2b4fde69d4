"""PAYLOAD_KEYS: Temporal stores only sealed payloads; key holders read them, through the
codec server too; keys rotate without stranding a run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from google.protobuf import json_format
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from persistence.secret_keys import SecretKeys
from tests.flows import FlowWorker
from tests.hitl_support import decide, make_people, node, open_task, review_flow
from tests.invariant import assert_queue_tells_the_truth
from workers.client import FLOW_RUN
from workers.codec_server import codec_app
from workers.payload_codec import (
    ENCRYPTED_ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    PayloadDecryptError,
)
from workers.processes import free_port
from workers.settings import Settings
from workers.temporal_client import connect
from workers.worker import build_worker

K1 = SecretKeys.generate_entry("k1")
K2 = SecretKeys.generate_entry("k2")
MARKER = "card-4111-marker"
UI = "http://localhost:8233"


def _codec(keys: str) -> EncryptionCodec:
    return EncryptionCodec(SecretKeys.parse(keys))


async def _client(env: WorkflowEnvironment, keys: str | None) -> Client:
    codec = _codec(keys) if keys else None
    return await connect(env.client.service_client.config.target_host, "default", codec)


@asynccontextmanager
async def _worker(
    env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], queue: str, keys: str
) -> AsyncIterator[FlowWorker]:
    client = await _client(env, keys)
    settings = Settings(temporal_task_queue=queue, reconcile_interval_seconds=1)
    deps = Dependencies(sessions=sessions)
    try:
        async with build_worker(client, settings, deps):
            yield FlowWorker(client, queue, sessions)
    finally:
        await deps.aclose()


def _echo() -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("shape", "transform", {"output": {"card": "{{ input.card }}"}}),
            node("done", "end", {"outputs": {"card": "{{ nodes.shape.output.card }}"}}),
        ],
        "edges": [
            {"id": "a", "source": "start", "target": "shape"},
            {"id": "b", "source": "shape", "target": "done"},
        ],
    }


def _sealed_payloads(history: Any) -> list[Any]:
    found = []
    for event in history.events:
        for field in ("workflow_execution_started_event_attributes",):
            if event.HasField(field):
                found.extend(getattr(event, field).input.payloads)
        if event.HasField("workflow_execution_completed_event_attributes"):
            found.extend(event.workflow_execution_completed_event_attributes.result.payloads)
    return found


async def test_temporal_keeps_only_ciphertext_and_key_holders_read_the_run(
    temporal_env: WorkflowEnvironment, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    queue = f"codec-{uuid.uuid4().hex[:8]}"
    async with _worker(temporal_env, session_maker, queue, K1) as worker:
        result, run_id = await worker.run(_echo(), {"card": MARKER})
        assert result.outputs == {"card": MARKER}
        history = await worker.client.get_workflow_handle(run_id).fetch_history()
        # Not one byte of the value in what the server keeps (inputs, results, activities).
        assert MARKER.encode() not in history.to_json().encode()
        assert MARKER.encode() not in b"".join(e.SerializeToString() for e in history.events)
        sealed = _sealed_payloads(history)
        assert sealed
        assert all(p.metadata["encoding"] == ENCRYPTED_ENCODING for p in sealed)
        assert {p.metadata[KEY_ID_METADATA] for p in sealed} == {b"k1"}
        # Nor in a failure: an agent's error echoing its URL, a refused input's value.
        failing = {
            "nodes": [
                node("start", "start", inputSchema={"type": "object"}),
                node(
                    "call",
                    "api",
                    {"url": "http://127.0.0.1:1/lookup?card={{ input.card }}"},
                    retry={"maxAttempts": 1},
                ),
            ],
            "edges": [{"id": "a", "source": "start", "target": "call"}],
        }
        failed = await worker.fail(failing, {"card": MARKER})
        failed_history = await worker.client.get_workflow_handle(failed).fetch_history()
        assert MARKER.encode() not in failed_history.to_json().encode()
        row = (await worker.task_rows(failed))["call"]
        assert MARKER in row["error"]  # our own database keeps the plain words
        # A run started without the keys (plain `temporal workflow start` JSON) still runs.
        plain = await _client(temporal_env, None)
        handle = await plain.start_workflow(
            FLOW_RUN,
            {"definition": _echo(), "inputs": {"card": "plain"}},
            id=f"plain-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        worker.started.append(handle.id)
        assert (await worker.client.get_workflow_handle(handle.id).result())["outputs"] == {
            "card": "plain"
        }
        await assert_queue_tells_the_truth(worker.client, session_maker, queue, worker.started)


async def test_keys_rotate_while_a_run_is_parked(
    temporal_env: WorkflowEnvironment, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    queue = f"codec-{uuid.uuid4().hex[:8]}"
    people = await make_people(session_maker)
    async with _worker(temporal_env, session_maker, queue, K1) as worker:
        handle = await worker.start(review_flow(), {"what": MARKER}, tenant_id=people.tenant)
        (task,) = await open_task(handle)
    # The new key first, the old one still there to open what the run holds.
    async with _worker(temporal_env, session_maker, queue, f"{K2},{K1}") as worker:
        parked = worker.client.get_workflow_handle(handle.id)
        await decide(parked, task["id"], {"approved": True}, people.finance, "rotated")
        result = await parked.result()
        assert result["outputs"]["on_approved"]["comments"] == "rotated"
        history = await parked.fetch_history()
        await assert_queue_tells_the_truth(worker.client, session_maker, queue, [handle.id])
    assert _key_ids(json.loads(history.to_json())) == {b"k1", b"k2"}
    # Once k1 is dropped, what it sealed no longer opens: drop a key only after its runs end.
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads
    with pytest.raises(PayloadDecryptError):
        await _codec(K2).decode(list(started))


def _key_ids(value: Any) -> set[bytes]:
    """The key ids of every sealed payload in a history's JSON form."""
    if isinstance(value, list):
        return set().union(*(_key_ids(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found = set().union(*(_key_ids(v) for v in value.values())) if value else set()
    metadata = value.get("metadata")
    if isinstance(metadata, dict) and KEY_ID_METADATA in metadata:
        found.add(base64.b64decode(metadata[KEY_ID_METADATA]))
    return found


@asynccontextmanager
async def _codec_server(token: str | None = None) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        codec_app(_codec(K1), [UI], token), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def test_the_codec_server_decodes_for_the_ui_as_its_codec_endpoint_contract_says() -> None:
    sealed = await _codec(K1).encode(
        [
            json_format.ParseDict(
                {
                    "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                    "data": base64.b64encode(json.dumps({"card": MARKER}).encode()).decode(),
                },
                Payloads().payloads.add(),
            )
        ]
    )
    body = json_format.MessageToJson(Payloads(payloads=sealed))
    headers = {"Content-Type": "application/json", "X-Namespace": "default", "Origin": UI}
    async with _codec_server() as base, httpx.AsyncClient() as http:
        # The browser's preflight, then the call, as the UI makes them.
        preflight = await http.options(
            f"{base}/decode",
            headers={
                "Origin": UI,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == UI
        answer = await http.post(f"{base}/decode", content=body, headers=headers)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == UI
        (decoded,) = answer.json()["payloads"]
        assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
        assert json.loads(base64.b64decode(decoded["data"])) == {"card": MARKER}
        # ... and back: /encode seals what /decode opened.
        again = await http.post(f"{base}/encode", content=answer.content, headers=headers)
        (resealed,) = again.json()["payloads"]
        assert base64.b64decode(resealed["metadata"]["encoding"]) == ENCRYPTED_ENCODING
        # Another site's page may not call it; nor may a malformed body.
        foreign = await http.options(
            f"{base}/decode",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in foreign.headers
        # ... nor have the keys used behind the browser's back.
        stolen = await http.post(
            f"{base}/decode", content=body, headers={**headers, "Origin": "http://evil.example"}
        )
        assert stolen.status_code == 403
        bad = await http.post(f"{base}/decode", content=b"{not json", headers=headers)
        assert bad.status_code == 400
    async with _codec_server(token="s3cret") as base, httpx.AsyncClient() as http:
        refused = await http.post(f"{base}/decode", content=body, headers=headers)
        assert refused.status_code == 401
        allowed = await http.post(
            f"{base}/decode", content=body, headers={**headers, "Authorization": "Bearer s3cret"}
        )
        assert allowed.status_code == 200
