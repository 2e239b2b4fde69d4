"""The `api` agent: one HTTP request with httpx.

4xx answers (but 408, 409 and 429) are the caller's mistake and are not retried;
5xx, 408, 409, 429, timeouts and connection errors are. Cancellation aborts the
request (the awaiting coroutine is cancelled, httpx closes the connection).
The response body is read up to a cap, so a huge answer cannot fill the
history or the database.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http_helpers import (
    config_headers,
    connection_failure,
    read_capped,
    status_failure,
)
from workflows.contract import AgentTask

DEFAULT_MAX_RESPONSE_BYTES = 1_000_000


class ApiAgent:
    """The `api` agent, on the worker's guarded HTTP client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def __call__(self, config: dict[str, Any], task: AgentTask) -> dict[str, Any]:
        """One request; the answer's body read up to `maxResponseBytes`, and 4xx other than 408, 409
        and 429 failing for good.
        """
        request = self._build(config)
        cap = int(config.get("maxResponseBytes") or DEFAULT_MAX_RESPONSE_BYTES)
        # The node's timeoutSeconds bounds the attempt; let httpx wait as long as that.
        limit = activity.info().start_to_close_timeout
        if limit:
            request.extensions["timeout"] = httpx.Timeout(limit.total_seconds()).as_dict()
        try:
            response = await self._client.send(
                request,
                stream=True,
                follow_redirects=bool(config.get("followRedirects", True)),
            )
        except httpx.TimeoutException as exc:
            raise ApplicationError(
                f"{request.method} {request.url}: timed out ({exc})", type="HttpTimeout"
            ) from None
        except httpx.TooManyRedirects as exc:
            raise ApplicationError(
                f"{request.method} {request.url}: {exc}",
                type="TooManyRedirects",
                non_retryable=True,
            ) from None
        except httpx.TransportError as exc:
            raise connection_failure(f"{request.method} {request.url}", exc) from None
        try:
            body = await read_capped(response, cap, f"response larger than maxResponseBytes={cap}")
        finally:
            await response.aclose()
        output = _output(response, body)
        self._check_status(config, request, response, output)
        return output

    def _build(self, config: dict[str, Any]) -> httpx.Request:
        method = str(config.get("method", "GET")).upper()
        headers = config_headers(config.get("headers"))
        auth = config.get("auth") or {}
        kind = auth.get("type")
        if kind == "bearer":
            headers["Authorization"] = f"Bearer {auth.get('token', '')}"
        elif kind == "basic":
            basic = httpx.BasicAuth(str(auth.get("username", "")), str(auth.get("password", "")))
            headers["Authorization"] = basic._auth_header
        elif kind == "header":
            headers[str(auth.get("header", "Authorization"))] = str(auth.get("value", ""))
        kwargs: dict[str, Any] = {"headers": headers, "params": _query(config.get("query"))}
        if "body" in config and method not in ("GET", "HEAD"):
            body = config["body"]
            body_type = config.get("bodyType") or ("text" if isinstance(body, str) else "json")
            if body_type == "json":
                kwargs["json"] = body
            elif body_type == "form":
                kwargs["data"] = body
            else:
                kwargs["content"] = str(body)
        try:
            return self._client.build_request(method, str(config["url"]), **kwargs)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            raise ApplicationError(
                f"config.url {config.get('url')!r}: {exc}",
                type="InvalidRequest",
                non_retryable=True,
            ) from None

    def _check_status(
        self,
        config: dict[str, Any],
        request: httpx.Request,
        response: httpx.Response,
        output: dict[str, Any],
    ) -> None:
        status = response.status_code
        expected = config.get("expectStatus")
        if expected is not None:
            allowed = [expected] if isinstance(expected, int) else list(expected)
            ok = status in allowed
        else:
            ok = status < 400
        if ok:
            return
        snippet = (output.get("text") or json.dumps(output.get("json")))[:300]
        message = f"{request.method} {request.url} answered {status}: {snippet}"
        raise status_failure(message, status, output)


def _query(query: Any) -> dict[str, Any] | None:
    if not query:
        return None
    return {str(k): v if isinstance(v, list) else str(v) for k, v in dict(query).items()}


def _output(response: httpx.Response, body: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"status": response.status_code, "headers": dict(response.headers)}
    encoding = response.encoding or "utf-8"
    text = body.decode(encoding, errors="replace")
    if "json" in response.headers.get("content-type", "") and body:
        try:
            out["json"] = json.loads(text)
            return out
        except ValueError:
            pass
    out["text"] = text
    return out
