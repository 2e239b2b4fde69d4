"""Where `{{ secrets.NAME }}` values come from. Resolved only inside activities.

A run resolves secrets in its own tenant's store (`tenant_secrets`, encrypted)
and nowhere else: a flow author cannot reach another tenant's secrets, nor the
worker's, by naming them. The worker's `SECRET_<NAME>` environment variables
reach only the tenants SECRETS_ENVIRONMENT_TENANTS names, and runs of no tenant
(an operator's own). Values never reach Temporal history or Postgres in clear:
rows record the config rendered with every secret masked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import secret_queries
from persistence.ids import parse_uuid
from persistence.secret_keys import SecretDecryptError, SecretKeys

MASK = "***"
ALL_TENANTS = "*"


class MissingSecretError(LookupError):
    """Some names resolve to nothing; the message names them all, never a value."""


class SecretUnavailableError(MissingSecretError):
    """The tenant has the secret, but this worker cannot decrypt it (no key, wrong key)."""


class SecretProvider(Protocol):
    """Where agent activities get a run's secrets; only they ever see the values."""

    async def resolve(self, tenant_id: str | None, names: Iterable[str]) -> Mapping[str, str]:
        """Values of `names` for a run of `tenant_id` (None: a run of no tenant).

        Raises MissingSecretError naming every name that is not set, in words that do
        not depend on whether another tenant has it.
        """
        ...


class EnvironmentSecrets:
    """The worker's own `SECRET_<NAME>` variables, the same for every run.

    On its own it suits a single-tenant worker; TenantSecrets consults it only
    for the tenants allowed to see the worker's variables.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, prefix: str = "SECRET_") -> None:
        self._environ = os.environ if environ is None else environ
        self.prefix = prefix

    def lookup(self, names: Iterable[str]) -> dict[str, str]:
        """The values of those `names` that are set (read now: no restart for a new one)."""
        values = {}
        for name in names:
            value = self._environ.get(f"{self.prefix}{name}")
            if value is not None:
                values[name] = value
        return values

    async def resolve(self, tenant_id: str | None, names: Iterable[str]) -> Mapping[str, str]:
        """The worker's `SECRET_<NAME>` values; the same for every tenant."""
        wanted = sorted(set(names))
        values = self.lookup(wanted)
        missing = [f"{self.prefix}{name}" for name in wanted if name not in values]
        if missing:
            raise MissingSecretError(f"secret(s) not configured: set {', '.join(missing)}")
        return values


def parse_environment_tenants(value: str | Iterable[str]) -> frozenset[str]:
    """SECRETS_ENVIRONMENT_TENANTS as tenant UUIDs (canonical text), or {'*'} for all.

    Raises ValueError naming an entry that is neither a UUID nor `*`.
    """
    entries = value.split(",") if isinstance(value, str) else list(value)
    tenants = set()
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        if entry == ALL_TENANTS:
            tenants.add(ALL_TENANTS)
            continue
        key = parse_uuid(entry)
        if key is None:
            raise ValueError(f"{entry!r} is not a tenant id (a UUID) nor '*' (every tenant)")
        tenants.add(str(key))
    return frozenset({ALL_TENANTS} if ALL_TENANTS in tenants else tenants)


class TenantSecrets:
    """A run's secrets: its tenant's store first, then (if allowed) the worker's variables.

    `keys` None: the worker has no SECRETS_KEYS; a secret in the store then fails the
    node with a message saying so, while variables still resolve where allowed.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keys: SecretKeys | None,
        environment: EnvironmentSecrets | None = None,
        environment_tenants: str | Iterable[str] = "",
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._environment = environment or EnvironmentSecrets()
        self._environment_tenants = parse_environment_tenants(environment_tenants)

    @classmethod
    def from_environ(
        cls, sessions: async_sessionmaker[AsyncSession], environ: Mapping[str, str] | None = None
    ) -> TenantSecrets:
        """Configured by SECRETS_KEYS and SECRETS_ENVIRONMENT_TENANTS (validated by Settings)."""
        env = os.environ if environ is None else environ
        raw_keys = env.get("SECRETS_KEYS", "").strip()
        return cls(
            sessions,
            SecretKeys.parse(raw_keys) if raw_keys else None,
            EnvironmentSecrets(env),
            env.get("SECRETS_ENVIRONMENT_TENANTS", ""),
        )

    def environment_allowed(self, tenant_id: str | None) -> bool:
        """Whether a run of `tenant_id` may read the worker's SECRET_* variables."""
        if tenant_id is None or ALL_TENANTS in self._environment_tenants:
            return True
        key = parse_uuid(tenant_id)
        return key is not None and str(key) in self._environment_tenants

    async def resolve(self, tenant_id: str | None, names: Iterable[str]) -> Mapping[str, str]:
        """The tenant's stored values first, then (where the tenant may) the worker's variables."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        tenant = parse_uuid(tenant_id)
        values = await self._from_store(tenant, wanted) if tenant is not None else {}
        env_allowed = self.environment_allowed(tenant_id)
        if env_allowed:
            from_env = self._environment.lookup(n for n in wanted if n not in values)
            values = {**from_env, **values}  # the tenant's own value wins over the worker's
        missing = [name for name in wanted if name not in values]
        if missing:
            raise MissingSecretError(self._missing_message(tenant_id, missing, env_allowed))
        return values

    async def _from_store(self, tenant: uuid.UUID, names: list[str]) -> dict[str, str]:
        async with self._sessions() as session:
            sealed = await secret_queries.sealed_secrets(session, tenant, names)
        if not sealed:
            return {}
        if self._keys is None:
            raise SecretUnavailableError(
                f"secret(s) {', '.join(sorted(sealed))} are stored for this run's tenant, but "
                "this worker has no key to decrypt them: set SECRETS_KEYS on the worker to the "
                "keys `meta-agent secrets set` used"
            )
        try:
            return {name: self._keys.open(tenant, name, s) for name, s in sealed.items()}
        except SecretDecryptError as exc:
            raise SecretUnavailableError(str(exc)) from None

    def _missing_message(self, tenant_id: str | None, missing: list[str], env: bool) -> str:
        # Depends only on the names and on this run's own tenant: whether another tenant
        # has a secret of that name cannot be read from it.
        names = ", ".join(missing)
        if tenant_id is None:
            variables = ", ".join(f"{self._environment.prefix}{n}" for n in missing)
            return f"secret(s) not configured: set {variables} (a run of no tenant)"
        hint = f"store with `meta-agent secrets set --tenant {tenant_id} NAME`"
        if env:
            variables = ", ".join(f"{self._environment.prefix}{n}" for n in missing)
            hint += f", or set {variables} on the worker"
        return f"secret(s) not configured for this run's tenant: {names} ({hint})"


def masked(names: Iterable[str]) -> dict[str, str]:
    """The `secrets` a template sees where values must not appear (a row's recorded config): each
    name, its value masked.
    """
    return dict.fromkeys(names, MASK)
