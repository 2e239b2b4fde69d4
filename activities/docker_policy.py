"""What a `docker` node may run, and inside which walls: the operator's policy.

A flow author is trusted with their own tenant only, yet a container runs on the
worker's docker engine. So the operator lists the images that may run and the
networks they may join (nothing but `none` by default, and never the host's or
another container's), and every container gets memory, CPU and process limits
(a node may move them within caps), a non-root user, no capabilities, no
privilege gain and, unless the node opts out, a read-only root filesystem with a
small scratch tmpfs; host directories only from DOCKER_ALLOWED_MOUNTS
(`docker_mounts.py`). The refusals name the node's field and the setting to
change, and happen before anything is pulled or created.

The settings are environment variables (validated at the worker's start by
`workers/settings.py`, which this package may not import); `from_environment`
reads them the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from activities.docker_mounts import AllowedMount, MountRefused, mount_binds, parse_allowed_mounts
from flow_language.config_checks import docker_network_problem, docker_problems, memory_bytes

#: nobody:nogroup, which every base image's kernel knows, whether or not /etc/passwd does.
NOBODY = "65534:65534"
#: The writable scratch space of a read-only container (counted in its memory limit).
SCRATCH_DIR = "/tmp"
_WILDCARDS = re.compile(r"[*?\[]")
_ALLOWED_IMAGES_HELP = (
    "set DOCKER_ALLOWED_IMAGES to comma-separated image patterns, e.g. "
    "python:3.12-slim,registry.local/team/*"
)


class DockerPolicyError(ValueError):
    """A node's container would break the policy; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class DockerPolicy:
    """The operator's limits on `docker` nodes; the defaults refuse every image."""

    allowed_images: tuple[str, ...] = ()
    #: Networks beyond `none` (always allowed): `bridge` or names of the engine's networks.
    allowed_networks: frozenset[str] = frozenset()
    default_memory_mb: int = 512
    max_memory_mb: int = 4096
    default_cpus: float = 1.0
    max_cpus: float = 4.0
    default_pids: int = 256
    max_pids: int = 4096
    tmpfs_mb: int = 64
    user: str = NOBODY
    #: Host directories containers may bind-mount (DOCKER_ALLOWED_MOUNTS); none by default.
    allowed_mounts: tuple[AllowedMount, ...] = ()

    def __post_init__(self) -> None:
        for name in self.allowed_networks:
            problem = docker_network_problem(name)
            if problem:
                raise ValueError(f"DOCKER_ALLOWED_NETWORKS: {problem}")
        pairs = (
            ("MEMORY_MB", self.default_memory_mb, self.max_memory_mb, 6),
            ("CPUS", self.default_cpus, self.max_cpus, 0.01),
            ("PIDS", self.default_pids, self.max_pids, 1),
        )
        for suffix, default, cap, least in pairs:
            if default < least:
                raise ValueError(f"DOCKER_DEFAULT_{suffix}: {default:g} is below {least:g}")
            if default > cap:
                raise ValueError(
                    f"DOCKER_DEFAULT_{suffix}: {default:g} is over DOCKER_MAX_{suffix} ({cap:g})"
                )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> DockerPolicy:
        """The policy the `DOCKER_*` variables describe; ValueError naming a bad one."""

        def number(name: str, default: float, kind: type[int] | type[float]) -> Any:
            raw = (environ.get(name) or "").strip()
            if not raw:
                return kind(default)
            try:
                return kind(raw)
            except ValueError:
                word = "a whole number" if kind is int else "a number"
                raise ValueError(f"{name}: {raw!r} is not {word}") from None

        return cls(
            allowed_images=split_list(environ.get("DOCKER_ALLOWED_IMAGES", "")),
            allowed_networks=frozenset(split_list(environ.get("DOCKER_ALLOWED_NETWORKS", ""))),
            default_memory_mb=number("DOCKER_DEFAULT_MEMORY_MB", cls.default_memory_mb, int),
            max_memory_mb=number("DOCKER_MAX_MEMORY_MB", cls.max_memory_mb, int),
            default_cpus=number("DOCKER_DEFAULT_CPUS", cls.default_cpus, float),
            max_cpus=number("DOCKER_MAX_CPUS", cls.max_cpus, float),
            default_pids=number("DOCKER_DEFAULT_PIDS", cls.default_pids, int),
            max_pids=number("DOCKER_MAX_PIDS", cls.max_pids, int),
            allowed_mounts=parse_allowed_mounts(environ.get("DOCKER_ALLOWED_MOUNTS", "")),
        )

    def check_image(self, image: Any) -> str:
        """The image, if a pattern allows it (as written or normalised)."""
        if not isinstance(image, str) or not image.strip():
            raise DockerPolicyError("config.image", f"{image!r} is not an image reference")
        if not self.allowed_images:
            raise DockerPolicyError(
                "config.image",
                f"{image!r} is not allowed: no image is, until the operator {_ALLOWED_IMAGES_HELP}",
            )
        if not any(image_matches(image, pattern) for pattern in self.allowed_images):
            raise DockerPolicyError(
                "config.image",
                f"{image!r} is not allowed: it matches none of DOCKER_ALLOWED_IMAGES "
                f"({', '.join(self.allowed_images)})",
            )
        return image

    def network(self, config: Mapping[str, Any]) -> str:
        """The network mode: `none` unless the node names one the operator allows."""
        value = config.get("network") or "none"
        problem = docker_network_problem(value) if isinstance(value, str) else "not a name"
        if problem:
            raise DockerPolicyError("config.network", problem)
        name = "bridge" if value == "default" else value  # the engine's alias for bridge
        if name != "none" and name not in self.allowed_networks:
            allowed = ", ".join(sorted(self.allowed_networks)) or "nothing else"
            raise DockerPolicyError(
                "config.network",
                f"{value!r} is not allowed: only 'none' and what DOCKER_ALLOWED_NETWORKS "
                f"lists ({allowed})",
            )
        return str(name)

    def host_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """`create_host_config` arguments for the node's (rendered) config, or the refusal."""
        caps = {"memLimit": self.max_memory_mb, "cpus": self.max_cpus, "pidsLimit": self.max_pids}
        for field, message in docker_problems(dict(config), caps):
            raise DockerPolicyError(field, message)
        memory = _memory(config.get("memLimit"), self.default_memory_mb)
        cpus = _number(config.get("cpus"), "config.cpus", self.default_cpus, float)
        pids = _number(config.get("pidsLimit"), "config.pidsLimit", self.default_pids, int)
        read_only = config.get("readOnlyRootfs", True)
        if not isinstance(read_only, bool):
            raise DockerPolicyError("config.readOnlyRootfs", f"{read_only!r} is not true or false")
        try:
            binds = mount_binds(config.get("mounts"), self.allowed_mounts)
        except MountRefused as refused:
            raise DockerPolicyError(refused.field, refused.message) from None
        return {
            "binds": binds,
            "network_mode": self.network(config),
            "mem_limit": memory,
            "memswap_limit": memory,  # no swap beyond the limit
            "nano_cpus": int(cpus * 1e9),
            "pids_limit": pids,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": read_only,
            "tmpfs": {SCRATCH_DIR: f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"},
        }


def split_list(raw: str) -> tuple[str, ...]:
    """A comma-separated setting's items, blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def image_matches(image: str, pattern: str) -> bool:
    """Whether `pattern` (fnmatch-style) allows `image`.

    A pattern without wildcards names one image: `alpine` allows `alpine:latest` and
    `docker.io/library/alpine:latest`, as the engine resolves them alike. A pattern with
    wildcards is tried on the image as written and on its short and full forms.
    """
    if not _WILDCARDS.search(pattern):
        return normalised(pattern) == normalised(image)
    return any(fnmatchcase(form, pattern) for form in _forms(image))


def normalised(reference: str) -> str:
    """The full form the engine pulls: `alpine` → `docker.io/library/alpine:latest`."""
    return _forms(reference)[1]


def _forms(reference: str) -> tuple[str, str, str]:
    """The reference as written, in full, and in Docker Hub's short form."""
    written = reference.strip()
    name, _, digest = written.partition("@")
    repository, tag = name, ""
    if name.rfind(":") > name.rfind("/"):
        repository, _, tag = name.rpartition(":")
    first, slash, rest = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", repository
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if not tag and not digest:
        tag = "latest"
    suffix = (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    full = f"{domain}/{path}{suffix}"
    short = path.removeprefix("library/") + suffix if domain == "docker.io" else full
    return written, full, short


def _memory(value: Any, default_mb: int) -> int:
    if value is None:
        return default_mb << 20
    amount = memory_bytes(value)
    if amount is None or amount < 6 << 20:
        raise DockerPolicyError(
            "config.memLimit", f"{value!r} is not a size like 512m or 2g (at least 6m)"
        )
    return amount


def _number(value: Any, field: str, default: float, kind: type[int] | type[float]) -> Any:
    if value is None:
        return kind(default)
    wrong_kind = kind is int and not isinstance(value, int)
    if isinstance(value, bool) or not isinstance(value, int | float) or wrong_kind or value <= 0:
        word = "a whole number" if kind is int else "a number"
        raise DockerPolicyError(field, f"{value!r} is not {word} above 0")
    return kind(value)
