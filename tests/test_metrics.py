"""The worker's Prometheus endpoint (METRICS_PORT) after runs: the SDK's metrics and ours.

The worker here is built as `meta-agent worker` builds it with METRICS_PORT set:
its client's Temporal runtime serves Prometheus, and the engine's own metrics are
recorded through the SDK's meters, so they are served there too.
"""

from __future__ import annotations

import contextlib
import re
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from flow_language.drawing import edge, node
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import People, decide, open_task, review_flow, wait_for
from tests.invariant import assert_queue_tells_the_truth
from workers.client import start_run
from workers.json_converter import DATA_CONVERTER
from workers.processes import free_port
from workers.settings import Settings
from workers.telemetry import metrics_runtime
from workers.worker import build_worker
from workflows.contract import FlowRunInput


def _samples(text: str, name: str) -> dict[str, float]:
    """`name`'s samples, by their label text."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


async def test_the_metrics_endpoint_counts_runs_by_flow_and_status_and_times_nodes_by_type(
    temporal_env: WorkflowEnvironment,
    session_maker: async_sessionmaker[AsyncSession],
    people: People,
) -> None:
    port = free_port()
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        data_converter=DATA_CONVERTER,
        runtime=metrics_runtime("127.0.0.1", port),
    )
    name = f"metered-{uuid.uuid4().hex[:6]}"
    definition = {
        "nodes": [
            node("start", "start"),
            node(
                "pick",
                "condition",
                {"branches": [{"handle": "big", "when": "{{ input.n > 1 }}"}], "default": "small"},
            ),
            node("big", "transform", {"output": "{{ 1 / (input.n - 2) }}"}),
            node("small", "transform", {"output": "small"}),
        ],
        "edges": [
            edge("start", "pick"),
            edge("pick", "big", "big"),
            edge("pick", "small", "small"),
        ],
    }
    async with session_maker() as s, s.begin():
        stored = await queries.save_workflow_version(s, name=name, definition=definition)
    queue = f"metered-{uuid.uuid4().hex[:8]}"
    deps = Dependencies(sessions=session_maker)
    settings = Settings(temporal_task_queue=queue, reconcile_interval_seconds=1)
    async with build_worker(client, settings, deps):
        worker = FlowWorker(client, queue, session_maker)
        for n in (0, 0, 2):  # n = 2 divides by zero: node `big` fails the run
            params = FlowRunInput(workflow_id=str(stored.workflow_id), inputs={"n": n})
            handle = await start_run(client, queue, params, run_id=f"m-{uuid.uuid4().hex[:10]}")
            worker.started.append(handle.id)
            with contextlib.suppress(WorkflowFailureError):
                await handle.result()
        # A run parked on a review: the reconciler's next sweep counts it for its tenant.
        parked = await worker.start(review_flow(), {"what": "x"}, tenant_id=people.tenant)
        (task,) = await open_task(parked)

        async def scrape() -> str:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{port}/metrics")).text

        async def counted_open() -> str | None:
            text = await scrape()
            gauge = _samples(text, "meta_agent_hitl_open_tasks")
            mine = [v for k, v in gauge.items() if f'tenant="{people.tenant}"' in k]
            return text if mine == [1] else None

        text = await wait_for(counted_open)
        assert text, "the open review was not counted"
        await decide(parked, task["id"], {"approved": True}, people.finance)
        await parked.result()
        await assert_queue_tells_the_truth(client, session_maker, queue, worker.started)
    await deps.aclose()

    started = _samples(text, "meta_agent_runs_started_total")
    ended = _samples(text, "meta_agent_runs_ended_total")
    assert [v for k, v in started.items() if f'flow="{name}"' in k] == [3]
    mine = {k: v for k, v in ended.items() if f'flow="{name}"' in k}
    assert sorted((('status="completed"' in k, v) for k, v in mine.items())) == [
        (False, 1),
        (True, 2),
    ]
    counts = _samples(text, "meta_agent_node_duration_count")
    by_type = {
        (re.search(r'node_type="(\w+)"', k).group(1), re.search(r'status="(\w+)"', k).group(1)): v  # type: ignore[union-attr]
        for k, v in counts.items()
        if f'task_queue="{queue}"' in k
    }
    assert by_type == {
        ("start", "completed"): 4,  # the parked review's start too
        ("condition", "completed"): 3,
        ("transform", "completed"): 2,
        ("transform", "failed"): 1,
    }
    # The Temporal SDK's own metrics are served beside ours.
    assert _samples(text, "temporal_workflow_completed_total")
