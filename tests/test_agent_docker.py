"""The docker agent against a real dockerd (started by the suite) and the busybox test image."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.docker_agent import MANAGED_LABEL, PID_LABEL, RUN_LABEL, sweep_orphans
from tests.docker_daemon import TEST_IMAGE, DockerDaemon
from tests.flows import FlowWorker, edge, node
from tests.invariant import assert_run_tells_the_truth
from workflows.messages import FlowResult, FlowRunInput

pytestmark = pytest.mark.peers


def docker_flow(config: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("box", "docker", {"image": TEST_IMAGE, **config}, **data),
            node("done", "end", {"outputs": {"box": "{{ nodes.box.output }}"}}),
        ],
        "edges": [edge("start", "box"), edge("box", "done")],
    }


async def _until(predicate: Any, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


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
    await _until(lambda: docker_daemon.managed_containers() != [])
    began = time.monotonic()
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    await _until(lambda: docker_daemon.managed_containers() == [], within=15)
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
        handle = await temporal_env.client.start_workflow(
            "FlowRun",
            FlowRunInput(definition=definition),
            id=f"dkcrash-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            result_type=FlowResult,
        )
        await _until(lambda: docker_daemon.managed_containers() != [], within=60)
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
        await _until(lambda: not set(orphan) & set(docker_daemon.managed_containers()), 30)
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


# -- confinement: the operator's DockerPolicy (activities/docker_policy.py) -----------------------


async def _refused_before_anything_ran(
    flow_worker: FlowWorker,
    docker_daemon: DockerDaemon,
    definition: dict[str, Any],
    inputs: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Runs a flow that must fail: its run row and task rows, once the engine is seen to
    have created no container for it and pulled nothing."""
    since = time.time()
    run_id = await flow_worker.fail(definition, inputs)
    assert docker_daemon.events_of_run(run_id, since) == []
    return await flow_worker.run_row(run_id), await flow_worker.task_rows(run_id)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"network": "host"}, "config.network: 'host' (the worker's own network) is never allowed"),
        ({"network": "HOST"}, "config.network: 'host' (the worker's own network) is never allowed"),
        ({"network": "container:ma-victim"}, "config.network: 'container:ma-victim' is not a net"),
        ({"network": "ns:/proc/1/ns/net"}, "config.network: 'ns:/proc/1/ns/net' is not a network"),
    ],
)
async def test_a_forbidden_network_written_outright_fails_validation(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon, config: dict[str, Any], says: str
) -> None:
    definition = docker_flow({"command": ["true"], **config})
    run, rows = await _refused_before_anything_ran(flow_worker, docker_daemon, definition)
    assert f"node 'box': {says}" in run["error"]
    assert "box" not in rows


@pytest.mark.parametrize(
    ("config", "inputs", "says"),
    [
        ({"network": "{{ input.v }}"}, {"v": "host"}, "config.network: 'host' (the worker's own"),
        (
            {"network": "{{ input.v }}"},
            {"v": "container:ma-victim"},
            "config.network: 'container:ma-victim' is not a network name",
        ),
        (  # a literal too: validation cannot know what the worker allows
            {"network": "bridge"},
            {},
            "config.network: 'bridge' is not allowed: only 'none' and what "
            "DOCKER_ALLOWED_NETWORKS lists (nothing else)",
        ),
        (  # the caps are the worker's settings: the agent holds limits against them
            {"memLimit": "8g"},
            {},
            "config.memLimit: '8g' is over the cap of 4096 MB (DOCKER_MAX_MEMORY_MB)",
        ),
        ({"pidsLimit": 100_000}, {}, "config.pidsLimit: 100000 is over the cap of 4096"),
        ({"cpus": "{{ input.v }}"}, {"v": 16}, "config.cpus: 16 is over the cap of 4 CPUs"),
        ({"memLimit": "{{ input.v }}"}, {"v": "5g"}, "config.memLimit: '5g' is over the cap"),
    ],
)
async def test_a_templated_or_unlisted_network_or_limit_is_refused_by_the_agent_before_it_runs(
    flow_worker: FlowWorker,
    docker_daemon: DockerDaemon,
    config: dict[str, Any],
    inputs: dict[str, Any],
    says: str,
) -> None:
    definition = docker_flow({"command": ["true"], **config}, retry={"maxAttempts": 3})
    _, rows = await _refused_before_anything_ran(flow_worker, docker_daemon, definition, inputs)
    assert rows["box"]["status"] == "failed"
    assert rows["box"]["retry_count"] == 0
    assert says in rows["box"]["error"]


@pytest.mark.parametrize(
    "image",
    [
        "meta-agent/other:1",  # on the engine already: refused all the same
        "alpine",  # would be pulled
        "meta-agent/busybox-evil:test",
        "registry.evil/meta-agent/busybox:test",
        "{{ input.image }}",
    ],
)
async def test_an_image_off_the_allow_list_is_refused_before_it_is_pulled_or_created(
    flow_worker: FlowWorker, docker_daemon: DockerDaemon, image: str
) -> None:
    with docker_daemon.client() as client:
        client.images.get(TEST_IMAGE).tag("meta-agent/other", "1")
    definition = docker_flow({"image": image, "command": ["true"]}, retry={"maxAttempts": 3})
    inputs = {"image": "meta-agent/other:1"}
    _, rows = await _refused_before_anything_ran(flow_worker, docker_daemon, definition, inputs)
    shown = inputs["image"] if image.startswith("{{") else image
    assert rows["box"]["retry_count"] == 0
    assert f"config.image: {shown!r} is not allowed" in rows["box"]["error"]
    assert "DOCKER_ALLOWED_IMAGES (meta-agent/busybox:*)" in rows["box"]["error"]


#: Waits for /tmp/go (the test's go-ahead, once it has inspected the container), then reports
#: what the kernel lets it be and do.
_PROBE = (
    "while [ ! -e /tmp/go ]; do sleep 0.1; done; "
    'echo "{\\"user\\": \\"$(id -u):$(id -g)\\", '
    '\\"root\\": \\"$(touch /work/probe 2>&1)\\", '
    '\\"tmp\\": \\"$(echo scratch > /tmp/probe && cat /tmp/probe)\\", '
    '\\"caps\\": \\"$(grep CapEff /proc/self/status | cut -f2)\\", '
    '\\"no_new_privs\\": \\"$(grep NoNewPrivs /proc/self/status | cut -f2)\\"}"'
)
MB = 1 << 20
#: Above the default of 1, within what the engine has (it refuses more CPUs than the host's).
_MORE_CPUS = min(2.0, float(os.cpu_count() or 1))


@pytest.mark.parametrize(
    ("config", "memory", "nano_cpus", "pids", "read_only"),
    [
        ({}, 512 * MB, 1_000_000_000, 256, True),  # the defaults
        ({"memLimit": "64m", "cpus": 0.25, "pidsLimit": 16}, 64 * MB, 250_000_000, 16, True),
        (
            {"memLimit": "1g", "cpus": _MORE_CPUS, "pidsLimit": 1024, "readOnlyRootfs": False},
            1024 * MB,
            int(_MORE_CPUS * 1e9),
            1024,
            False,
        ),
    ],
    ids=["defaults", "lowered", "raised-and-writable"],
)
async def test_a_running_container_is_limited_unprivileged_and_read_only(
    flow_worker: FlowWorker,
    docker_daemon: DockerDaemon,
    config: dict[str, Any],
    memory: int,
    nano_cpus: int,
    pids: int,
    read_only: bool,
) -> None:
    handle = await flow_worker.start(docker_flow({"command": ["sh", "-c", _PROBE], **config}))
    with docker_daemon.client() as client:
        running: list[Any] = []

        def started() -> bool:
            found = client.containers.list(filters={"label": f"{RUN_LABEL}={handle.id}"})
            running[:] = found
            return bool(found)

        await _until(started)
        attrs = running[0].attrs
        host = attrs["HostConfig"]
        assert (host["Memory"], host["MemorySwap"]) == (memory, memory)
        assert (host["NanoCpus"], host["PidsLimit"]) == (nano_cpus, pids)
        assert attrs["Config"]["User"] == "65534:65534"
        assert "ALL" in host["CapDrop"]
        assert not host.get("CapAdd")
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["Privileged"] is False
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is read_only
        assert "size=64m" in host["Tmpfs"]["/tmp"]
        running[0].exec_run(["touch", "/tmp/go"])
    result = await handle.result()
    seen = result.outputs["box"]["json"]
    assert seen["user"] == "65534:65534"
    why = "Read-only file system" if read_only else "Permission denied"  # nobody owns no dir
    assert why in seen["root"]
    assert seen["tmp"] == "scratch"
    assert seen["caps"] == "0000000000000000"
    assert seen["no_new_privs"] == "1"
    assert docker_daemon.managed_containers() == []
