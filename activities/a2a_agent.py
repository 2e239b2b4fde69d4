"""The `a2a` agent: send one message to an A2A agent and follow its task (the `a2a-sdk` client).

The agent card is discovered at `agentUrl`; `mode` picks how the task is
followed: `blocking` (the server answers when the task settles), `streaming`
(events as they happen), or `polling` (return at once, then `tasks/get`).
The node ends when the remote task is `completed`, `failed`, `canceled`,
`rejected` or `input-required`; output `{state, task_id, context_id, artifacts,
messages}`. `input-required` leaves by the node's `input_required` edge, or
fails the node when it has none. Cancelling the node cancels the remote task.
The message ID is derived from the run, node and attempt, so a remote agent
can recognise a retried delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.client.client import Client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Value
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http_helpers import config_headers, connection_failure, retryable_status
from activities.outbound import OutboundHttp
from flow_language.definition import A2A_NEEDS_INPUT_STATES, INPUT_REQUIRED_HANDLE
from workflows.contract import AgentTask

_STATES = {
    TaskState.TASK_STATE_SUBMITTED: "submitted",
    TaskState.TASK_STATE_WORKING: "working",
    TaskState.TASK_STATE_COMPLETED: "completed",
    TaskState.TASK_STATE_FAILED: "failed",
    TaskState.TASK_STATE_CANCELED: "canceled",
    TaskState.TASK_STATE_INPUT_REQUIRED: "input-required",
    TaskState.TASK_STATE_REJECTED: "rejected",
    TaskState.TASK_STATE_AUTH_REQUIRED: "auth-required",
}
#: states after which the remote task will not move without us
_SETTLED = {"completed", "failed", "canceled", "rejected", *A2A_NEEDS_INPUT_STATES}


class A2AAgent:
    """The `a2a` agent; one instance per worker, so its HTTP pool is shared."""

    def __init__(self, http: OutboundHttp) -> None:
        self._http = http

    async def __call__(self, config: dict[str, Any], task: AgentTask) -> dict[str, Any]:
        """One attempt: the message sent, the remote task followed until it settles (or needs
        input).
        """
        headers = config_headers(config.get("headers"))
        # A client of this call's own (on the shared, guarded pool): the headers (often a
        # secret token) belong to this call only, and the SDK sets headers of its own on
        # the client it is given, which must not stay for other runs' calls.
        async with self._http.client(headers=headers) as http:
            return await self._talk(http, config, task)

    async def _talk(
        self, http: httpx.AsyncClient, config: dict[str, Any], task: AgentTask
    ) -> dict[str, Any]:
        client = await self._client(http, config)
        tracker = _Tracker()
        try:
            request = SendMessageRequest(message=_message(config, task))
            async for event in client.send_message(request):
                tracker.apply(event)
                activity.heartbeat()
                if tracker.settled:
                    break
            interval = float(config.get("pollIntervalSeconds") or 0.5)
            while not tracker.settled and tracker.task_id:
                await asyncio.sleep(interval)
                tracker.apply_task(await client.get_task(GetTaskRequest(id=tracker.task_id)))
        except asyncio.CancelledError:
            if tracker.task_id and not tracker.settled:
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        asyncio.wait_for(
                            client.cancel_task(CancelTaskRequest(id=tracker.task_id)), 5
                        )
                    )
            raise
        except A2AError as exc:
            raise _failure(config, exc) from None
        except httpx.HTTPError as exc:
            raise _unreachable(config, exc) from None
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        return _outcome(tracker, task)

    async def _client(self, http: httpx.AsyncClient, config: dict[str, Any]) -> Client:
        """A client for the agent whose card is at `agentUrl` (the httpx client stays ours)."""
        mode = str(config.get("mode") or "streaming")
        factory = ClientFactory(
            ClientConfig(
                streaming=mode == "streaming",
                polling=mode == "polling",
                httpx_client=http,
            )
        )
        try:
            return await factory.create_from_url(str(config["agentUrl"]))
        except A2AError as exc:
            status = getattr(exc, "status_code", None)
            raise ApplicationError(
                f"config.agentUrl {config['agentUrl']}: no agent card ({exc})",
                type="A2AAgentCardUnavailable",
                non_retryable=status is not None and not retryable_status(status),
            ) from None
        except httpx.HTTPError as exc:
            raise _unreachable(config, exc) from None


def _unreachable(config: dict[str, Any], exc: httpx.HTTPError) -> ApplicationError:
    return connection_failure(f"config.agentUrl {config['agentUrl']}", exc, "A2AConnectionError")


class _Tracker:
    """The remote task as the events describe it."""

    def __init__(self) -> None:
        self.task_id: str | None = None
        self.context_id: str | None = None
        self.state = "submitted"
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = []
        self.direct_reply = False

    @property
    def settled(self) -> bool:
        return self.direct_reply or self.state in _SETTLED

    def apply(self, event: StreamResponse) -> None:
        if event.HasField("message"):
            self.messages.append(_message_dict(event.message))
            self.direct_reply, self.state = True, "completed"
        elif event.HasField("task"):
            self.apply_task(event.task)
        elif event.HasField("status_update"):
            self.task_id = event.status_update.task_id or self.task_id
            self._status(event.status_update.status)
        elif event.HasField("artifact_update"):
            artifact = _artifact_dict(event.artifact_update.artifact)
            known = self.artifacts.get(artifact["id"])
            if event.artifact_update.append and known is not None:
                known["parts"].extend(artifact["parts"])
            else:
                self.artifacts[artifact["id"]] = artifact

    def apply_task(self, task: Task) -> None:
        self.task_id, self.context_id = task.id or self.task_id, task.context_id or self.context_id
        for artifact in task.artifacts:
            entry = _artifact_dict(artifact)
            self.artifacts[entry["id"]] = entry
        for message in task.history:
            if message.role == Role.ROLE_AGENT:
                entry = _message_dict(message)
                if entry not in self.messages:
                    self.messages.append(entry)
        self._status(task.status)

    def _status(self, status: Any) -> None:
        self.state = _STATES.get(status.state, self.state)
        if status.HasField("message"):
            entry = _message_dict(status.message)
            if entry not in self.messages:
                self.messages.append(entry)


def _message(config: dict[str, Any], task: AgentTask) -> Message:
    content = config.get("message")
    if isinstance(content, str):
        parts = [Part(text=content)]
    else:
        value = Value()
        ParseDict(content, value)  # type: ignore[arg-type]  # any JSON value, not only objects
        parts = [Part(data=value)]
    info = activity.info()
    key = f"{info.workflow_id}/{task.task_id}/{info.attempt}"
    return Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
        parts=parts,
    )


def _parts(parts: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        if part.HasField("text"):
            out.append({"text": part.text})
        elif part.HasField("data"):
            out.append({"data": _whole_numbers(MessageToDict(part.data))})
        elif part.HasField("url"):
            out.append({"url": part.url, "media_type": part.media_type or None})
        elif part.HasField("raw"):
            out.append({"raw_bytes": len(part.raw), "media_type": part.media_type or None})
    return out


def _whole_numbers(value: Any) -> Any:
    """Protobuf's Value keeps every number as a double: give 42.0 back as 42."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _message_dict(message: Message) -> dict[str, Any]:
    role = "agent" if message.role == Role.ROLE_AGENT else "user"
    return {"role": role, "parts": _parts(message.parts)}


def _artifact_dict(artifact: Any) -> dict[str, Any]:
    return {
        "id": artifact.artifact_id,
        "name": artifact.name or None,
        "parts": _parts(artifact.parts),
    }


def _text(entries: list[dict[str, Any]]) -> str:
    return " ".join(p["text"] for e in entries for p in e["parts"] if "text" in p)


def _outcome(tracker: _Tracker, task: AgentTask) -> dict[str, Any]:
    output = {
        "state": tracker.state,
        "task_id": tracker.task_id,
        "context_id": tracker.context_id,
        "artifacts": list(tracker.artifacts.values()),
        "messages": tracker.messages,
    }
    why = _text(tracker.messages[-1:]) or "no reason given"
    if tracker.state in ("failed", "rejected", "canceled"):
        raise ApplicationError(
            f"the remote agent's task ended {tracker.state}: {why}",
            output,
            type=f"A2ATask{tracker.state.capitalize()}",
            non_retryable=True,
        )
    if tracker.state in A2A_NEEDS_INPUT_STATES and (
        INPUT_REQUIRED_HANDLE not in (task.outgoing_handles or [])
    ):
        raise ApplicationError(
            f"the remote agent needs {tracker.state.split('-')[0]} ({why}) and the node has no "
            f"'{INPUT_REQUIRED_HANDLE}' edge to follow",
            output,
            type="A2AInputRequired",
            non_retryable=True,
        )
    return output


def _failure(config: dict[str, Any], exc: A2AError) -> ApplicationError:
    name = type(exc).__name__
    transient = "Timeout" in name or name in ("InternalError", "A2AClientError")
    return ApplicationError(
        f"A2A call to {config['agentUrl']} failed: {name}: {exc}",
        type=f"A2A{name}",
        non_retryable=not transient,
    )
