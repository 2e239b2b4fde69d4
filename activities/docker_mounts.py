"""Host directories a `docker` node may mount: only under the operator's DOCKER_ALLOWED_MOUNTS.

A bind mount hands a container a piece of the engine host's filesystem, so a flow
author may mount only what the operator listed: directories given as absolute
paths, read-only unless the entry ends in `:rw` and the node asks to write. A source
is judged as written and, where it exists on this host, with its symlinks resolved,
so a link inside an allowed directory cannot lead outside it. Nothing is mounted by
default.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any

#: The most directories one container may mount.
MAX_MOUNTS = 8
#: Container paths a mount may not cover: the root, and the kernel's own filesystems.
_FORBIDDEN_TARGETS = ("/proc", "/sys", "/dev")


class MountRefused(ValueError):
    """A node's mount breaks the policy; `field` names it (`config.mounts[0].source`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class AllowedMount:
    """A host directory containers may mount (anything below it too), and whether writably."""

    root: str
    writable: bool = False

    def holds(self, path: str) -> bool:
        """Whether `path` is this directory or lies below it."""
        return path == self.root or path.startswith(self.root.rstrip("/") + "/")


def parse_allowed_mounts(raw: str) -> tuple[AllowedMount, ...]:
    """DOCKER_ALLOWED_MOUNTS: `/abs/dir[:ro|:rw]`, comma-separated; ValueError naming it."""
    allowed: list[AllowedMount] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        path, _, mode = entry.partition(":")
        if mode not in ("", "ro", "rw"):
            raise ValueError(f"DOCKER_ALLOWED_MOUNTS: {entry!r}: the mode is ro or rw")
        if not _plain_absolute(path) or path == "/":
            raise ValueError(
                f"DOCKER_ALLOWED_MOUNTS: {entry!r} is not an absolute directory below /"
            )
        allowed.append(AllowedMount(posixpath.normpath(path), writable=mode == "rw"))
    return tuple(allowed)


def mount_binds(value: Any, allowed: tuple[AllowedMount, ...]) -> dict[str, dict[str, str]]:
    """`create_host_config(binds=...)` for the node's (rendered) `mounts`, or MountRefused."""
    if value is None or value == []:
        return {}
    if not isinstance(value, list) or len(value) > MAX_MOUNTS:
        raise MountRefused("config.mounts", f"must be a list of at most {MAX_MOUNTS} mounts")
    if not allowed:
        raise MountRefused(
            "config.mounts",
            "no host directory may be mounted until the operator lists it in DOCKER_ALLOWED_MOUNTS",
        )
    binds: dict[str, dict[str, str]] = {}
    targets: set[str] = set()
    for i, mount in enumerate(value):
        where = f"config.mounts[{i}]"
        if not isinstance(mount, dict):
            raise MountRefused(where, "must be an object with source and target")
        source, target = mount.get("source"), mount.get("target")
        read_only = mount.get("readOnly", True)
        if not isinstance(read_only, bool):
            raise MountRefused(f"{where}.readOnly", f"{read_only!r} is not true or false")
        root = _allowed_root(source, allowed, f"{where}.source")
        if not read_only and not root.writable:
            raise MountRefused(
                f"{where}.readOnly",
                f"{root.root} may be mounted read-only only (DOCKER_ALLOWED_MOUNTS lists it "
                "without :rw)",
            )
        target = _container_path(target, f"{where}.target")
        if target in targets:
            raise MountRefused(f"{where}.target", f"{target} is mounted twice")
        targets.add(target)
        binds["/" + posixpath.normpath(str(source)).lstrip("/")] = {
            "bind": target,
            "mode": "ro" if read_only else "rw",
        }
    return binds


def _plain_absolute(path: Any) -> bool:
    """An absolute path without `..`, NUL or other control characters."""
    return (
        isinstance(path, str)
        and path.startswith("/")
        and ".." not in path.split("/")
        and not any(ord(c) < 32 for c in path)
    )


def _allowed_root(source: Any, allowed: tuple[AllowedMount, ...], field: str) -> AllowedMount:
    if not _plain_absolute(source):
        raise MountRefused(field, f"{source!r} is not an absolute host path without '..'")
    written = "/" + posixpath.normpath(str(source)).lstrip("/")
    # Where it exists here (the usual case: the engine runs on this host), symlinks count.
    resolved = os.path.realpath(written) if os.path.lexists(written) else written
    for root in allowed:
        if root.holds(written) and _below_resolved(root, resolved):
            return root
    roots = ", ".join(r.root for r in allowed)
    raise MountRefused(
        field, f"{written!r} is not inside a directory DOCKER_ALLOWED_MOUNTS lists ({roots})"
    )


def _below_resolved(root: AllowedMount, resolved: str) -> bool:
    real_root = os.path.realpath(root.root) if os.path.lexists(root.root) else root.root
    return resolved == real_root or resolved.startswith(real_root.rstrip("/") + "/")


def _container_path(target: Any, field: str) -> str:
    if not _plain_absolute(target):
        raise MountRefused(field, f"{target!r} is not an absolute container path without '..'")
    path = "/" + posixpath.normpath(str(target)).lstrip("/")  # `//proc` is `/proc` too
    if path == "/" or any(path == t or path.startswith(t + "/") for t in _FORBIDDEN_TARGETS):
        raise MountRefused(field, f"{path} may not be mounted over")
    return path
