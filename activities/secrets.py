"""Where `{{ secrets.NAME }}` values come from. Resolved only inside activities.

The default reads environment variables `SECRET_<NAME>`; a vault is another
`SecretProvider`. Values never reach Temporal history or Postgres: rows
record the config rendered with every secret masked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Protocol

MASK = "***"


class MissingSecretError(LookupError):
    pass


class SecretProvider(Protocol):
    def resolve(self, names: Iterable[str]) -> Mapping[str, str]:
        """Values of `names`; raises MissingSecretError naming every one that is not set."""
        ...


class EnvironmentSecrets:
    def __init__(self, environ: Mapping[str, str] | None = None, prefix: str = "SECRET_") -> None:
        self._environ = os.environ if environ is None else environ
        self._prefix = prefix

    def resolve(self, names: Iterable[str]) -> Mapping[str, str]:
        values, missing = {}, []
        for name in sorted(set(names)):
            value = self._environ.get(f"{self._prefix}{name}")
            if value is None:
                missing.append(f"{self._prefix}{name}")
            else:
                values[name] = value
        if missing:
            raise MissingSecretError(f"secret(s) not configured: set {', '.join(missing)}")
        return values


def masked(names: Iterable[str]) -> dict[str, str]:
    return dict.fromkeys(names, MASK)


def scrub(value: object, secrets: Iterable[str]) -> object:
    """`value` with every occurrence of a secret replaced by the mask.

    An API that echoes a token back must not carry it into history or Postgres.
    """
    needles = sorted({v for v in secrets if v}, key=len, reverse=True)
    if not needles:
        return value

    def walk(v: object) -> object:
        if isinstance(v, str):
            for needle in needles:
                v = v.replace(needle, MASK)
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)
