"""How a request to the API proves who sent it: HMAC-SHA256 over its timestamp and body.

    X-Meta-Timestamp: <unix seconds>
    X-Meta-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>." + raw body)>

The timestamp is signed with the body, so a captured request cannot be sent again later
than the tolerance (default 300 s) with another timestamp, nor its body changed. A `GET`
has no body: its signed body is `GET <path>` (e.g. `GET /runs/hook-3f2a`), so one read's
signature opens no other run. An event's signed body is `POST /events/<name>` and a newline
before its raw body (`event_message`): the name is what the event means (which flows start,
which runs wake), so a captured event cannot be sent again as another. A webhook's URL
names one hook with its own secret already, so its signed body is the raw body alone.
Digests are compared with `hmac.compare_digest`, in time that does not depend on where
they differ.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Meta-Signature"
TIMESTAMP_HEADER = "X-Meta-Timestamp"
PREFIX = "sha256="
#: Longest timestamp read (digits): far beyond any real clock, short of a costly int().
_MAX_TIMESTAMP_DIGITS = 12


class SignatureRefused(Exception):
    """The request is not signed as its credentials require; the message says how not,
    never what was expected.
    """

    def __init__(self, message: str, status: int = 401) -> None:
        self.status = status
        super().__init__(message)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Meta-Signature` value of `body` sent at `timestamp` (what senders compute)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return PREFIX + digest.hexdigest()


def event_message(name: str, body: bytes) -> bytes:
    """What a `POST /events/<name>` signs beside its timestamp: the request line, then the body."""
    return f"POST /events/{name}\n".encode() + body


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int,
) -> None:
    """Return if `signature` signs `body` at `timestamp` with `secret`, within
    `tolerance_seconds` of `now`; SignatureRefused otherwise (401; 400 for a timestamp
    that is not a number of seconds).
    """
    if not timestamp or not signature:
        raise SignatureRefused(f"the request needs {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise SignatureRefused(f"{TIMESTAMP_HEADER} must be whole unix seconds", status=400)
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise SignatureRefused(
            f"{TIMESTAMP_HEADER} is more than {tolerance_seconds} s from the server's time: "
            "sign the request again"
        )
    expected = sign(secret, timestamp, body).encode()
    # Hex (and its prefix) in capitals is the same digest: some senders write it so.
    if not hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace")):
        raise SignatureRefused(f"{SIGNATURE_HEADER} does not sign this request")
