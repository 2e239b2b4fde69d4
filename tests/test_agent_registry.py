"""agentId and modelId: registry rows as the base of a node's config, and agent schemas enforced."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply
from tests.test_agent_llm import completion
from tests.test_agent_media import one_node_flow
from tests.test_cli import ameta_agent


async def _insert(flow_worker: FlowWorker, table: str, **values: Any) -> str:
    row_id = str(uuid.uuid4())
    values = {"id": row_id, **values}
    columns = ", ".join(values)
    params = ", ".join(
        f"CAST(:{k} AS jsonb)" if isinstance(v, dict | list) else f":{k}" for k, v in values.items()
    )
    async with flow_worker.sessions() as session, session.begin():
        await session.execute(
            text(f"INSERT INTO {table} ({columns}) VALUES ({params})"),
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in values.items()},
        )
    return row_id


async def test_an_agents_row_is_the_base_config_and_its_schemas_guard_input_and_output(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("POST", "/v1/chat/completions", Reply(200, completion("short")))
    agent_id = await _insert(
        flow_worker,
        "agents",
        name=f"summariser-{uuid.uuid4().hex[:6]}",
        type="llm",
        configuration={
            "endpoint": f"{http_peer.base}/v1",
            "model": "registry-model",
            "system": "Be brief.",
        },
        input_schema={
            "type": "object",
            "required": ["text"],
            "properties": {"text": {"type": "string"}},
        },
        output_schema={"type": "object", "required": ["text"]},
    )
    node_config = {"prompt": "Summarise {{ input.text }}", "input": {"text": "{{ input.text }}"}}
    definition = one_node_flow("n", "llm", node_config, agentId=agent_id)
    result, run_id = await flow_worker.run(definition, {"text": "a long story"})
    assert result.outputs["n"]["text"] == "short"
    sent = http_peer.requests[-1].json()
    assert sent["model"] == "registry-model"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    row = (await flow_worker.task_rows(run_id))["n"]
    assert row["agent_config"]["endpoint"] == f"{http_peer.base}/v1"  # the merged config

    # A node key overrides the registry's.
    await flow_worker.run(
        one_node_flow("n", "llm", {**node_config, "model": "mine"}, agentId=agent_id), {"text": "x"}
    )
    assert http_peer.requests[-1].json()["model"] == "mine"

    # Input that breaks the agent's input_schema: refused before the call, not retried.
    calls = len(http_peer.requests)
    retry = {"maxAttempts": 3, "initialIntervalSeconds": 0.1}
    run_id = await flow_worker.fail(
        one_node_flow("n", "llm", node_config, agentId=agent_id, retry=retry), {"text": 5}
    )
    row = (await flow_worker.task_rows(run_id))["n"]
    assert row["retry_count"] == 0
    assert (
        "input does not match its inputSchema: input['text']: 5 is not of type 'string'"
        in row["error"]
    )
    assert len(http_peer.requests) == calls

    # Output that breaks the output_schema (here: set on the node itself).
    strict = {"type": "object", "required": ["json"], "properties": {"json": {"type": "object"}}}
    definition = one_node_flow(
        "n", "llm", node_config, agentId=agent_id, outputSchema=strict, retry=retry
    )
    run_id = await flow_worker.fail(definition, {"text": "x"})
    row = (await flow_worker.task_rows(run_id))["n"]
    assert row["retry_count"] == 0
    assert "output['json']: None is not of type 'object'" in row["error"]


async def test_registry_references_that_do_not_fit_invalidate_the_flow_naming_the_node(
    flow_worker: FlowWorker,
) -> None:
    docker_agent = await _insert(
        flow_worker, "agents", name="boxer", type="docker", configuration={"image": "x"}
    )
    definition = {
        "nodes": [
            node("start", "start"),
            node("ghost", "llm", {"prompt": "x"}, agentId=str(uuid.uuid4())),
            node("wrong", "llm", {"prompt": "x"}, agentId=docker_agent),
            node("eye", "vision", {"image": "aGk=", "modelId": str(uuid.uuid4())}),
        ],
        "edges": [edge("start", "ghost"), edge("start", "wrong"), edge("start", "eye")],
    }
    run_id = await flow_worker.fail(definition)
    error = (await flow_worker.run_row(run_id))["error"]
    assert "node 'ghost': data.agentId" in error
    assert "no such row in agents" in error
    assert "node 'wrong': data.agentId" in error
    assert "agents row 'boxer' is for 'docker' nodes, this node is 'llm'" in error
    assert "node 'eye': config.modelId" in error
    assert "no such row in vision_models" in error


async def test_a_model_row_gives_endpoint_and_settings_to_a_vision_node(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("POST", "/v1/chat/completions", Reply(200, completion("a cat")))
    model_id = await _insert(
        flow_worker,
        "vision_models",
        name="ocr-chat",
        api_endpoint=f"{http_peer.base}/v1",
        settings={"temperature": 0, "maxTokens": 20},
    )
    config = {"modelId": model_id, "image": "https://example.invalid/cat.png", "prompt": "What?"}
    result, _ = await flow_worker.run(one_node_flow("n", "vision", config))
    assert result.outputs["n"]["text"] == "a cat"
    sent = http_peer.requests[-1].json()
    assert sent["model"] == "ocr-chat"
    assert sent["max_tokens"] == 20
    parts = sent["messages"][-1]["content"]
    assert parts[1]["image_url"]["url"] == "https://example.invalid/cat.png"


async def test_the_cli_validates_a_flow_with_its_registry_rows_merged_in(
    flow_worker: FlowWorker, database_url: str, tmp_path: Path
) -> None:
    agent_id = await _insert(
        flow_worker,
        "agents",
        name="boxed",
        type="docker",
        configuration={"image": "busybox", "network": "none"},
    )
    path = tmp_path / "boxed.json"
    await asyncio.to_thread(
        path.write_text,
        json.dumps(one_node_flow("n", "docker", {"command": "true"}, agentId=agent_id)),
    )
    with_db = await ameta_agent("flows", "validate", str(path), env={"DATABASE_URL": database_url})
    assert with_db.returncode == 0, with_db.stdout
    assert "valid" in with_db.stdout

    # Without a database the rows cannot be read: the node's own config lacks the image.
    no_db = {"DATABASE_URL": "", "META_AGENT_HOME": str(tmp_path / "nowhere")}
    alone = await ameta_agent("flows", "validate", str(path), env=no_db)
    assert alone.returncode == 1
    assert "agentId / modelId not resolved" in alone.stdout
    assert "node 'n': config: 'image' is a required property" in alone.stdout
