"""`meta-agent worker --processes N`: N processes share the task queue, one that dies is
started again, and stopping the parent stops them all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.invariant import assert_run_tells_the_truth
from workers.client import start_run
from workflows.contract import FlowRunInput


def _children(pid: int) -> set[int]:
    """The live child processes of `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _supervisor(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", "--no-register", "--processes", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _pollers(temporal_env: WorkflowEnvironment, queue: str) -> set[int]:
    """The pids of the workers Temporal sees polling `queue` for workflow tasks."""
    answer = await temporal_env.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=temporal_env.client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return {int(p.identity.split("@")[0]) for p in answer.pollers}


async def _until_polling(temporal_env: WorkflowEnvironment, queue: str, pids: set[int]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if pids <= await _pollers(temporal_env, queue):
                return
        except RPCError as exc:  # a busy server drops a describe now and then: ask again
            if exc.status not in (RPCStatusCode.CANCELLED, RPCStatusCode.UNAVAILABLE):
                raise
        assert time.monotonic() < deadline, "the worker processes never polled"
        await asyncio.sleep(0.5)


async def _until(check: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_two_processes_share_the_queue_one_killed_is_restarted_and_all_stop(
    temporal_env: WorkflowEnvironment, database_url: str, flow_worker: FlowWorker
) -> None:
    queue = f"procs-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": queue,
    }
    parent = _supervisor(env)
    try:
        await _until(lambda: len(_children(parent.pid)) == 2)
        first = _children(parent.pid)
        await _until_polling(temporal_env, queue, first)
        flow = {
            "nodes": [node("start", "start"), node("nap", "wait", {"seconds": 0.5})],
            "edges": [edge("start", "nap")],
        }
        handles = [
            await start_run(temporal_env.client, queue, FlowRunInput(definition=flow))
            for _ in range(12)
        ]
        await asyncio.gather(*(h.result() for h in handles))
        identities = set()
        for handle in handles:
            await assert_run_tells_the_truth(temporal_env.client, flow_worker.sessions, handle.id)
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_task_started_event_attributes"):
                    identities.add(event.workflow_task_started_event_attributes.identity)
        assert len(identities) >= 2, identities  # both processes took tasks

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        await _until(lambda: len(_children(parent.pid) - {victim}) == 2)
        assert victim not in _children(parent.pid)
        await _until_polling(temporal_env, queue, _children(parent.pid))
        again = await start_run(temporal_env.client, queue, FlowRunInput(definition=flow))
        await asyncio.wait_for(again.result(), timeout=60)

        workers = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(90) == 0
        await _until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
