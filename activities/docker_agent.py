"""The `docker` agent: one container per attempt, through the docker SDK (`DOCKER_HOST`).

The node's input goes in as JSON on stdin and in `FLOW_INPUT` (with `FLOW_RUN_ID`,
`FLOW_NODE_ID` and `FLOW_ATTEMPT`, for idempotency keys); the output is
`{exit_code, stdout, stderr, json}` with `json` the last stdout line that parses.
The container is named after the task and attempt and labelled with the run,
node and owning worker process, so that a retry replaces a leftover of the
same attempt and a worker starting up removes what a dead worker left behind.
Whatever ends the attempt — exit, the node's timeout, cancellation, an error —
the container is killed and removed before the activity returns.
What the container may be and do (image, network, limits, user, capabilities,
root filesystem) is the operator's `DockerPolicy`, checked before anything is
pulled or created.
The docker SDK is synchronous; every call runs in a thread so heartbeats and
cancellation keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.docker_policy import DockerPolicy, DockerPolicyError
from workflows.contract import AgentTask

log = logging.getLogger("meta_agent.docker")

LABEL_PREFIX = "dev.meta-agent"
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"
RUN_LABEL = f"{LABEL_PREFIX}.run-id"
NODE_LABEL = f"{LABEL_PREFIX}.node-id"
TASK_LABEL = f"{LABEL_PREFIX}.task-id"
HOST_LABEL = f"{LABEL_PREFIX}.host"
PID_LABEL = f"{LABEL_PREFIX}.worker-process"

DEFAULT_MAX_LOG_BYTES = 64 * 1024
#: Left of the node's timeout for killing and removing the container before Temporal gives up.
_CLEANUP_MARGIN_SECONDS = 2.0
_T = TypeVar("_T")


class DockerAgent:
    """The `docker` agent: one container per attempt, within the operator's `DockerPolicy`."""

    def __init__(
        self, client_factory: Callable[[], docker.DockerClient], policy: DockerPolicy
    ) -> None:
        self._client_factory = client_factory
        self._policy = policy
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        """The engine's client, made on first use: a worker without docker still runs every other
        node type.
        """
        if self._client is None:
            try:
                self._client = self._client_factory()
            except docker.errors.DockerException as exc:
                raise ApplicationError(
                    f"cannot reach the docker engine (DOCKER_HOST): {exc}", type="DockerUnavailable"
                ) from None
        return self._client

    async def __call__(self, config: dict[str, Any], task: AgentTask) -> dict[str, Any]:
        """One container run to its end; killed and removed whatever ends the attempt."""
        info = activity.info()
        try:  # before the engine is even asked: a refused container leaves no trace there
            image = self._policy.check_image(config.get("image"))
            host = self._policy.host_config(config)
        except DockerPolicyError as exc:
            raise ApplicationError(
                str(exc), type="DockerPolicyRefused", non_retryable=True
            ) from None
        client = self.client
        pull = str(config.get("pullPolicy", "missing"))
        await _in_thread(self._ensure_image, client, image, pull)
        payload = json.dumps(config.get("input", task.scope.get("input")), default=str)
        name = _container_name(info.workflow_id or "", task.task_id, info.attempt)
        await _in_thread(_remove_quietly, client, name)  # a leftover of this very attempt
        deadline = _deadline(info)
        try:
            container = await _in_thread(
                self._create, client, name, image, config, host, task, payload
            )
            await _in_thread(_start_with_stdin, client, container, payload.encode())
            exit_code = await self._wait(container, deadline)
            stdout, stderr = await _in_thread(_logs, container)
            state = await _in_thread(_state, container)
        finally:
            # Runs on exit, timeout, error and cancellation alike (shielded from the latter).
            await asyncio.shield(_in_thread(_remove_quietly, client, name))
        return _result(config, exit_code, stdout, stderr, state)

    def _ensure_image(self, client: docker.DockerClient, image: str, policy: str) -> None:
        present = True
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            present = False
        if policy == "never" and not present:
            raise ApplicationError(
                f"config.image {image!r} is not on the docker host and config.pullPolicy is "
                "'never'",
                type="ImageNotFound",
                non_retryable=True,
            )
        if policy == "always" or (policy == "missing" and not present):
            try:
                client.images.pull(image)
            except docker.errors.NotFound as exc:
                raise ApplicationError(
                    f"config.image {image!r}: not found in its registry ({exc.explanation})",
                    type="ImageNotFound",
                    non_retryable=True,
                ) from None
            except docker.errors.APIError as exc:
                if present:  # `always` with a copy at hand: a registry outage is not fatal
                    log.warning("pull of %s failed, using the local copy: %s", image, exc)
                    return
                raise ApplicationError(
                    f"config.image {image!r}: pull failed: {exc.explanation or exc}",
                    type="ImagePullFailed",
                ) from None

    def _create(
        self,
        client: docker.DockerClient,
        name: str,
        image: str,
        config: dict[str, Any],
        host: dict[str, Any],
        task: AgentTask,
        payload: str,
    ) -> Container:
        env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
        info = activity.info()
        env.update(
            FLOW_INPUT=payload,
            FLOW_RUN_ID=info.workflow_id or "",
            FLOW_NODE_ID=task.node_id,
            FLOW_ATTEMPT=str(info.attempt),
        )
        try:
            # Not detached + stdin_open makes the engine set StdinOnce: our attach closing
            # stdin gives the program its EOF.
            created = client.api.create_container(
                image,
                command=config.get("command"),
                name=name,
                environment=env,
                working_dir=config.get("workdir"),
                user=self._policy.user,
                stdin_open=True,
                labels={
                    MANAGED_LABEL: "true",
                    RUN_LABEL: info.workflow_id or "",
                    NODE_LABEL: task.node_id,
                    TASK_LABEL: task.task_id,
                    HOST_LABEL: socket.gethostname(),
                    PID_LABEL: _worker_identity(),
                },
                host_config=client.api.create_host_config(**host),
            )
        except docker.errors.APIError as exc:
            retryable = exc.is_server_error() and "invalid" not in str(exc).lower()
            raise ApplicationError(
                f"cannot create the container: {exc.explanation or exc}",
                type="ContainerCreateFailed",
                non_retryable=not retryable,
            ) from None
        return client.containers.get(created["Id"])

    async def _wait(self, container: Container, deadline: float | None) -> int:
        """The exit code; kills the container when the node's time is up."""
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                await _in_thread(_kill_quietly, container)
                raise ApplicationError(
                    "container did not finish within the node's timeoutSeconds; killed",
                    type="ContainerTimeout",
                )
            step = 5.0 if remaining is None else min(5.0, remaining)
            try:
                status = await _in_thread(container.wait, timeout=step)
            except Exception as exc:  # requests' ReadTimeout / ConnectionError: still running
                if "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower():
                    continue
                raise
            return int(status.get("StatusCode", -1))


def sweep_orphans(client: docker.DockerClient) -> list[str]:
    """Remove containers of this host's meta-agent workers that are no longer alive.

    A SIGKILLed worker cannot clean up; its containers keep running under the
    daemon. Containers of live workers (another process on this host, or any
    process on another host sharing the daemon) are left alone.
    """
    removed: list[str] = []
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=true"}):
        labels = container.labels
        if labels.get(HOST_LABEL) != host:
            continue
        owner = labels.get(PID_LABEL, "")
        pid = owner.split(":", 1)[0]
        if pid.isdigit() and _process_identity(int(pid)) == owner:
            continue
        _remove_quietly(client, str(container.id))
        removed.append(str(container.name))
    if removed:
        log.warning("removed %d container(s) left by dead workers: %s", len(removed), removed)
    return removed


def _process_identity(pid: int) -> str | None:
    """`pid:starttime`, which a recycled PID does not repeat; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):  # a zombie is dead for our purposes
        return None
    return f"{pid}:{fields[19]}"


def _worker_identity() -> str:
    return _process_identity(os.getpid()) or str(os.getpid())


def _container_name(workflow_id: str, task_id: str, attempt: int) -> str:
    raw = f"ma-{workflow_id}-{task_id}-a{attempt}"
    name = re.sub(r"[^a-zA-Z0-9_.-]", "_", raw)
    return name[:200]


def _deadline(info: activity.Info) -> float | None:
    limit = info.start_to_close_timeout
    if not limit:
        return None
    return time.monotonic() + max(0.5, limit.total_seconds() - _CLEANUP_MARGIN_SECONDS)


def _start_with_stdin(client: docker.DockerClient, container: Container, payload: bytes) -> None:
    """Start the container and hand it `payload` on stdin, then EOF."""
    sock = client.api.attach_socket(str(container.id), params={"stdin": 1, "stream": 1})
    raw = getattr(sock, "_sock", sock)
    try:
        container.start()
        with contextlib.suppress(OSError):  # a command that never reads stdin may exit first
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
    finally:
        sock.close()


def _logs(container: Container) -> tuple[bytes, bytes]:
    return (
        container.logs(stdout=True, stderr=False),
        container.logs(stdout=False, stderr=True),
    )


def _state(container: Container) -> dict[str, Any]:
    container.reload()
    return dict(container.attrs.get("State") or {})


def _kill_quietly(container: Container) -> None:
    with contextlib.suppress(docker.errors.APIError):
        container.kill()


def _remove_quietly(client: docker.DockerClient, name_or_id: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        try:
            client.api.remove_container(name_or_id, force=True)
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise


def _capped(data: bytes, cap: int) -> tuple[str, bool]:
    """The last `cap` bytes (a failing program's last words matter most)."""
    if len(data) <= cap:
        return data.decode("utf-8", errors="replace"), False
    return data[-cap:].decode("utf-8", errors="replace"), True


def _last_json_line(stdout: bytes) -> Any:
    for line in reversed(stdout.decode("utf-8", errors="replace").splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def _result(
    config: dict[str, Any], exit_code: int, stdout: bytes, stderr: bytes, state: dict[str, Any]
) -> dict[str, Any]:
    cap = int(config.get("maxLogBytes") or DEFAULT_MAX_LOG_BYTES)
    out_text, out_cut = _capped(stdout, cap)
    err_text, err_cut = _capped(stderr, cap)
    output: dict[str, Any] = {
        "exit_code": exit_code,
        "stdout": out_text,
        "stderr": err_text,
        "json": _last_json_line(stdout),
    }
    if out_cut or err_cut:
        output["truncated"] = {"stdout": out_cut, "stderr": err_cut}
    if exit_code == 0:
        return output
    why = " (killed: out of memory, see config.memLimit)" if state.get("OOMKilled") else ""
    retry_on = {int(c) for c in config.get("retryOnExitCodes") or []}
    tail = err_text.strip()[-300:] or out_text.strip()[-300:]
    raise ApplicationError(
        f"container exited with code {exit_code}{why}: {tail}",
        output,
        type=f"ExitCode{exit_code}",
        non_retryable=exit_code not in retry_on,
    )


async def _in_thread(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return await asyncio.to_thread(fn, *args, **kwargs)
