"""Images and sounds handed to model nodes: a URL, a data URL or plain base64.

Shared by the vision and audio agents. Downloads are capped like the api
agent's bodies, and a malformed payload is the flow's mistake, not retried.
"""

from __future__ import annotations

import base64
import binascii

import httpx
from temporalio.exceptions import ApplicationError

from activities.http_helpers import connection_failure, read_capped, status_failure

DEFAULT_MAX_MEDIA_BYTES = 20_000_000

_SIGNATURES = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "audio/wav"),
    (b"ID3", "audio/mpeg"),
    (b"OggS", "audio/ogg"),
    (b"fLaC", "audio/flac"),
)


def sniff_type(data: bytes, fallback: str = "application/octet-stream") -> str:
    """The media type the bytes' leading signature says, or `fallback`: what a caller claims is not
    trusted.
    """
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            if mime == "audio/wav" and data[8:12] == b"WEBP":
                return "image/webp"
            return mime
    return fallback


def is_url(source: str) -> bool:
    """Whether `source` is downloaded rather than decoded."""
    return source.startswith(("http://", "https://"))


async def load(http: httpx.AsyncClient, source: str, field: str, cap: int | None = None) -> bytes:
    """The bytes behind `source`; `field` names the config key in error messages."""
    limit = cap or DEFAULT_MAX_MEDIA_BYTES
    if is_url(source):
        try:
            async with http.stream("GET", source) as response:
                status = response.status_code
                if status >= 400:
                    raise status_failure(f"config.{field}: GET {source} answered {status}", status)
                too_large = f"config.{field}: {source} is larger than {limit} bytes"
                return await read_capped(response, limit, too_large, "MediaTooLarge")
        except httpx.HTTPError as exc:
            raise connection_failure(f"config.{field}: GET {source}", exc) from None
    payload = source.split(",", 1)[1] if source.startswith("data:") else source
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApplicationError(
            f"config.{field}: neither an http(s) URL, a data URL nor base64",
            type="InvalidMedia",
            non_retryable=True,
        ) from None
    if len(data) > limit:
        raise ApplicationError(
            f"config.{field}: larger than {limit} bytes", type="MediaTooLarge", non_retryable=True
        )
    return data


def data_url(data: bytes, fallback: str) -> str:
    """`data` as a data URL, its type sniffed from its bytes."""
    return f"data:{sniff_type(data, fallback)};base64,{base64.b64encode(data).decode()}"


def as_image_url(source: str) -> str:
    """What an OpenAI-style image part takes: URLs pass through, base64 becomes a data URL."""
    if is_url(source) or source.startswith("data:"):
        return source
    try:
        head = base64.b64decode(source[:64].strip() + "=" * (-len(source[:64].strip()) % 4))
    except (binascii.Error, ValueError):
        head = b""
    return f"data:{sniff_type(head, 'image/png')};base64,{source.strip()}"
