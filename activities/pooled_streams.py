"""The agents' HTTP connections, with httpcore's idle check made cheap.

Before every request httpcore asks each pooled connection whether it has expired, and an
idle HTTP/1.1 connection answers by asking its stream whether the socket is readable (the
server closed it). The anyio stream answers through anyio's typed attributes, which build
a mapping of every attribute the socket has on each call: with the worker's pool of shared
connections that was about 5 % of a worker's CPU under a 50-way fan-out (py-spy). This
stream keeps the raw socket it was opened on and asks it directly, as httpcore's own
check does once it has the socket; everything else goes to the anyio stream unchanged.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
from httpcore._utils import is_socket_readable


class ReadableCheckedStream(httpcore.AsyncNetworkStream):
    """An httpcore network stream that answers `is_readable` from its socket."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        # anyio's raw socket (on asyncio, the transport's `TransportSocket`): what httpcore's
        # own check would fetch, and ask for its file descriptor, on every call.
        self._socket: typing.Any = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        """Read from the inner stream."""
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Write to the inner stream."""
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        """Close the inner stream."""
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        """TLS over the inner stream; the new stream is checked the same way."""
        return ReadableCheckedStream(
            await self._inner.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> typing.Any:
        """`is_readable` from the socket kept at connect time; the rest from the inner stream."""
        if info == "is_readable" and self._socket is not None:
            return is_socket_readable(self._socket)
        return self._inner.get_extra_info(info)
