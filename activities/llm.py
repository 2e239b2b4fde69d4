"""The `llm` agent: a chat completion from any OpenAI-compatible endpoint (the `openai` SDK).

Temporal owns retries, so the SDK's own are off and its timeout is the node's.
429, 5xx, timeouts and connection errors are retryable; other 4xx are not.
`responseFormat: json` with a `jsonSchema` asks the server for that schema
(OpenAI's `json_schema`, or the `json_object` + `schema` form llama.cpp's
server understands, chosen once per endpoint) and checks the answer locally,
because not every server enforces what it accepts.
`first_token_ms` is measured: with `stream: true` up to the first content
token, otherwise up to the whole answer (which is when the first token arrives).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any, cast

import openai
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http_helpers import retryable_status
from activities.outbound import OutboundHttp
from flow_language.form_schema import validator_for
from workflows.contract import AgentTask

#: Local servers need no key, but the SDK insists on one.
_NO_KEY = "not-needed"
_SCHEMA_FORMS = ("json_schema", "json_object")


class ModelClients:
    """One `AsyncOpenAI` per (endpoint, key), sharing connections across nodes."""

    def __init__(self, http: OutboundHttp) -> None:
        self._http = http
        self._clients: dict[tuple[str | None, str], openai.AsyncOpenAI] = {}
        #: which response_format form an endpoint accepted for a JSON Schema
        self.schema_form: dict[str | None, str] = {}

    def get(self, config: dict[str, Any]) -> openai.AsyncOpenAI:
        """The client for the node's endpoint and key; the platform's key goes to the platform's
        endpoint only.
        """
        platform_endpoint = os.environ.get("OPENAI_BASE_URL")
        endpoint = config.get("endpoint") or platform_endpoint
        # The platform's key goes only to the platform's endpoint: a flow naming its own
        # endpoint must bring its own key, or it would receive ours.
        platform_key = os.environ.get("OPENAI_API_KEY") if endpoint == platform_endpoint else None
        key = str(config.get("apiKey") or platform_key or _NO_KEY)
        client = self._clients.get((endpoint, key))
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=endpoint,
                api_key=key,
                max_retries=0,
                # openai types this as its own httpx fork's client but accepts httpx's: this
                # one is on the guarded pool (API_ALLOWED_HOSTS) and keeps no cookies.
                http_client=cast(Any, self._http.client()),
            )
            self._clients[(endpoint, key)] = client
        return client

    async def aclose(self) -> None:
        """Close every client (the worker is stopping)."""
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


class LlmAgent:
    """The `llm` agent: one chat completion."""

    def __init__(self, clients: ModelClients) -> None:
        self._clients = clients

    async def __call__(self, config: dict[str, Any], task: AgentTask) -> dict[str, Any]:
        """The completion for the node's `messages`, or its `system` and `prompt`."""
        return await chat(self._clients, config, chat_messages(config))


def chat_messages(config: dict[str, Any], image_url: str | None = None) -> list[dict[str, Any]]:
    """`messages` as given, or `system` + `prompt` (with an image part for vision)."""
    if config.get("messages"):
        messages = [dict(m) for m in config["messages"]]
        if config.get("system") and messages[0].get("role") != "system":
            messages.insert(0, {"role": "system", "content": str(config["system"])})
        return messages
    messages = []
    if config.get("system"):
        messages.append({"role": "system", "content": str(config["system"])})
    prompt = str(config.get("prompt") or "")
    if image_url is None:
        messages.append({"role": "user", "content": prompt})
    else:
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_url}}]
        if prompt:
            content.insert(0, {"type": "text", "text": prompt})
        messages.append({"role": "user", "content": content})
    return messages


async def chat(
    clients: ModelClients, config: dict[str, Any], messages: list[dict[str, Any]]
) -> dict[str, Any]:
    """One chat completion, shared by the llm and vision agents: the answer, with its usage and time
    to first token, checked against `jsonSchema` when one is asked for.
    """
    client = clients.get(config)
    request: dict[str, Any] = {
        "model": str(config.get("model") or "default"),
        "messages": messages,
        "timeout": node_timeout(),
    }
    for option, name in (("temperature", "temperature"), ("maxTokens", "max_tokens")):
        if config.get(option) is not None:
            request[name] = config[option]
    if config.get("seed") is not None:
        request["seed"] = int(config["seed"])
    schema = config.get("jsonSchema") if config.get("responseFormat") == "json" else None
    if config.get("responseFormat") == "json" and schema is None:
        request["response_format"] = {"type": "json_object"}
    began = time.monotonic()
    endpoint = config.get("endpoint")
    forms = _schema_forms(clients.schema_form.get(endpoint)) if schema is not None else [None]
    for i, form in enumerate(forms):
        if form is not None:
            request["response_format"] = _response_format(form, schema or {})
        try:
            if config.get("stream"):
                answer = await _streamed(client, request, began)
            else:
                answer = _answer(await client.chat.completions.create(**request), began)
            if form is not None:
                clients.schema_form[endpoint] = form
            break
        except openai.APIStatusError as exc:
            # A server that does not know this response_format form (llama.cpp answers 500,
            # others 400 or 422): try the other one.
            if form is None or i == len(forms) - 1 or "response_format" not in str(exc):
                raise model_failure(exc) from None
        except openai.OpenAIError as exc:
            raise model_failure(exc) from None
    if config.get("responseFormat") == "json":
        answer["json"] = _parsed(answer["text"], schema, config)
    return answer


def _schema_forms(known: str | None) -> list[str | None]:
    return [known] if known else list(_SCHEMA_FORMS)


def _response_format(form: str, schema: dict[str, Any]) -> dict[str, Any]:
    if form == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    return {"type": "json_object", "schema": schema}


def _answer(completion: Any, began: float) -> dict[str, Any]:
    choice = completion.choices[0] if completion.choices else None
    usage = completion.usage
    return {
        "text": (choice.message.content or "") if choice else "",
        "json": None,
        "model": completion.model,
        "finish_reason": choice.finish_reason if choice else None,
        "usage": _usage(usage),
        "first_token_ms": round((time.monotonic() - began) * 1000),
    }


async def _streamed(
    client: openai.AsyncOpenAI, request: dict[str, Any], began: float
) -> dict[str, Any]:
    stream = await client.chat.completions.create(
        **request, stream=True, stream_options={"include_usage": True}
    )
    parts: list[str] = []
    first_token_ms: int | None = None
    model, finish_reason, usage = request["model"], None, None
    async for chunk in stream:
        model = chunk.model or model
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                if first_token_ms is None:
                    first_token_ms = round((time.monotonic() - began) * 1000)
                parts.append(choice.delta.content)
            finish_reason = choice.finish_reason or finish_reason
            activity.heartbeat()
    return {
        "text": "".join(parts),
        "json": None,
        "model": model,
        "finish_reason": finish_reason,
        "usage": _usage(usage),
        "first_token_ms": first_token_ms,
    }


def _usage(usage: Any) -> dict[str, int | None]:
    """Token counts; None where the server did not report them (some do not when streaming)."""
    return {
        "prompt_tokens": getattr(usage, "prompt_tokens", None),
        "completion_tokens": getattr(usage, "completion_tokens", None),
        "total_tokens": getattr(usage, "total_tokens", None),
    }


def _parsed(text: str, schema: dict[str, Any] | None, config: dict[str, Any]) -> Any:
    # A sampled answer may come out right next time; a greedy one will not.
    retryable = float(config.get("temperature") or 0) > 0
    try:
        value = json.loads(_strip_fences(text))
    except ValueError as exc:
        raise ApplicationError(
            f"the model's answer is not JSON ({exc}): {text[:300]!r}",
            type="LlmInvalidJson",
            non_retryable=not retryable,
        ) from None
    if schema is not None:
        problems = _schema_problems(schema, value)
        if problems:
            raise ApplicationError(
                f"the model's JSON does not match config.jsonSchema: {'; '.join(problems)}",
                {"json": value},
                type="LlmSchemaMismatch",
                non_retryable=not retryable,
            )
    return value


def _schema_problems(schema: dict[str, Any], value: Any) -> list[str]:
    errors: Iterable[Any] = validator_for(schema).iter_errors(value)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in list(errors)[:5]
    ]


def _strip_fences(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[-1].rsplit("```", 1)[0]
    return stripped


def node_timeout() -> float:
    """The node's timeout, in seconds, so a model call never outlasts its attempt (600 when the node
    has none).
    """
    limit = activity.info().start_to_close_timeout
    return limit.total_seconds() if limit else 600.0


def model_failure(exc: openai.OpenAIError) -> ApplicationError:
    """Temporal's view of an SDK error, which says whether another attempt is worth it."""
    if isinstance(exc, openai.APITimeoutError):
        return ApplicationError(f"model endpoint timed out: {exc}", type="LlmTimeout")
    if isinstance(exc, openai.APIConnectionError):
        return ApplicationError(f"model endpoint unreachable: {exc}", type="LlmConnectionError")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return ApplicationError(
            f"model endpoint answered {status}: {_message(exc)}",
            type=f"Llm{status}",
            non_retryable=not retryable_status(status),
        )
    return ApplicationError(f"{type(exc).__name__}: {exc}", type=type(exc).__name__)


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
    return str(exc)[:500]
