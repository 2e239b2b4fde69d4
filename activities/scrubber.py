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
from functools import lru_cache
from typing import Any

from activities.secrets import MASK

#: Shorter base64 fragments than this are too likely to occur by chance to be masked.
_MIN_BASE64_CORE = 8


def encoded_forms(secret: str) -> set[str]:
    """The texts that stand for `secret`, before any escaping of their characters."""
    if not secret:
        return set()
    forms = {secret, secret[::-1]}
    raw = secret.encode("utf-8", "surrogatepass")
    for hexed in (raw.hex(), *(raw.hex(separator) for separator in " :-")):
        forms |= {hexed, hexed.upper()}
    encoded32 = base64.b32encode(raw).decode()
    forms |= {encoded32, encoded32.rstrip("=")}
    # base64 of the value, and of the value as it sits in a JSON document
    for data in {raw, json.dumps(secret)[1:-1].encode()}:
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            whole = encode(data).decode()
            forms |= {whole, whole.rstrip("=")}
            forms |= _base64_cores(data, encode)
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


_HTML_NAMES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;"}


def _spellings(char: str) -> set[str]:
    """How one character may be written by a URL encoder, a JSON encoder or HTML."""
    utf8 = char.encode("utf-8", "surrogatepass")
    percent = "".join(f"%{byte:02X}" for byte in utf8)
    utf16 = char.encode("utf-16-be", "surrogatepass")
    unicode_escape = "".join(
        f"\\u{int.from_bytes(utf16[i : i + 2], 'big'):04X}" for i in range(0, len(utf16), 2)
    )
    spellings = {
        char,
        percent,
        percent.replace("%", "%25"),  # encoded twice
        unicode_escape,
        json.dumps(char)[1:-1],
        f"&#{ord(char)};",
        f"&#x{ord(char):X};",
    }
    if char == " ":
        spellings |= {"+", "%2B"}
    if char == "/":
        spellings.add("\\/")
    if char in _HTML_NAMES:
        spellings.add(_HTML_NAMES[char])
    return spellings


def spelled(form: str) -> str:
    r"""A pattern for `form` with each character in any of its spellings, mixed at will.

    Each URL library leaves a different set of characters unescaped, and JSON encoders
    differ in what they escape (`\u003c` for `<`, `\/` for `/`), so no fixed list of
    encoded forms covers them all.
    """
    parts = []
    for char in form:
        options = sorted(map(re.escape, _spellings(char)), key=len, reverse=True)
        parts.append(f"(?:{'|'.join(options)})")
    return "".join(parts)


@lru_cache(maxsize=256)
def _form_patterns(secret: str) -> tuple[tuple[str, str], ...]:
    """Each form of `secret` with its pattern: built once per secret, since an activity
    and the log scrubber both need them each time the secret is used.
    """
    return tuple((form, spelled(form)) for form in encoded_forms(secret))


class Scrubber:
    """Masks a fixed set of secrets in strings, JSON-like values and exceptions."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: dict[str, str] = {}
        for secret in set(secrets):
            forms.update(_form_patterns(secret))
        # Longest first, so a form that contains another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(forms[f] for f in ordered), re.IGNORECASE) if ordered else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        """`value` with every form of every secret masked."""
        return value if self._pattern is None else self._pattern.sub(MASK, value)

    def value(self, value: Any) -> Any:
        """`value` with every string in it (dict keys too) masked."""
        if self._pattern is None:
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
