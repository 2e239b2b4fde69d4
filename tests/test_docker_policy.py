"""The docker agent's policy on its own: image patterns, networks, limits, settings, validation.

The same rules run against a real engine in `test_agent_docker.py`; here each is
pinned down case by case, without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from activities.docker_mounts import parse_allowed_mounts
from activities.docker_policy import (
    NOBODY,
    DockerPolicy,
    DockerPolicyError,
    image_matches,
    normalised,
)
from flow_language.drawing import edge, node
from flow_language.validation import problems_of
from workers.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("image", "pattern", "allowed"),
    [
        ("alpine", "alpine", True),
        ("alpine:latest", "alpine", True),
        ("docker.io/library/alpine:latest", "alpine", True),
        ("index.docker.io/library/alpine", "alpine:latest", True),
        ("alpine:3.20", "alpine", False),
        ("alpine", "docker.io/library/alpine:latest", True),
        ("python:3.12-slim", "python:3.12-slim", True),
        ("docker.io/library/python:3.12-slim", "python:3.12-*", True),
        ("python:3.11-slim", "python:3.12-*", False),
        ("registry.local/team/tool:1", "registry.local/team/*", True),
        ("registry.local/other/tool:1", "registry.local/team/*", False),
        ("evil.example/registry.local/team/tool", "registry.local/team/*", False),
        ("localhost:5000/tool", "localhost:5000/*", True),
        ("alpine@sha256:abc", "alpine", False),  # a pinned digest is another reference
        ("alpine@sha256:abc", "alpine@*", True),
        ("Alpine", "alpine", False),
    ],
)
def test_image_patterns_match_the_reference_as_written_or_normalised(
    image: str, pattern: str, allowed: bool
) -> None:
    assert image_matches(image, pattern) is allowed


def test_references_are_normalised_as_the_engine_resolves_them() -> None:
    assert normalised("alpine") == "docker.io/library/alpine:latest"
    assert normalised("team/tool:1") == "docker.io/team/tool:1"
    assert normalised("localhost:5000/tool") == "localhost:5000/tool:latest"


def test_without_an_allow_list_no_image_runs_and_the_refusal_says_what_to_set() -> None:
    with pytest.raises(DockerPolicyError) as err:
        DockerPolicy().check_image("python:3.12-slim")
    assert err.value.field == "config.image"
    assert "'python:3.12-slim' is not allowed" in str(err.value)
    assert "set DOCKER_ALLOWED_IMAGES to comma-separated image patterns" in str(err.value)


def test_the_allow_list_refuses_other_images_and_names_its_patterns() -> None:
    policy = DockerPolicy(allowed_images=("python:3.12-slim", "registry.local/team/*"))
    assert policy.check_image("docker.io/library/python:3.12-slim")
    with pytest.raises(DockerPolicyError, match=r"config.image: 'node:20' is not allowed: it"):
        policy.check_image("node:20")
    with pytest.raises(DockerPolicyError, match="not an image reference"):
        policy.check_image("")


@pytest.mark.parametrize(
    ("network", "allowed", "outcome"),
    [
        (None, (), "none"),
        ("none", (), "none"),
        ("bridge", ("bridge",), "bridge"),
        ("default", ("bridge",), "bridge"),
        ("team-net", ("team-net",), "team-net"),
        ("bridge", (), "'bridge' is not allowed: only 'none' and what DOCKER_ALLOWED_NETWORKS"),
        ("other-net", ("team-net",), "lists (team-net)"),
        ("host", ("bridge",), "'host' (the worker's own network) is never allowed"),
        ("Host", ("bridge",), "never allowed"),
        ("container:db", ("bridge",), "'container:db' is not a network name"),
        ("ns:/proc/1/ns/net", (), "is not a network name"),
        (7, (), "not a name"),
    ],
)
def test_networks_are_none_unless_listed_and_never_the_hosts_or_a_containers(
    network: Any, allowed: tuple[str, ...], outcome: str
) -> None:
    policy = DockerPolicy(allowed_networks=frozenset(allowed))
    config = {} if network is None else {"network": network}
    if " " not in outcome:
        assert policy.network(config) == outcome
        return
    with pytest.raises(DockerPolicyError) as err:
        policy.network(config)
    assert err.value.field == "config.network"
    assert outcome in str(err.value)


def test_the_host_config_always_sets_limits_user_capabilities_and_a_read_only_root() -> None:
    policy = DockerPolicy()
    host = policy.host_config({})
    assert host == {
        "binds": {},  # no host directory unless DOCKER_ALLOWED_MOUNTS lists it
        "network_mode": "none",
        "mem_limit": 512 << 20,
        "memswap_limit": 512 << 20,
        "nano_cpus": 1_000_000_000,
        "pids_limit": 256,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"},
    }
    assert policy.user == NOBODY == "65534:65534"
    moved = policy.host_config(
        {"memLimit": 2 << 30, "cpus": 0.5, "pidsLimit": 4096, "readOnlyRootfs": False}
    )
    assert (moved["mem_limit"], moved["nano_cpus"], moved["pids_limit"]) == (2 << 30, 5e8, 4096)
    assert moved["read_only"] is False


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"memLimit": "5g"}, "config.memLimit: '5g' is over the cap of 4096 MB"),
        ({"memLimit": "1k"}, "config.memLimit: '1k' is not a size like 512m or 2g"),
        ({"memLimit": "lots"}, "config.memLimit: 'lots' is not a size"),
        ({"cpus": 4.5}, "config.cpus: 4.5 is over the cap of 4 CPUs (DOCKER_MAX_CPUS)"),
        ({"cpus": "2"}, "config.cpus: '2' is not a number above 0"),
        ({"cpus": 0}, "config.cpus: 0 is not a number above 0"),
        ({"pidsLimit": 1.5}, "config.pidsLimit: 1.5 is not a whole number above 0"),
        ({"pidsLimit": True}, "config.pidsLimit: True is not a whole number above 0"),
        ({"readOnlyRootfs": "no"}, "config.readOnlyRootfs: 'no' is not true or false"),
        ({"network": "host"}, "config.network: 'host'"),
    ],
)
def test_rendered_values_out_of_bounds_are_refused_naming_the_field(
    config: dict[str, Any], says: str
) -> None:
    with pytest.raises(DockerPolicyError) as err:
        DockerPolicy().host_config(config)
    assert says in str(err.value)


def test_the_policy_reads_its_settings_from_the_environment() -> None:
    policy = DockerPolicy.from_environment(
        {
            "DOCKER_ALLOWED_IMAGES": " python:3.12-slim , registry.local/team/*,,",
            "DOCKER_ALLOWED_NETWORKS": "bridge",
            "DOCKER_DEFAULT_MEMORY_MB": "256",
            "DOCKER_MAX_MEMORY_MB": "1024",
            "DOCKER_DEFAULT_CPUS": "0.5",
            "DOCKER_MAX_CPUS": "2",
            "DOCKER_DEFAULT_PIDS": "64",
            "DOCKER_MAX_PIDS": "128",
        }
    )
    assert policy.allowed_images == ("python:3.12-slim", "registry.local/team/*")
    assert policy.allowed_networks == {"bridge"}
    assert (policy.default_memory_mb, policy.max_memory_mb) == (256, 1024)
    assert (policy.default_cpus, policy.max_cpus, policy.default_pids, policy.max_pids) == (
        0.5,
        2.0,
        64,
        128,
    )
    assert DockerPolicy.from_environment({}) == DockerPolicy()


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"DOCKER_MAX_CPUS": "many"}, "DOCKER_MAX_CPUS: 'many' is not a number"),
        ({"DOCKER_DEFAULT_PIDS": "1.5"}, "DOCKER_DEFAULT_PIDS: '1.5' is not a whole number"),
        ({"DOCKER_DEFAULT_CPUS": "8"}, "DOCKER_DEFAULT_CPUS: 8 is over DOCKER_MAX_CPUS (4)"),
        ({"DOCKER_DEFAULT_MEMORY_MB": "2"}, "DOCKER_DEFAULT_MEMORY_MB: 2 is below 6"),
        ({"DOCKER_ALLOWED_NETWORKS": "bridge,host"}, "DOCKER_ALLOWED_NETWORKS: 'host'"),
    ],
)
def test_a_bad_policy_setting_is_refused_naming_the_variable(
    environ: dict[str, str], says: str
) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        DockerPolicy.from_environment(environ)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DOCKER_ALLOWED_NETWORKS", "bridge,host", "DOCKER_ALLOWED_NETWORKS: Value error, 'host'"),
        ("DOCKER_ALLOWED_NETWORKS", "container:db", "is not a network name"),
        ("DOCKER_MAX_MEMORY_MB", "lots", "DOCKER_MAX_MEMORY_MB: Input should be a valid integer"),
        ("DOCKER_DEFAULT_CPUS", "8", "DOCKER_DEFAULT_CPUS: Value error, 8 is over DOCKER_MAX_CPUS"),
        ("DOCKER_DEFAULT_PIDS", "0", "DOCKER_DEFAULT_PIDS: Input should be greater than or equal"),
    ],
)
def test_a_bad_docker_setting_stops_the_worker_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv("META_AGENT_HOME", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="invalid configuration") as err:
        load_settings()
    assert says in str(err.value)


def test_the_docker_settings_default_to_no_image_and_no_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("META_AGENT_HOME", str(tmp_path))
    for name in ("DOCKER_ALLOWED_IMAGES", "DOCKER_ALLOWED_NETWORKS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.docker_allowed_images, settings.docker_allowed_networks) == ("", "")
    assert (settings.docker_default_memory_mb, settings.docker_max_memory_mb) == (512, 4096)
    assert (settings.docker_default_cpus, settings.docker_max_cpus) == (1.0, 4.0)
    assert (settings.docker_default_pids, settings.docker_max_pids) == (256, 4096)


def _docker_flow(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodes": [node("start", "start"), node("box", "docker", {"image": "x", **config})],
        "edges": [edge("start", "box")],
    }


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"network": "host"}, "node 'box': config.network: 'host' (the worker's own network)"),
        ({"network": "container:db"}, "node 'box': config.network: 'container:db' is not a"),
        ({"readOnlyRootfs": "no"}, "node 'box': config.readOnlyRootfs: 'no' is not of type"),
        ({"privileged": True}, "Additional properties are not allowed ('privileged'"),
    ],
)
def test_validation_refuses_what_is_written_outright(config: dict[str, Any], says: str) -> None:
    problems = problems_of(_docker_flow(config))
    assert any(says in p for p in problems), problems


def test_validation_leaves_templates_and_limits_to_the_agent() -> None:
    """Validation is pure: the caps are the worker's settings, which the agent applies."""
    templated = {
        "network": "{{ input.net }}",
        "memLimit": "{{ input.mem }}",
        "cpus": "{{ input.cpus }}",
        "pidsLimit": "{{ input.pids }}",
    }
    assert problems_of(_docker_flow(templated)) == []
    big = {"memLimit": "5g", "cpus": 8, "pidsLimit": 5000, "network": "team-net"}
    assert problems_of(_docker_flow(big)) == []


def _mounting(tmp_path: Path, spec: str) -> DockerPolicy:
    return DockerPolicy(
        allowed_images=("x",),
        allowed_mounts=parse_allowed_mounts(spec.format(tmp=tmp_path)),
    )


def test_a_mount_inside_the_allowed_directories_is_read_only_unless_both_allow_writing(
    tmp_path: Path,
) -> None:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    policy = _mounting(tmp_path, "{tmp}/data,{tmp}/out:rw")
    binds = policy.host_config(
        {
            "mounts": [
                {"source": f"{tmp_path}/data/sub", "target": "/in"},
                {"source": f"{tmp_path}/out", "target": "/out/", "readOnly": False},
            ]
        }
    )["binds"]
    assert binds == {
        f"{tmp_path}/data/sub": {"bind": "/in", "mode": "ro"},
        f"{tmp_path}/out": {"bind": "/out", "mode": "rw"},
    }
    assert policy.host_config({})["binds"] == {}


@pytest.mark.parametrize(
    ("spec", "mounts", "says"),
    [
        ("", [{"source": "{tmp}/data", "target": "/in"}], "until the operator lists it"),
        ("{tmp}/data", [{"source": "/etc", "target": "/in"}], "is not inside a directory"),
        ("{tmp}/data", [{"source": "{tmp}/data2", "target": "/in"}], "is not inside"),
        ("{tmp}/data", [{"source": "{tmp}/data/../out", "target": "/in"}], "without '..'"),
        ("{tmp}/data", [{"source": "data", "target": "/in"}], "not an absolute host path"),
        ("{tmp}/data", [{"source": "{tmp}/data/link", "target": "/in"}], "is not inside"),
        (
            "{tmp}/data",
            [{"source": "{tmp}/data", "target": "/in", "readOnly": False}],
            "read-only only",
        ),
        ("{tmp}/data", [{"source": "{tmp}/data", "target": "/proc/x"}], "may not be mounted over"),
        ("{tmp}/data", [{"source": "{tmp}/data", "target": "//sys"}], "may not be mounted over"),
        ("{tmp}/data", [{"source": "{tmp}/data", "target": "/"}], "may not be mounted over"),
        (
            "{tmp}/data",
            [{"source": "{tmp}/data", "target": "/a"}, {"source": "{tmp}/data", "target": "/a/"}],
            "mounted twice",
        ),
        ("{tmp}/data", "{tmp}/data", "must be a list"),
    ],
)
def test_mounts_outside_the_policy_are_refused_naming_the_field(
    tmp_path: Path, spec: str, mounts: Any, says: str
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    # A link inside the allowed directory that leads outside it.
    (tmp_path / "data" / "link").symlink_to(tmp_path / "out")
    filled = (
        [
            {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in m.items()}
            for m in mounts
        ]
        if isinstance(mounts, list)
        else mounts.format(tmp=tmp_path)
    )
    with pytest.raises(DockerPolicyError) as refused:
        _mounting(tmp_path, spec).host_config({"mounts": filled})
    assert refused.value.field.startswith("config.mounts")
    assert says in str(refused.value)


@pytest.mark.parametrize("spec", ["relative/dir", "/", "/srv/data:rx", "/srv/../etc"])
def test_a_bad_mount_allow_list_is_refused_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    monkeypatch.setenv("DOCKER_ALLOWED_MOUNTS", spec)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "DOCKER_ALLOWED_MOUNTS" in str(err.value)
