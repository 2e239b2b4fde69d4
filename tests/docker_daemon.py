"""A private Docker engine for the docker agent's tests, with an image built offline.

No image registry is reachable here, so the test image is made from Debian's
`busybox-static`: a root filesystem of `/bin/busybox` and its applet links,
imported with `docker import`. The daemon runs without iptables or a bridge,
so containers get `network_mode="none"` and loopback only — which is also the
agent's default. The suite's workers may run the test image (and its other tags)
only: `environment` is the DOCKER_HOST and policy the `docker_daemon` fixture sets.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from activities.docker_agent import MANAGED_LABEL, RUN_LABEL
from workers import processes

TEST_IMAGE = "meta-agent/busybox:test"
#: What the suite's workers may run: every tag of the test image, none other.
ALLOWED_IMAGES = "meta-agent/busybox:*"


@dataclass
class DockerDaemon:
    """One dockerd of the suite's own, under a temporary root, so tests never touch the host's."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ma-dk-", dir="/tmp")))
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The daemon's socket, as DOCKER_HOST."""
        return f"unix://{self.root}/docker.sock"

    def start(self, timeout: float = 60) -> DockerDaemon:
        """Start dockerd and import the test image; raises with the log's tail if dockerd fails."""
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("dockerd not found: run scripts/peers.sh (Debian package docker.io)")
        self._proc = processes.spawn(
            [
                dockerd,
                "-H",
                self.host,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=overlay2",
            ],
            log=self.root / "dockerd.log",
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as client:
                    client.ping()
                    break
            except docker.errors.DockerException:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dockerd did not start: {(self.root / 'dockerd.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        self._import_busybox()
        return self

    @contextlib.contextmanager
    def client(self) -> Iterator[docker.DockerClient]:
        """A client of this daemon, closed after use so no connection outlives the test."""
        client = docker.DockerClient(base_url=self.host, timeout=60)
        try:
            yield client
        finally:
            client.close()

    def environment(self) -> dict[str, str]:
        """The variables a worker using this engine runs with (the suite's docker policy)."""
        return {"DOCKER_HOST": self.host, "DOCKER_ALLOWED_IMAGES": ALLOWED_IMAGES}

    def events_of_run(self, run_id: str, since: float) -> list[dict[str, Any]]:
        """Every container event of the agent's containers for `run_id` since `since`, and
        every image pull: what a refused node must not have caused.
        """
        with self.client() as client:
            until = time.time() + 1
            kinds: list[dict[str, Any]] = [
                {"type": "container", "label": f"{RUN_LABEL}={run_id}"},
                {"type": "image", "event": "pull"},
            ]
            found: list[dict[str, Any]] = []
            for filters in kinds:
                found += client.events(
                    since=int(since), until=int(until), filters=filters, decode=True
                )
            return found

    def managed_containers(self) -> list[str]:
        """Names of the containers the docker agent started and has not removed: left-overs."""
        with self.client() as client:
            # The low-level listing: the high-level one inspects each container afterwards,
            # which fails when the agent removes one in between.
            found = client.api.containers(all=True, filters={"label": f"{MANAGED_LABEL}=true"})
            return [str(c["Names"][0]).lstrip("/") for c in found]

    def _import_busybox(self) -> None:
        busybox = shutil.which("busybox") or "/bin/busybox"
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for directory in ("bin", "tmp", "work"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
                tar.addfile(info)
            tar.add(busybox, arcname="bin/busybox")
            for name in applets.stdout.split():
                if name == "busybox":
                    continue
                link = tarfile.TarInfo(f"bin/{name}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        rootfs = self.root / "busybox-rootfs.tar"
        rootfs.write_bytes(buffer.getvalue())
        repository, tag = TEST_IMAGE.split(":")
        with self.client() as client:
            client.api.import_image_from_file(
                str(rootfs), repository=repository, tag=tag, changes=["ENV PATH=/bin"]
            )

    def stop(self) -> None:
        """Remove every container, stop dockerd and delete its root, mounts and all."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(docker.errors.DockerException), self.client() as client:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
            processes.stop(self._proc, timeout=30)
        # Overlay mounts are gone once dockerd has stopped; whatever is left is plain files.
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def environment_with(daemon: DockerDaemon) -> dict[str, str]:
    """The daemon's variables over this process's: the environment of a worker subprocess."""
    return {**os.environ, **daemon.environment()}
