"""api → llm (summarise) → docker (post-process) → hitl approval → audio (speak), all real.

The order API is a local HTTP server, the summary comes from SmolLM2 on
llama.cpp, the post-processing runs in a busybox container on the suite's
dockerd, a reviewer approves through the Temporal update, and espeak-ng reads
the outcome aloud; Whisper then checks the speech says what the flow meant.
"""

from __future__ import annotations

from typing import Any

import pytest

from flow_language.drawing import edge, node
from tests.docker_daemon import TEST_IMAGE, DockerDaemon
from tests.flows import FlowWorker
from tests.hitl_support import People, decide, open_task
from tests.http_peer import HttpPeer, Reply
from tests.model_servers import ModelServer
from tests.test_agent_media import one_node_flow

pytestmark = pytest.mark.peers

POST_PROCESS = (
    'read -r line; total=$(echo "$line" | sed -E \'s/.*"total": ?([0-9]+).*/\\1/\'); '
    'if [ "$total" -gt 1000 ]; then p=high; else p=normal; fi; '
    'echo "{\\"total\\": $total, \\"priority\\": \\"$p\\", \\"input_bytes\\": ${#line}}"'
)


def order_review_flow(orders: str, llm: str) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start", inputSchema={"type": "object", "required": ["order_id"]}),
            node("fetch", "api", {"url": f"{orders}/orders/{{{{ input.order_id }}}}"}),
            node(
                "summarise",
                "llm",
                {
                    "endpoint": llm,
                    "model": "smollm2",
                    "system": "Summarise the order in one short sentence.",
                    "prompt": "{{ nodes.fetch.output.json | tojson }}",
                    "temperature": 0,
                    "seed": 3,
                    "maxTokens": 30,
                },
                timeoutSeconds=120,
            ),
            node(
                "post",
                "docker",
                {
                    "image": TEST_IMAGE,
                    "command": ["sh", "-c", POST_PROCESS],
                    "input": {
                        "summary": "{{ nodes.summarise.output.text }}",
                        "total": "{{ nodes.fetch.output.json.total }}",
                    },
                },
                timeoutSeconds=60,
            ),
            node(
                "approve",
                "hitl",
                {
                    "title": "Approve order {{ input.order_id }} "
                    "({{ nodes.post.output.json.priority }} priority)",
                    "description": "{{ nodes.summarise.output.text }}",
                    "decisionType": "approval",
                    "assigneeRole": "finance",
                },
            ),
            node(
                "speak",
                "audio",
                {"task": "speak", "text": "Order {{ input.order_id }} is approved."},
            ),
            node(
                "done",
                "end",
                {
                    "outputs": {
                        "priority": "{{ nodes.post.output.json.priority }}",
                        "summary": "{{ nodes.summarise.output.text }}",
                        "speech": "{{ nodes.speak.output }}",
                    }
                },
            ),
        ],
        "edges": [
            edge("start", "fetch"),
            edge("fetch", "summarise"),
            edge("summarise", "post"),
            edge("post", "approve"),
            edge("approve", "speak", "approved"),
            edge("speak", "done"),
        ],
    }


async def test_an_order_is_fetched_summarised_post_processed_approved_and_spoken(
    flow_worker: FlowWorker,
    http_peer: HttpPeer,
    llm_server: ModelServer,
    whisper_server: ModelServer,
    docker_daemon: DockerDaemon,
    people: People,
) -> None:
    order = {"id": 42, "customer": "Ada Lovelace", "items": ["loom", "cards"], "total": 1520}
    http_peer.route("GET", "/orders/42", Reply(200, order))
    definition = order_review_flow(http_peer.base, llm_server.base_url)
    handle = await flow_worker.start(definition, {"order_id": 42}, tenant_id=people.tenant)

    [task] = await open_task(handle)
    assert task["title"] == "Approve order 42 (high priority)"
    await decide(handle, task["id"], {"approved": True}, people.finance, "fine")
    result = await handle.result()

    assert result.outputs["priority"] == "high"
    assert len(result.outputs["summary"]) > 5
    speech = result.outputs["speech"]
    assert speech["format"] == "wav"
    assert speech["duration_seconds"] > 1
    rows = await flow_worker.task_rows(handle.id)
    assert {rows[n]["status"] for n in ("fetch", "summarise", "post", "approve", "speak")} == {
        "completed"
    }
    assert rows["post"]["outputs"]["json"]["input_bytes"] > 10
    assert rows["summarise"]["total_tokens"] > 0
    run = await flow_worker.run_row(handle.id)
    assert run["status"] == "completed"
    assert run["total_tokens"] == rows["summarise"]["total_tokens"]
    assert docker_daemon.managed_containers() == []

    # The speech says what the flow meant: Whisper hears it back.
    hear = one_node_flow(
        "hear",
        "audio",
        {
            "task": "transcribe",
            "endpoint": whisper_server.base_url,
            "audio": speech["audio_base64"],
            "language": "en",
        },
    )
    heard, _ = await flow_worker.run(hear)
    words = heard.outputs["hear"]["text"].lower()
    assert "approved" in words
    assert "42" in words or "forty" in words
