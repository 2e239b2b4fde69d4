"""What every agent that speaks HTTP shares: which answers to retry, capped bodies, the
headers a config names, and the failures of an answer or of a connection in one wording.

Used by the api, sensor, a2a, llm, vision and audio agents (the last two through media).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

#: 4xx answers that say "not now" rather than "never": timeout, conflict, rate limit.
_RETRYABLE_4XX = (408, 409, 429)


def retryable_status(status: int) -> bool:
    """Whether another attempt may get a different answer."""
    return status >= 500 or status in _RETRYABLE_4XX


def status_failure(message: str, status: int, *details: Any) -> ApplicationError:
    """An error answer (`Http<status>`), retried only when `retryable_status` says so."""
    return ApplicationError(
        message, *details, type=f"Http{status}", non_retryable=not retryable_status(status)
    )


def connection_failure(
    where: str, exc: BaseException, error_type: str = "HttpConnectionError"
) -> ApplicationError:
    """No answer at all (refused, reset, unreachable): retried."""
    return ApplicationError(f"{where}: {type(exc).__name__}: {exc}", type=error_type)


def config_headers(headers: Mapping[Any, Any] | None) -> dict[str, str]:
    """A config's `headers` object as HTTP headers (every key and value as text)."""
    return {str(k): str(v) for k, v in (headers or {}).items()}


async def read_capped(
    response: httpx.Response, cap: int, too_large: str, error_type: str = "ResponseTooLarge"
) -> bytes:
    """The decoded body, refused (not retried) once it passes `cap` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise ApplicationError(too_large, type=error_type, non_retryable=True)
        chunks.append(chunk)
    return b"".join(chunks)
