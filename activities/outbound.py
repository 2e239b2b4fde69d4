"""The one way agents reach the network: a policy on the address actually connected to.

A flow author writes the URLs their nodes call, and a run's caller may fill them
in through templates, so every HTTP-speaking agent (and the sensor's MQTT
source) goes through here. Checking the URL's host name is not enough: `127.1`,
`0x7f000001`, `2130706433` and a DNS name that resolves to loopback all reach
the same place. So the check runs in the connection layer, on each address DNS
gives, and the connection is then made to that checked address (never to the
name again), which leaves no window for a second resolution to answer
differently. Redirects open connections through the same layer, so every hop
is checked too.

By default only globally routable addresses may be reached. The platform's own
services (and the tests' local peers) are let through by `API_ALLOWED_HOSTS`:
host names (any address they resolve to) and addresses or CIDR blocks.

The clients handed out keep no cookies: one pool of connections is shared by
every run, but nothing a server sets for one run's call goes out with another's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

from activities.http_tracing import traced
from activities.pooled_streams import ReadableCheckedStream

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_REDIRECTS = 5
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(Exception):
    """A connection the policy does not allow; nothing was sent."""

    def __init__(self, host: str, port: int | None, reason: str) -> None:
        self.host = host
        self.reason = reason
        where = host if port is None else f"{host}:{port}"
        super().__init__(
            f"outbound connection to {where} refused: {reason}; the platform's own services "
            "are reachable only when API_ALLOWED_HOSTS lists them"
        )


@dataclass(frozen=True)
class OutboundPolicy:
    """Which destinations agents may connect to; a port of None means any port."""

    allowed_hosts: frozenset[tuple[str, int | None]] = frozenset()
    allowed_networks: tuple[tuple[IPNetwork, int | None], ...] = ()
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    @classmethod
    def parse(
        cls, allow_list: str | Iterable[str] = "", max_redirects: int | None = None
    ) -> OutboundPolicy:
        """From `API_ALLOWED_HOSTS`: comma-separated host names, addresses and CIDR blocks,
        each optionally with a port (`orders.internal:8443`, `10.0.0.0/8`, `[::1]:8099`).
        """
        entries = allow_list.split(",") if isinstance(allow_list, str) else list(allow_list)
        hosts: set[tuple[str, int | None]] = set()
        networks: list[tuple[IPNetwork, int | None]] = []
        for raw in entries:
            entry, port = _split_port(raw.strip().lower())
            if not entry:
                continue
            try:
                networks.append((ipaddress.ip_network(entry.strip("[]"), strict=False), port))
            except ValueError:
                if not _is_host_name(entry):
                    raise ValueError(
                        f"{raw.strip()!r} is neither a host name nor an address or CIDR block"
                    ) from None
                hosts.add((_normal_host(entry), port))
        return cls(
            allowed_hosts=frozenset(hosts),
            allowed_networks=tuple(networks),
            max_redirects=DEFAULT_MAX_REDIRECTS if max_redirects is None else max_redirects,
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> OutboundPolicy:
        """The policy `API_ALLOWED_HOSTS` and `API_MAX_REDIRECTS` describe."""
        env = os.environ if environ is None else environ
        redirects = env.get("API_MAX_REDIRECTS")
        return cls.parse(env.get("API_ALLOWED_HOSTS", ""), int(redirects) if redirects else None)

    def refusal(self, host: str, address: str, port: int) -> str | None:
        """Why connecting to `address`:`port` (`host` resolved to it) is refused, or None."""
        name = _normal_host(host)
        if (name, None) in self.allowed_hosts or (name, port) in self.allowed_hosts:
            return None
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        for network, allowed_port in self.allowed_networks:
            if ip in network and allowed_port in (None, port):
                return None
        kind = _restricted_kind(ip)
        return None if kind is None else f"{address} is a {kind} address"

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host` this policy lets us connect to; refused if none."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(_normal_host(host), port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        allowed: list[str] = []
        refusals: list[str] = []
        for *_, sockaddr in infos:
            address = str(sockaddr[0])
            reason = self.refusal(host, address, port)
            if reason is None:
                if address not in allowed:
                    allowed.append(address)
            elif reason not in refusals:
                refusals.append(reason)
        if not allowed:
            raise OutboundRefused(host, port, ", ".join(refusals) or "no address")
        return allowed


def _restricted_kind(ip: IPAddress) -> str | None:
    """The kind of non-public address `ip` is, looking inside v6 forms that embed a v4 one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _restricted_kind(embedded)
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return kind
    return None if ip.is_global else "non-public"


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port` or `a.b.c.d/n:port` into its parts; IPv6 needs brackets."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        return entry, None
    if not port:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r}: {port!r} is not a port")
    return host, int(port)


def _normal_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _is_host_name(entry: str) -> bool:
    labels = entry.rstrip(".").split(".")
    return all(
        label and len(label) < 64 and all(c.isalnum() or c in "-_" for c in label)
        for label in labels
    )


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await self._policy.addresses(host, port):
            try:
                # TLS still verifies and sends SNI for `host`: httpcore passes the origin's
                # name to start_tls, not the address connected to.
                return ReadableCheckedStream(
                    await self._inner.connect_tcp(
                        address, port, timeout, local_address, socket_options
                    )
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused(path, None, "unix sockets are not reachable from a flow")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _BorrowedTransport(httpx.AsyncBaseTransport):
    """A client's view of the shared pool: closing the client leaves the pool open."""

    def __init__(self, pool: httpx.AsyncHTTPTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class _NoCookies(DefaultCookiePolicy):
    """Refuse to keep any cookie: a jar shared by runs would carry one tenant's to another."""

    def set_ok(self, cookie: typing.Any, request: typing.Any) -> bool:
        return False

    def return_ok(self, cookie: typing.Any, request: typing.Any) -> bool:
        return False


def _guarded_pool(policy: OutboundPolicy, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    pool = transport._pool
    # httpx has no public way to hand httpcore a network backend; the pool reads this
    # attribute for every new connection. Fail at start-up, not silently, if that changes.
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx version does not let the outbound policy guard its pool")
    pool._network_backend = _GuardedBackend(policy)
    return transport


@dataclass
class OutboundHttp:
    """Connections shared by every agent of a worker; clients that carry no state between runs."""

    policy: OutboundPolicy = field(default_factory=OutboundPolicy.from_environment)
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=10.0))
    limits: httpx.Limits = field(
        default_factory=lambda: httpx.Limits(max_connections=200, max_keepalive_connections=50)
    )

    def __post_init__(self) -> None:
        self._pool = _guarded_pool(self.policy, self.limits)
        # Closing a client closes only this view, never the pool; one view serves them all.
        self._transport = traced(_BorrowedTransport(self._pool))
        self.shared = self.client()

    def client(self, **kwargs: typing.Any) -> httpx.AsyncClient:
        """A client on the shared pool, without a cookie jar; closing it keeps the pool."""
        kwargs.setdefault("timeout", self.timeout)
        return httpx.AsyncClient(
            transport=self._transport,
            cookies=CookieJar(policy=_NoCookies()),
            max_redirects=self.policy.max_redirects,
            trust_env=False,
            **kwargs,
        )

    async def aclose(self) -> None:
        """Close the shared client and the pool under every client (the worker is stopping)."""
        await self.shared.aclose()
        await self._pool.aclose()


def outbound_refusal(exc: BaseException) -> OutboundRefused | None:
    """The refusal behind `exc`, however deep a client library wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OutboundRefused):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
