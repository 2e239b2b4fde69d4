"""The operator's DockerPolicy (activities/docker_policy.py), seen through a real engine:
what a docker node may run, join and use, and what it is refused before anything runs.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from activities.docker_agent import RUN_LABEL
from tests.docker_daemon import TEST_IMAGE, DockerDaemon
from tests.docker_support import docker_flow, until
from tests.flows import FlowWorker

pytestmark = pytest.mark.peers


async def _refused_before_anything_ran(
    flow_worker: FlowWorker,
    docker_daemon: DockerDaemon,
    definition: dict[str, Any],
    inputs: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Runs a flow that must fail: its run row and task rows, once the engine is seen to
    have created no container for it and pulled nothing.
    """
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

        await until(started)
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
