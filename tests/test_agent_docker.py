"""The docker agent against a real dockerd (started by the suite) and the busybox test image."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.docker_agent import MANAGED_LABEL, PID_LABEL, sweep_orphans
from flow_language.drawing import edge, node
from tests.docker_daemon import TEST_IMAGE, DockerDaemon
from tests.docker_support import docker_flow, until
from tests.flows import FlowWorker
from tests.invariant import assert_run_tells_the_truth
from workers.client import start_run
from workflows.contract import FlowRunInput

pytestmark = pytest.mark.peers


async def test_input_arrives_on_stdin_and_in_flow_input_and_the_last_json_line_is_the_output(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon
) -> None:
    script = (
        'read -r line; echo "not json: $line"; echo oops >&2; '
        'echo "{\\"stdin\\": $line, \\"env\\": $FLOW_INPUT, \\"wd\\": \\"$(pwd)\\", '
        '\\"x\\": \\"$GREETING\\", \\"nets\\": \\"$(ls /sys/class/net | tr -d "\\n")\\"}"; '
        "echo trailing-text"
    )
    definition = docker_flow(
        {
            "command": ["sh", "-c", script],
            "input": {"n": "{{ input.n }}", "who": "{{ input.who }}"},
            "env": {"GREETING": "hello {{ input.who }}"},
            "workdir": "/work",
            "memLimit": "32m",
            "cpus": 0.5,
            "pidsLimit": 32,
        }
    )
    result, run_id = await flow_worker.run(definition, {"n": 3, "who": "ada"})
    box = result.outputs["box"]
    assert box["exit_code"] == 0
    assert box["json"] == {
        "stdin": {"n": 3, "who": "ada"},
        "env": {"n": 3, "who": "ada"},
        "wd": "/work",
        "x": "hello ada",
        "nets": "lo",  # network "none" by default: loopback only
    }
    assert box["stdout"].startswith('not json: {"n": 3, "who": "ada"}\n')
    assert box["stderr"] == "oops\n"
    row = (await flow_worker.task_rows(run_id))["box"]
    assert row["status"] == "completed"
    assert row["agent_type"] == "docker"
    assert row["inputs"]["input"] == {"n": 3, "who": "ada"}
    assert row["outputs"]["json"]["x"] == "hello ada"
    assert row["retry_count"] == 0
    assert docker_daemon.managed_containers() == []


async def test_a_nonzero_exit_fails_without_retry_unless_listed_in_retry_on_exit_codes(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon
) -> None:
    retry = {"maxAttempts": 3, "initialIntervalSeconds": 0.1}
    command = ["sh", "-c", "echo partial; echo broken pipe >&2; exit 3"]
    run_id = await flow_worker.fail(docker_flow({"command": command}, retry=retry))
    row = (await flow_worker.task_rows(run_id))["box"]
    assert row["status"] == "failed"
    assert row["retry_count"] == 0
    assert "exited with code 3" in row["error"]
    assert "broken pipe" in row["error"]

    listed = docker_flow({"command": command, "retryOnExitCodes": [3]}, retry=retry)
    run_id = await flow_worker.fail(listed)
    row = (await flow_worker.task_rows(run_id))["box"]
    assert row["status"] == "failed"
    assert row["retry_count"] == 2
    assert docker_daemon.managed_containers() == []


async def test_a_container_over_its_memory_limit_is_reported_as_out_of_memory(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon
) -> None:
    hog = "head -c 40000000 /dev/zero | tail -c 30000000 > /dev/null"
    definition = docker_flow({"command": ["sh", "-c", hog], "memLimit": "8m"})
    run_id = await flow_worker.fail(definition)
    row = (await flow_worker.task_rows(run_id))["box"]
    assert "exited with code 137" in row["error"]
    assert "out of memory" in row["error"]


async def test_the_node_timeout_kills_and_removes_the_container(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon
) -> None:
    began = time.monotonic()
    run_id = await flow_worker.fail(docker_flow({"command": ["sleep", "60"]}, timeoutSeconds=4))
    assert time.monotonic() - began < 30
    row = (await flow_worker.task_rows(run_id))["box"]
    assert row["status"] == "failed"
    assert "timeoutSeconds" in row["error"]
    assert docker_daemon.managed_containers() == []


async def test_cancelling_the_run_kills_the_running_container(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon
) -> None:
    handle = await flow_worker.start(docker_flow({"command": ["sleep", "120"]}, timeoutSeconds=300))
    await until(lambda: docker_daemon.managed_containers() != [])
    began = time.monotonic()
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    await until(lambda: docker_daemon.managed_containers() == [], within=15)
    assert time.monotonic() - began < 15
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert (await flow_worker.task_rows(handle.id))["box"]["status"] == "cancelled"


async def test_a_secret_in_env_never_reaches_history_or_postgres(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("SECRET_BOX_TOKEN", token)
    definition = docker_flow(
        {
            "command": ["sh", "-c", 'echo "{\\"seen\\": \\"$TOKEN\\"}"'],
            "env": {"TOKEN": "{{ secrets.BOX_TOKEN }}"},
        }
    )
    result, run_id = await flow_worker.run(definition)
    assert result.outputs["box"]["json"] == {"seen": "***"}
    row = (await flow_worker.task_rows(run_id))["box"]
    assert token not in str(row)
    history = await flow_worker.client.get_workflow_handle(run_id).fetch_history()
    assert token not in history.to_json()


async def test_pull_policy_never_refuses_a_missing_image_without_retrying(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon
) -> None:
    definition = docker_flow(
        {"image": "meta-agent/busybox:not-here", "pullPolicy": "never"}, retry={"maxAttempts": 3}
    )
    run_id = await flow_worker.fail(definition)
    row = (await flow_worker.task_rows(run_id))["box"]
    assert row["retry_count"] == 0
    assert "pullPolicy is 'never'" in row["error"]


def test_the_orphan_sweep_removes_containers_of_dead_workers_only(
    docker_daemon: DockerDaemon,
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with docker_daemon.client() as client:
        mine = f"{os.getpid()}:{_start_time(os.getpid())}"
        owners = {"orphan": f"{dead.pid}:1", "recycled-pid": f"{os.getpid()}:0", "alive": mine}
        for name, owner in owners.items():
            client.containers.create(
                TEST_IMAGE,
                ["sleep", "60"],
                name=f"sweep-{name}-{uuid.uuid4().hex[:6]}",
                labels={
                    MANAGED_LABEL: "true",
                    PID_LABEL: owner,
                    "dev.meta-agent.host": os.uname().nodename,
                },
            ).start()
        try:
            removed = sweep_orphans(client)
            assert sorted(n.split("-")[1] for n in removed) == ["orphan", "recycled"]
            assert [n.split("-")[1] for n in docker_daemon.managed_containers()] == ["alive"]
        finally:
            for container in client.containers.list(all=True, filters={"name": "sweep-"}):
                container.remove(force=True)


def _start_time(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[-1].split()[19]


async def test_a_sigkilled_worker_leaves_no_container_and_its_successor_finishes_the_node(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    docker_daemon: DockerDaemon,
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"dkcrash-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": queue,
        "DOCKER_HOST": docker_daemon.host,
    }

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "--no-register"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # First attempt sleeps past the kill; the retry (a new container) finishes at once.
    script = 'if [ "$FLOW_ATTEMPT" = 1 ]; then sleep 300; fi; echo "{\\"attempt\\": $FLOW_ATTEMPT}"'
    definition = docker_flow({"command": ["sh", "-c", script]}, timeoutSeconds=60)
    first = worker()
    try:
        handle = await start_run(
            temporal_env.client,
            queue,
            FlowRunInput(definition=definition),
            run_id=f"dkcrash-{uuid.uuid4().hex[:8]}",
        )
        await until(lambda: docker_daemon.managed_containers() != [], within=60)
        orphan = docker_daemon.managed_containers()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    # The killed worker's container outlives it, under the daemon.
    assert set(orphan) <= set(docker_daemon.managed_containers())
    second = worker()
    try:
        # The successor sweeps the orphan at start-up ...
        await until(lambda: not set(orphan) & set(docker_daemon.managed_containers()), 30)
        # ... and the node's retry (after the heartbeat timeout) runs in a new container.
        result = await asyncio.wait_for(handle.result(), 120)
        # (its status query needs a worker on the queue)
        await assert_run_tells_the_truth(temporal_env.client, session_maker, handle.id)
    finally:
        second.terminate()
        second.wait(30)
    assert result.outputs["box"]["json"] == {"attempt": 2}
    assert docker_daemon.managed_containers() == []


async def test_an_output_too_large_for_history_fails_clearly_without_retry(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon
) -> None:
    chatty = ["sh", "-c", "head -c 2000000 /dev/zero | tr '\\0' a"]
    definition = docker_flow(
        {"command": chatty, "maxLogBytes": 3_000_000}, retry={"maxAttempts": 3}
    )
    row = await flow_worker.failed_row(definition, "box")
    assert row["retry_count"] == 0
    assert "output is 20000" in row["error"]
    assert "over the 1500000 a node may return" in row["error"]
    assert docker_daemon.managed_containers() == []


async def test_a_loop_runs_its_containers_side_by_side_each_with_its_own_item(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("each", "loop", {"items": "{{ input.numbers }}", "maxConcurrency": 6}),
            {
                **node(
                    "box",
                    "docker",
                    {
                        "image": TEST_IMAGE,
                        "command": [
                            "sh",
                            "-c",
                            'read -r x; sleep 1; echo "{\\"double\\": $((x * 2))}"',
                        ],
                        "input": "{{ item }}",
                    },
                ),
                "parentId": "each",
            },
            node("done", "end", {"outputs": {"all": "{{ nodes.each.output }}"}}),
        ],
        "edges": [edge("start", "each"), edge("each", "done")],
    }
    result, run_id = await flow_worker.run(definition, {"numbers": list(range(12))})
    assert [o["json"]["double"] for o in result.outputs["all"]] == [2 * i for i in range(12)]
    rows = await flow_worker.task_rows(run_id)
    assert len([k for k in rows if k.endswith(".box")]) == 12
    assert docker_daemon.managed_containers() == []


@pytest.fixture
def shared_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A host directory the operator allows containers to mount read-only (set before the
    test's worker is built, which reads DOCKER_ALLOWED_MOUNTS).
    """
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the container runs as nobody
        (root / "note.txt").write_text("from the host")
        (root / "note.txt").chmod(0o644)
        monkeypatch.setenv("DOCKER_ALLOWED_MOUNTS", str(root))
        yield root


async def test_an_allowed_directory_is_mounted_read_only_and_others_are_refused(
    docker_daemon: DockerDaemon, shared_dir: Path, flow_worker: FlowWorker
) -> None:
    script = (
        "note=$(cat /in/note.txt); "
        "if touch /in/new 2>/dev/null; then w=yes; else w=no; fi; "
        'echo "{\\"note\\": \\"$note\\", \\"wrote\\": \\"$w\\"}"'
    )
    mounted = docker_flow(
        {"command": ["sh", "-c", script], "mounts": [{"source": str(shared_dir), "target": "/in"}]}
    )
    result, _ = await flow_worker.run(mounted)
    assert result.outputs["box"]["json"] == {"note": "from the host", "wrote": "no"}
    assert not (shared_dir / "new").exists()
    outside = docker_flow(
        {"command": ["true"], "mounts": [{"source": "/etc", "target": "/in"}]},
        retry={"maxAttempts": 1},
    )
    row = await flow_worker.failed_row(outside, "box")
    assert "config.mounts[0].source: '/etc' is not inside a directory" in row["error"]
    writable = docker_flow(
        {
            "command": ["true"],
            "mounts": [{"source": str(shared_dir), "target": "/in", "readOnly": False}],
        },
        retry={"maxAttempts": 1},
    )
    row = await flow_worker.failed_row(writable, "box")
    assert "may be mounted read-only only" in row["error"]
    assert docker_daemon.managed_containers() == []
