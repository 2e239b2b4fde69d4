"""The request signature (`workers.api.signing`): the signed request passes, and any change
to its body, its timestamp, the secret or the signature itself is refused.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.api.signing import SignatureRefused, event_message, sign, verify

NOW = 1_800_000_000
secrets_ = st.text(min_size=1, max_size=64)
bodies = st.binary(max_size=512)
timestamps = st.integers(min_value=NOW - 300, max_value=NOW + 300).map(str)


def _check(secret: str, timestamp: str, signature: str, body: bytes, tolerance: int = 300) -> None:
    verify(secret, timestamp, signature, body, now=NOW, tolerance_seconds=tolerance)


@settings(max_examples=300)
@given(secret=secrets_, timestamp=timestamps, body=bodies)
def test_the_signed_request_passes(secret: str, timestamp: str, body: bytes) -> None:
    _check(secret, timestamp, sign(secret, timestamp, body), body)


@settings(max_examples=300)
@given(secret=secrets_, timestamp=timestamps, body=bodies, other=bodies)
def test_another_body_is_refused(secret: str, timestamp: str, body: bytes, other: bytes) -> None:
    if other == body:
        return
    with pytest.raises(SignatureRefused) as refused:
        _check(secret, timestamp, sign(secret, timestamp, body), other)
    assert refused.value.status == 401


@settings(max_examples=300)
@given(secret=secrets_, other=secrets_, timestamp=timestamps, body=bodies)
def test_another_secret_is_refused(secret: str, other: str, timestamp: str, body: bytes) -> None:
    if other == secret:
        return
    with pytest.raises(SignatureRefused):
        _check(other, timestamp, sign(secret, timestamp, body), body)


@settings(max_examples=300)
@given(secret=secrets_, timestamp=timestamps, shift=st.integers(-300, 300), body=bodies)
def test_another_timestamp_is_refused(secret: str, timestamp: str, shift: int, body: bytes) -> None:
    if shift == 0:
        return
    moved = str(int(timestamp) + shift)
    with pytest.raises(SignatureRefused):
        _check(secret, moved, sign(secret, timestamp, body), body, tolerance=600)


@settings(max_examples=300)
@given(
    secret=secrets_,
    timestamp=timestamps,
    body=bodies,
    index=st.integers(min_value=0),
    char=st.characters(),
)
def test_any_change_to_the_signature_is_refused(
    secret: str, timestamp: str, body: bytes, index: int, char: str
) -> None:
    good = sign(secret, timestamp, body)
    at = index % (len(good) + 1)
    for bad in (good[:at] + char + good[at + 1 :], good[:at], good + char):
        if bad.strip().lower() == good:  # the same digest, in other case: no change
            continue
        with pytest.raises(SignatureRefused):
            _check(secret, timestamp, bad, body)


@given(secret=secrets_, body=bodies, age=st.integers(min_value=301, max_value=10**9))
def test_a_timestamp_outside_the_tolerance_is_refused_even_when_signed(
    secret: str, body: bytes, age: int
) -> None:
    for timestamp in (str(NOW - age), str(NOW + age)):
        if int(timestamp) < 0:
            continue
        with pytest.raises(SignatureRefused) as refused:
            _check(secret, timestamp, sign(secret, timestamp, body), body)
        assert refused.value.status == 401


@pytest.mark.parametrize("timestamp", ["", "-5", "1.5", "1e9", " 1800000000", "١٨٠٠", "9" * 13])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(timestamp: str) -> None:
    with pytest.raises(SignatureRefused):
        _check("s", timestamp, sign("s", timestamp, b"{}"), b"{}")


def test_the_hex_in_capitals_is_the_same_signature() -> None:
    """Some senders write the digest (and its prefix) in capitals (F11)."""
    _check("k", str(NOW), sign("k", str(NOW), b"{}").upper(), b"{}")


def test_missing_headers_are_refused() -> None:
    for timestamp, signature in ((None, "sha256=00"), (str(NOW), None), (None, None)):
        with pytest.raises(SignatureRefused) as refused:
            verify("s", timestamp, signature, b"", now=NOW, tolerance_seconds=300)
        assert refused.value.status == 401


def test_the_scheme_is_the_documented_one() -> None:
    """`openssl dgst -sha256 -hmac secret` of "<timestamp>.<body>" gives the same hex."""
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1800000000." + b'{"a":1}', hashlib.sha256).hexdigest()
    assert sign("k", "1800000000", b'{"a":1}') == f"sha256={expected}"


def _readme_signature(prefix: str, **env: str) -> str:
    """The `SIG=...` line of the README recipe starting with `prefix`, run by bash."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith(prefix))
    out = subprocess.run(
        ["bash", "-c", f'{line}\nprintf %s "$SIG"'],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return f"sha256={out.stdout.strip()}"


def test_the_readme_recipes_compute_the_signatures_the_api_checks() -> None:
    """The curl/openssl recipes sign what `verify` checks: a webhook its body, an event its
    name and body (so a signature for one event name is refused for another).
    """
    body = '{"id": 9}'
    env = {"SECRET": "k", "TS": "1800000000", "BODY": body}
    hook = _readme_signature("SIG=$(printf '%s.%s'", **env)
    verify("k", "1800000000", hook, body.encode(), now=1800000000, tolerance_seconds=300)
    event = _readme_signature("SIG=$(printf '%s.POST /events/", EVENT="order.paid", **env)
    message = event_message("order.paid", body.encode())
    verify("k", "1800000000", event, message, now=1800000000, tolerance_seconds=300)
    other = event_message("order.refunded", body.encode())
    with pytest.raises(SignatureRefused):
        verify("k", "1800000000", event, other, now=1800000000, tolerance_seconds=300)
