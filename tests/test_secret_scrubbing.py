"""A failing call that carries a secret leaves no trace of it, nor of its encodings.

The secret travels in a URL's query string, a header and basic auth; the
server answers 400 with a body that echoes it raw, JSON-escaped, URL-encoded
and in base64. Rows, the whole Temporal history (payloads and failure details
decoded) and every log line are then searched for each form.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import uuid
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from temporalio.client import Client

from activities.scrubber import MASK, Scrubber, encoded_forms
from flow_language.drawing import edge, node
from tests.http_peer import HttpPeer, Reply, Request
from tests.span_capture import TracedWorker


def _secret() -> str:
    return f's3cr3t/+"&= <{uuid.uuid4().hex[:12]}>'


def _forms(secret: str) -> dict[str, str]:
    basic = base64.b64encode(f"robot:{secret}".encode()).decode()
    return {
        "raw": secret,
        "url": quote(secret, safe=""),
        "url+": quote_plus(secret),
        "json": json.dumps(secret)[1:-1],
        "base64": base64.b64encode(secret.encode()).decode(),
        # what the base64 of `robot:<secret>` holds of the secret alone
        "basic": basic[8:-4],
    }


def _decoded_history_text(history: dict[str, Any]) -> str:
    """The history as text, with every payload's base64 `data` decoded too."""
    parts = [json.dumps(history)]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "data" and isinstance(item, str):
                    with contextlib.suppress(ValueError):
                        parts.append(base64.b64decode(item).decode("utf-8", "replace"))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(history)
    return "\n".join(parts)


def _spans_text(spans: list[ReadableSpan]) -> str:
    """Every span as text: names, attributes, statuses and events."""
    return "\n".join(span.to_json() for span in spans)


async def _history_text(client: Client, workflow_id: str) -> str:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return _decoded_history_text(json.loads(history.to_json()))


async def test_a_failing_call_leaks_no_form_of_its_secret(
    traced_worker: TracedWorker,
    http_peer: HttpPeer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = _secret()
    monkeypatch.setenv("SECRET_LEAKY_TOKEN", secret)

    def echo(request: Request) -> Reply:
        token = request.headers.get("X-Token", "")
        return Reply(
            400,
            {
                "path": request.path,
                "token": token,
                "token_b64": base64.b64encode(token.encode()).decode(),
                "authorization": request.headers.get("Authorization"),
                "message": f"bad token {token}",
            },
        )

    http_peer.route("GET", "/orders", echo)
    flow = {
        "nodes": [
            node("start", "start"),
            node(
                "call",
                "api",
                {
                    "url": http_peer.base + "/orders?token={{ secrets.LEAKY_TOKEN }}",
                    "headers": {"X-Token": "{{ secrets.LEAKY_TOKEN }}"},
                    "auth": {
                        "type": "basic",
                        "username": "robot",
                        "password": "{{ secrets.LEAKY_TOKEN }}",
                    },
                },
                retry={"maxAttempts": 1},
            ),
        ],
        "edges": [edge("start", "call")],
    }
    with caplog.at_level(logging.DEBUG):
        run_id = await traced_worker.fail(flow)
    (request,) = http_peer.calls("GET", "/orders")
    assert request.headers["X-Token"] == secret  # the secret really was used
    forms = {**_forms(secret), "as the client encoded it": request.path.split("token=")[1]}
    places = {
        "task rows": str(await traced_worker.task_rows(run_id)),
        "run row": str(await traced_worker.run_row(run_id)),
        "history": await _history_text(traced_worker.client, run_id),
        "log": caplog.text,
        "traces": _spans_text(traced_worker.finished()),
    }
    assert "Http400" in places["history"]
    assert MASK in places["task rows"]
    assert "/orders" in places["traces"]  # the call's span is there, its secret masked
    for where, text in places.items():
        for form, value in forms.items():
            assert value not in text, f"the {form} form of the secret is in the {where}"


def test_every_encoding_is_masked_wherever_it_sits() -> None:
    secret = _secret()
    scrubber = Scrubber([secret])
    for prefix in ("", "a", "ab", "abc"):
        blob = base64.b64encode(f"{prefix}{secret}!".encode()).decode()
        masked = scrubber.text(f"header {blob} end")
        # what is left of the blob is the groups shared with the neighbours, no more
        assert MASK in masked
        assert len(masked) - len(f"header {MASK} end") <= 16, masked
    for form in encoded_forms(secret):
        assert scrubber.value({"k": [f"x{form}y"]}) == {"k": [f"x{MASK}y"]}
    mixed = "".join(c if i % 2 else f"%{ord(c):02x}" for i, c in enumerate(secret))
    assert scrubber.text(f"?t={mixed}&") == f"?t={MASK}&"
    escaped_json = json.dumps(secret)[1:-1]
    spellings = {
        "Go's JSON": escaped_json.replace("<", "\\u003c").replace("&", "\\u0026"),
        "PHP's JSON": escaped_json.replace("/", "\\/"),
        "all \\u": "".join(f"\\u{ord(c):04x}" for c in secret),
        "URL-encoded twice": quote(quote(secret, safe=""), safe=""),
        "URL-encoded base64": quote(base64.b64encode(secret.encode()).decode(), safe=""),
        "HTML": secret.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;"),
        "base32": base64.b32encode(secret.encode()).decode(),
        "spaced hex": secret.encode().hex(" "),
    }
    for name, spelling in spellings.items():
        assert scrubber.text(f"x{spelling}y") == f"x{MASK}y", name
    in_json = base64.b64encode(json.dumps({"t": secret}).encode()).decode()
    assert len(scrubber.text(in_json)) < len(in_json) - 16
    assert scrubber.value({secret: 1}) == {MASK: 1}
    assert Scrubber([]).value({"a": secret}) == {"a": secret}
