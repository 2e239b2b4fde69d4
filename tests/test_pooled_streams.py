"""The agents' pooled connections notice a server that closed them, as httpcore's own check does.

`activities.pooled_streams` answers httpcore's idle check (`is_readable`) from the socket
itself. Against a real asyncio server on loopback: an open idle connection is not
readable, one the server closed is, and the shared pool never sends a request down a
connection the server has dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpcore

from activities.outbound import OutboundHttp, OutboundPolicy
from activities.pooled_streams import ReadableCheckedStream

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@asynccontextmanager
async def server_closing_after(replies: int) -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback HTTP/1.1 server that answers `replies` requests per connection, keeps it
    alive (no `Connection: close`), then closes it; yields its port and the requests each
    connection carried, the latest last (negative until the server has closed it).
    """
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(0)
        for _ in range(replies):
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(RESPONSE)
            await writer.drain()
            served[-1] += 1
        writer.close()
        await writer.wait_closed()
        served[-1] = -served[-1]

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, served
    finally:
        server.close()
        await server.wait_closed()


async def test_an_idle_connection_is_readable_only_once_the_server_closed_it() -> None:
    async with server_closing_after(replies=1) as (port, _):
        inner = await httpcore.AnyIOBackend().connect_tcp("127.0.0.1", port)
        stream = ReadableCheckedStream(inner)
        assert stream.get_extra_info("is_readable") is False
        await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await stream.read(1024) == RESPONSE
        for _ in range(50):  # the server closes it after its one reply
            if stream.get_extra_info("is_readable"):
                break
            await asyncio.sleep(0.02)
        assert stream.get_extra_info("is_readable") is True
        # What it does not answer itself comes from the stream underneath.
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
        await stream.aclose()
        assert stream.get_extra_info("is_readable") is True  # closed: nothing to reuse


async def test_the_shared_pool_never_reuses_a_connection_the_server_dropped() -> None:
    http = OutboundHttp(policy=OutboundPolicy.parse("127.0.0.0/8"))
    try:
        async with server_closing_after(replies=1) as (port, served):
            for _ in range(5):
                response = await http.shared.get(f"http://127.0.0.1:{port}/")
                assert response.text == "ok"
                for _ in range(500):  # until the server has dropped the idle connection
                    if served[-1] < 0:
                        break
                    await asyncio.sleep(0.01)
        # Each request went on a fresh connection; none failed on a dropped one.
        assert served == [-1, -1, -1, -1, -1]
        async with server_closing_after(replies=5) as (port, served):
            for _ in range(5):
                assert (await http.shared.get(f"http://127.0.0.1:{port}/")).text == "ok"
        assert [abs(n) for n in served] == [5]  # a connection the server keeps is reused
    finally:
        await http.aclose()
