"""The llm agent against llama.cpp serving SmolLM2, and against a scripted OpenAI-style peer.

The real model gives the answers (loose asserts on text, exact on JSON its
schema constrains); the scripted peer gives the failures a model server
rarely produces on demand: 429, 400, 500, a hang, a schema-breaking answer.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import pytest

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply, Request
from tests.model_servers import ModelServer

pytestmark = pytest.mark.peers

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "integer"}, "total": {"type": "number"}},
    "required": ["order_id", "total"],
}


def llm_flow(*configs: dict[str, Any], **data: Any) -> dict[str, Any]:
    """The llm nodes one after the other (llama.cpp's server interrupts a stream for a newcomer)."""
    names = [f"llm{i}" for i in range(len(configs))]
    chain = ["start", *names, "done"]
    return {
        "nodes": [
            node("start", "start"),
            *(node(n, "llm", c, **data) for n, c in zip(names, configs, strict=True)),
            node("done", "end", {"outputs": {n: f"{{{{ nodes.{n}.output }}}}" for n in names}}),
        ],
        "edges": [edge(a, b) for a, b in itertools.pairwise(chain)],
    }


def completion(content: str, tokens: tuple[int, int] = (5, 7)) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": tokens[0],
            "completion_tokens": tokens[1],
            "total_tokens": sum(tokens),
        },
    }


async def test_a_summary_from_smollm2_with_usage_recorded_per_task_and_summed_per_run(
    flow_worker: FlowWorker, llm_server: ModelServer
) -> None:
    base = {
        "endpoint": llm_server.base_url,
        "model": "smollm2",
        "system": "You summarise text in one short sentence.",
        "prompt": "Summarise: {{ input.text }}",
        "temperature": 0,
        "seed": 7,
        "maxTokens": 40,
    }
    text = "The order 42 was shipped late because the warehouse in Lyon ran out of boxes."
    result, run_id = await flow_worker.run(llm_flow(base, {**base, "stream": True}), {"text": text})
    plain, streamed = result.outputs["llm0"], result.outputs["llm1"]
    assert plain["model"] == "smollm2"
    assert plain["finish_reason"] in ("stop", "length")
    assert len(plain["text"].split()) >= 2
    assert streamed["text"] == plain["text"]  # greedy decoding: the same words either way
    usage = plain["usage"]
    assert usage["prompt_tokens"] > 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert isinstance(streamed["first_token_ms"], int)

    rows = await flow_worker.task_rows(run_id)
    assert rows["llm0"]["model_used"] == "smollm2"
    assert rows["llm0"]["total_tokens"] == usage["total_tokens"]
    assert rows["llm0"]["first_token_time_ms"] == plain["first_token_ms"]
    run = await flow_worker.run_row(run_id)
    counted = [r["total_tokens"] for r in rows.values() if r["total_tokens"] is not None]
    assert run["total_tokens"] == sum(counted)
    assert run["prompt_tokens"] == sum(r["prompt_tokens"] or 0 for r in rows.values())


async def test_schema_constrained_json_from_smollm2_is_exact(
    flow_worker: FlowWorker, llm_server: ModelServer
) -> None:
    config = {
        "endpoint": llm_server.base_url,
        "model": "smollm2",
        "prompt": "Give the order id 42 and total 99.5 as JSON.",
        "temperature": 0,
        "seed": 1,
        "maxTokens": 60,
        "responseFormat": "json",
        "jsonSchema": ORDER_SCHEMA,
    }
    result, _ = await flow_worker.run(llm_flow(config))
    assert result.outputs["llm0"]["json"] == {"order_id": 42, "total": 99.5}


async def test_rate_limits_and_server_errors_are_retried_and_bad_requests_are_not(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    answers = iter(
        [
            Reply(429, {"error": {"message": "slow down"}}),
            Reply(503, {"error": {"message": "warming up"}}),
            Reply(200, completion("fine")),
        ]
    )
    http_peer.route("POST", "/flaky/v1/chat/completions", lambda _r: next(answers))
    http_peer.route(
        "POST",
        "/strict/v1/chat/completions",
        Reply(400, {"error": {"message": "max_tokens is too large"}}),
    )
    retry = {"maxAttempts": 4, "initialIntervalSeconds": 0.1}
    config = {"endpoint": f"{http_peer.base}/flaky/v1", "prompt": "hi"}
    result, run_id = await flow_worker.run(llm_flow(config, retry=retry))
    assert result.outputs["llm0"]["text"] == "fine"
    assert (await flow_worker.task_rows(run_id))["llm0"]["retry_count"] == 2

    strict = {"endpoint": f"{http_peer.base}/strict/v1", "prompt": "hi"}
    row = await flow_worker.failed_row(llm_flow(strict, retry=retry), "llm0")
    assert row["retry_count"] == 0
    assert "answered 400: max_tokens is too large" in row["error"]


async def test_json_that_breaks_its_schema_fails_clearly(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route(
        "POST", "/v1/chat/completions", Reply(200, completion('{"order_id": "forty-two"}'))
    )
    config = {
        "endpoint": f"{http_peer.base}/v1",
        "prompt": "order?",
        "responseFormat": "json",
        "jsonSchema": ORDER_SCHEMA,
    }
    row = await flow_worker.failed_row(llm_flow(config, retry={"maxAttempts": 3}), "llm0")
    assert row["retry_count"] == 0  # temperature 0: the same answer would come back
    assert "does not match config.jsonSchema" in row["error"]
    assert "order_id: 'forty-two' is not of type 'integer'" in row["error"]
    assert "'total' is a required property" in row["error"]


async def test_a_hanging_endpoint_hits_the_node_timeout(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("POST", "/v1/chat/completions", Reply(200, completion("late"), delay=15))
    config = {"endpoint": f"{http_peer.base}/v1", "prompt": "hi"}
    began = time.monotonic()
    row = await flow_worker.failed_row(llm_flow(config, timeoutSeconds=2), "llm0")
    assert time.monotonic() - began < 12
    assert row["status"] == "failed"
    assert "timed out" in row["error"].lower() or "timeout" in row["error"].lower()


async def test_cancelling_the_run_aborts_the_completion_and_the_key_is_never_stored(
    flow_worker: FlowWorker, http_peer: HttpPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"sk-{uuid.uuid4().hex}"
    monkeypatch.setenv("SECRET_LLM_KEY", key)
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(request: Request) -> Reply:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers.get("authorization") == f"Bearer {key}"
        loop.call_soon_threadsafe(arrived.set)
        return Reply(200, completion("too late"), delay=20)

    http_peer.route("POST", "/v1/chat/completions", slow)
    config = {
        "endpoint": f"{http_peer.base}/v1",
        "apiKey": "{{ secrets.LLM_KEY }}",
        "prompt": "hi",
    }
    handle = await flow_worker.start(llm_flow(config, timeoutSeconds=60))
    await asyncio.wait_for(arrived.wait(), 20)
    assert await flow_worker.cancel_and_wait(handle) < 10
    row = (await flow_worker.task_rows(handle.id))["llm0"]
    assert row["status"] == "cancelled"
    assert row["agent_config"]["apiKey"] == "{{ secrets.LLM_KEY }}"
    assert key not in str(row)
    history = await handle.fetch_history()
    assert key not in history.to_json()
