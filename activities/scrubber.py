"""One scrubber for everything that leaves an agent activity: outputs, errors, logs.

A secret leaks less often in clear than in an encoding of it: a 4xx message
quotes the URL it was sent to (URL-encoded), an API echoes the request back as
JSON (escaped), a basic-auth header or a container's output carries it in
base64. So besides the exact value the scrubber masks those forms, including
the part of a base64 text that a secret produces wherever it sits inside a
longer encoded string. Values that a flow transforms on purpose (reversed,
sliced) cannot all be recognised; the reversed and hex forms are masked as
cheap extra cover.

Log lines are scrubbed by a record factory, so every handler sees the masked
text: while an activity holds secrets they are registered here, and any record
created meanwhile (the SDK's own "activity failed" lines included) is masked.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

from activities.secrets import MASK

#: Shorter base64 fragments than this are too likely to occur by chance to be masked.
_MIN_BASE64_CORE = 8


def encoded_forms(secret: str) -> set[str]:
    """Every text form of `secret` the scrubber looks for."""
    if not secret:
        return set()
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        secret[::-1],
        raw.hex(),
        raw.hex().upper(),
    }
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms.update({whole, whole.rstrip("=")})
        forms.update(_base64_cores(raw, encode))
    return {form for form in forms if form}


def _base64_cores(raw: bytes, encode: Any) -> set[str]:
    """What `raw` always encodes to inside a longer text, for each of the 3 alignments."""
    cores = set()
    for offset in range(3):
        text = encode(b"\0" * offset + raw).decode()
        first_group = -(-offset // 3)
        last_group = (offset + len(raw)) // 3
        core = text[4 * first_group : 4 * last_group]
        if len(core) >= _MIN_BASE64_CORE:
            cores.add(core)
    return cores


def percent_encoded(secret: str) -> re.Pattern[str]:
    """Any mix of raw and %XX-encoded characters of `secret` (`+` for a space).

    Each URL library leaves a different set of characters unescaped, so no fixed
    list of quoted forms covers them all.
    """
    parts = []
    for char in secret:
        escaped = "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        options = [re.escape(char), re.escape(escaped)]
        if char == " ":
            options.append(re.escape("+"))
        parts.append(f"(?:{'|'.join(options)})")
    return re.compile("".join(parts), re.IGNORECASE)


class Scrubber:
    """Masks a fixed set of secrets in strings, JSON-like values and exceptions."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        patterns = []
        for secret in set(secrets):
            forms |= encoded_forms(secret)
            if secret:
                patterns.append(percent_encoded(secret))
        # Longest first, so a form that contains another is masked whole.
        self._needles = sorted(forms, key=len, reverse=True)
        self._patterns = patterns

    def __bool__(self) -> bool:
        return bool(self._needles)

    def text(self, value: str) -> str:
        for pattern in self._patterns:
            value = pattern.sub(MASK, value)
        for needle in self._needles:
            if needle in value:
                value = value.replace(needle, MASK)
        return value

    def value(self, value: Any) -> Any:
        """`value` with every string in it (dict keys too) masked."""
        if not self._needles:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


class _ActiveSecrets:
    """The secrets held by running activities of this process, counted per holder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()
        self.scrubber = Scrubber(())

    @contextmanager
    def holding(self, secrets: Iterable[str]) -> Iterator[None]:
        values = [s for s in set(secrets) if s]
        if not values:
            yield
            return
        with self._lock:
            self._held.update(values)
            self.scrubber = Scrubber(self._held)
        try:
            yield
        finally:
            with self._lock:
                self._held.subtract(values)
                self._held = +self._held
                self.scrubber = Scrubber(self._held)


ACTIVE = _ActiveSecrets()


def _scrubbing_factory(inner: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = inner(*args, **kwargs)
        scrubber = ACTIVE.scrubber
        if not scrubber:
            return record
        try:
            message = record.getMessage()
        except Exception:  # a malformed call is logging's to report, not ours
            return record
        record.msg, record.args = scrubber.text(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrubber.text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrubber.text(record.stack_info)
        return record

    make.scrubs_secrets = True  # type: ignore[attr-defined]
    return make


def install_log_scrubbing() -> None:
    """Mask held secrets in every log record this process creates (idempotent)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "scrubs_secrets", False):
        logging.setLogRecordFactory(_scrubbing_factory(current))
