"""Agents reach only what the outbound policy allows, and carry no state between runs.

Each case runs a real flow on a worker whose policy is the production default
(nothing but public addresses) or a given allow-list, against real HTTP servers
on loopback, and checks that a refused call never reached the server.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.outbound import OutboundHttp, OutboundPolicy
from activities.registry import Dependencies
from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply, Request
from tests.invariant import assert_queue_tells_the_truth
from tests.support import make_tenant
from workers.settings import Settings
from workers.worker import build_worker

WorkerWith = Callable[[str], AbstractAsyncContextManager[FlowWorker]]


@pytest.fixture
def worker_with(
    temporal_env: WorkflowEnvironment, session_maker: async_sessionmaker[AsyncSession]
) -> WorkerWith:
    """A worker whose agents follow `API_ALLOWED_HOSTS` = the given text (not the suite's)."""

    @asynccontextmanager
    async def start(allow_list: str) -> AsyncIterator[FlowWorker]:
        queue = f"outbound-{uuid.uuid4().hex[:10]}"
        http = OutboundHttp(policy=OutboundPolicy.parse(allow_list))
        deps = Dependencies(sessions=session_maker, http=http)
        try:
            async with build_worker(temporal_env.client, Settings(temporal_task_queue=queue), deps):
                worker = FlowWorker(temporal_env.client, queue, session_maker)
                yield worker
                await assert_queue_tells_the_truth(
                    temporal_env.client, session_maker, queue, worker.started
                )
        finally:
            await deps.aclose()

    return start


@pytest.fixture
def second_peer() -> Iterator[HttpPeer]:
    peer = HttpPeer().start()
    yield peer
    peer.stop()


def call(url: str, **config: Any) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("call", "api", {"url": url, **config}, retry={"maxAttempts": 1}),
        ],
        "edges": [edge("start", "call")],
    }


def _loopback_host_names() -> list[str]:
    """Names the hosts file (or the resolver) maps to loopback, `localhost` first."""
    names = ["localhost"]
    for name in (socket.gethostname(), "ip6-localhost", "ip6-loopback"):
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if infos and all(_is_loopback(str(info[4][0])) for info in infos):
            names.append(name)
    return names


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def loopback_forms(port: int) -> list[str]:
    forms = [
        f"http://127.0.0.1:{port}/x",
        f"http://127.1:{port}/x",
        f"http://0x7f000001:{port}/x",
        f"http://2130706433:{port}/x",
        f"http://017700000001:{port}/x",
        f"http://[::1]:{port}/x",
        f"http://[::ffff:127.0.0.1]:{port}/x",
        f"http://0.0.0.0:{port}/x",
        f"http://169.254.169.254:{port}/latest/meta-data/",
        f"http://10.0.0.1:{port}/x",
    ]
    return forms + [f"http://{name}:{port}/x" for name in _loopback_host_names()]


async def _refused(worker: FlowWorker, definition: dict[str, Any], **run: Any) -> str:
    run_id = await worker.fail(definition, **run)
    row = (await worker.task_rows(run_id))["call"]
    assert row["status"] == "failed"
    error = str(row["error"])
    assert "refused" in error, error
    assert "'call'" in error, error
    assert (await worker.run_row(run_id))["status"] == "failed"
    return error


async def test_every_form_of_an_internal_address_is_refused_before_connecting(
    worker_with: WorkerWith, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/x", Reply(200, {"reached": True}))
    port = int(http_peer.base.rsplit(":", 1)[1])
    async with worker_with("") as worker:
        for url in loopback_forms(port):
            error = await _refused(worker, call(url))
            assert "API_ALLOWED_HOSTS" in error, error
        # A URL the caller supplies through a template is checked the same way.
        await _refused(worker, call("{{ input.url }}"), inputs={"url": f"{http_peer.base}/x"})
    assert http_peer.requests == []


async def test_a_redirect_to_an_internal_address_is_refused_at_that_hop(
    worker_with: WorkerWith, http_peer: HttpPeer, second_peer: HttpPeer
) -> None:
    inner = int(second_peer.base.rsplit(":", 1)[1])
    second_peer.route("GET", "/secret", Reply(200, {"secret": "internal"}))
    for i, target in enumerate(
        (f"http://127.0.0.1:{inner}/secret", f"http://localhost:{inner}/secret")
    ):
        http_peer.route("GET", f"/hop{i}", Reply(302, "", {"Location": target}))
    outer = int(http_peer.base.rsplit(":", 1)[1])
    async with worker_with(f"127.0.0.1:{outer}") as worker:
        for i in range(2):
            error = await _refused(worker, call(f"{http_peer.base}/hop{i}"))
            assert str(inner) in error or "localhost" in error, error
    assert len(http_peer.calls("GET", "/hop0")) == 1
    assert second_peer.requests == []


async def test_redirect_chains_are_capped(worker_with: WorkerWith, http_peer: HttpPeer) -> None:
    http_peer.route("GET", "/loop", Reply(302, "", {"Location": "/loop"}))
    port = int(http_peer.base.rsplit(":", 1)[1])
    async with worker_with(f"127.0.0.1:{port}") as worker:
        run_id = await worker.fail(call(f"{http_peer.base}/loop"))
        row = (await worker.task_rows(run_id))["call"]
    assert "redirect" in str(row["error"]).lower(), row["error"]
    assert len(http_peer.calls("GET", "/loop")) == OutboundPolicy().max_redirects + 1


async def test_the_allow_list_lets_exactly_the_listed_host_through(
    worker_with: WorkerWith, http_peer: HttpPeer, second_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/x", Reply(200, {"reached": True}))
    second_peer.route("GET", "/x", Reply(200, {"reached": True}))
    port = int(http_peer.base.rsplit(":", 1)[1])
    async with worker_with(f"localhost:{port}") as worker:
        result, _ = await worker.run(call(f"http://localhost:{port}/x"))
        assert result.outputs["call"]["json"] == {"reached": True}
        # the same server under another name, and another port of the same name: refused
        await _refused(worker, call(f"http://127.0.0.1:{port}/x"))
        await _refused(worker, call(f"http://localhost:{second_peer.base.rsplit(':', 1)[1]}/x"))
    assert len(http_peer.requests) == 1
    assert second_peer.requests == []


async def test_a_cookie_set_for_one_tenant_never_reaches_another(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    token = f"tenant-a-{uuid.uuid4().hex}"
    http_peer.route(
        "GET", "/login", Reply(200, {"ok": True}, {"Set-Cookie": f"session={token}; Path=/"})
    )

    def echo(request: Request) -> Reply:
        return Reply(200, {"cookie": request.headers.get("Cookie")})

    http_peer.route("GET", "/whoami", echo)
    async with flow_worker.sessions() as s, s.begin():
        tenant_a, tenant_b = await make_tenant(s), await make_tenant(s)
    login, _ = await flow_worker.run(call(f"{http_peer.base}/login"), tenant_id=str(tenant_a))
    assert token in str(login.outputs["call"]["headers"])  # the server did set it
    for tenant in (tenant_b, tenant_a):
        result, run_id = await flow_worker.run(
            call(f"{http_peer.base}/whoami"), tenant_id=str(tenant)
        )
        assert result.outputs["call"]["json"] == {"cookie": None}
        assert token not in str(await flow_worker.task_rows(run_id))
    assert all("Cookie" not in r.headers for r in http_peer.calls("GET", "/whoami"))


def test_the_allow_list_setting_is_checked_at_start() -> None:
    with pytest.raises(ValueError, match="not a port"):
        OutboundPolicy.parse("localhost:http")
    with pytest.raises(ValueError, match="neither a host name"):
        OutboundPolicy.parse("orders internal")
    with pytest.raises(ValueError, match="api_allowed_hosts"):
        Settings(api_allowed_hosts="orders/internal")
    policy = OutboundPolicy.parse("orders.internal:8443, 10.0.0.0/8, [::1]:8099")
    assert policy.refusal("orders.internal", "10.1.2.3", 8443) is None
    assert policy.refusal("orders.internal", "192.168.0.1", 80) is not None
    assert policy.refusal("x", "10.9.9.9", 1) is None
    assert policy.refusal("x", "::1", 8099) is None
    assert policy.refusal("x", "::1", 8098) is not None
    assert policy.refusal("x", "93.184.216.34", 443) is None


async def test_the_platforms_model_key_goes_only_to_the_platforms_endpoint(
    flow_worker: FlowWorker, http_peer: HttpPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform_key = f"sk-platform-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", platform_key)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{http_peer.base}/platform/v1")
    answer = {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
    }
    for path in ("/platform/v1/chat/completions", "/tenant/v1/chat/completions"):
        http_peer.route("POST", path, Reply(200, answer))
    flow = {
        "nodes": [
            node("start", "start"),
            node("own", "llm", {"endpoint": f"{http_peer.base}/tenant/v1", "prompt": "hi"}),
            node("platform", "llm", {"prompt": "hi"}),
        ],
        "edges": [edge("start", "own"), edge("start", "platform")],
    }
    await flow_worker.run(flow)
    (own,) = http_peer.calls("POST", "/tenant/v1/chat/completions")
    (platform,) = http_peer.calls("POST", "/platform/v1/chat/completions")
    assert platform_key not in str(own.headers)
    sent = {k.lower(): v for k, v in platform.headers.items()}
    assert sent["authorization"] == f"Bearer {platform_key}"
