r"""The one rule that makes any text storable in Postgres.

Flow data comes from people and remote agents, and may hold characters that
Postgres cannot store: NUL (U+0000), which neither `text` nor `jsonb` accepts,
and lone UTF-16 surrogates (U+D800..U+DFFF, which JSON can carry as `\ud800`),
which are not UTF-8 at all. Refusing them would fail a run over one character;
dropping them would lose it silently. So each such character is kept, escaped as
the six characters of its JSON escape: NUL becomes `\u0000`, a lone surrogate
`\udXXX`. Every other character is stored as it is.

The rule applies to every text and JSON value the engine writes (inputs,
outputs, errors, review titles, decisions, comments): `storable_json` is the
engine's JSON serializer, and `StorableText` / `StorableString` are the column
types of the free-text columns. Temporal keeps the original values; only the
rows carry the escaped form.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: In JSON text, json.dumps already wrote NUL as the escape `\u0000`, which jsonb refuses;
#: an escape is one preceded by an even number of backslashes.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_JSON_SURROGATE = re.compile("[\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escaped_surrogates(value: str) -> str:
    """`value` with each lone surrogate written as its JSON escape (NUL is kept: it is text)."""
    return _JSON_SURROGATE.sub(_escaped, value)


def storable_text(value: str) -> str:
    """`value` with each character Postgres cannot store written as its JSON escape."""
    return _UNSTORABLE.sub(_escaped, value)


def storable_json(value: Any) -> str:
    """JSON text of `value` that `jsonb` accepts, strings escaped by the same rule."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        # The string's NUL is kept as the six characters `\u0000`: in JSON, `\\u0000`.
        text = _JSON_NUL.sub(r"\1\\\\u0000", text)
    if _JSON_SURROGATE.search(text):
        text = _JSON_SURROGATE.sub(lambda m: "\\" + _escaped(m), text)
    return text


class StorableText(TypeDecorator[str]):
    """A `text` column that stores any Python string (see the module docstring)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Store text Postgres would refuse (NUL, lone surrogates) in its escaped form."""
        return storable_text(value) if isinstance(value, str) else value


class StorableString(TypeDecorator[str]):
    """A `varchar(n)` column that stores any Python string (see the module docstring)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Store text Postgres would refuse (NUL, lone surrogates) in its escaped form."""
        return storable_text(value) if isinstance(value, str) else value
