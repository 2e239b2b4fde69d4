"""Who is calling: a webhook's sender (the hook's secret) or a tenant (its API secret).

Both sign the same way (`signing`); what differs is the secret and what it opens. A
hook's secret is the tenant secret its trigger names (`config.secretName`); a tenant's is
its stored secret named by API_TENANT_SECRET_NAME. Secrets are read from the tenant's
encrypted store and opened here, in the API process, only to check a signature.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from temporalio.client import Client

from persistence import secret_queries
from persistence.ids import parse_uuid
from persistence.secret_keys import SecretDecryptError, SecretKeys
from persistence.trigger_queries import Hook
from workers.api.requests import ApiError
from workers.api.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureRefused, verify

log = logging.getLogger("meta_agent.api")

#: The header naming the tenant of a tenant-signed request (its id).
TENANT_HEADER = "X-Meta-Tenant"
#: The header naming the hook whose secret signs a `GET /runs/ID`.
HOOK_HEADER = "X-Meta-Hook"


@dataclass(frozen=True)
class ApiContext:
    """What the API's handlers share: Temporal, the database, keys and limits."""

    client: Client
    task_queue: str
    sessions: async_sessionmaker[AsyncSession]
    keys: SecretKeys | None
    max_body_bytes: int
    tenant_secret_name: str
    tenant_tolerance_seconds: int
    #: How long a body may take to arrive (`requests.read_body`: 408 beyond).
    body_seconds: float = 10.0
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True)
class Caller:
    """A verified caller: its tenant, and the hook whose secret it signed with (None: the
    tenant's own API secret, which reaches every run of the tenant).
    """

    tenant_id: uuid.UUID
    trigger_id: str | None = None
    #: The secret it signed with: it keys the ids of its idempotent runs (`ownership`).
    secret: str = field(default="", repr=False)


async def _stored_secret(ctx: ApiContext, tenant_id: uuid.UUID, name: str) -> str | None:
    """The tenant's secret `name`, opened; None when it has none of that name."""
    async with ctx.sessions() as session:
        sealed = await secret_queries.sealed_secrets(session, tenant_id, [name])
    if name not in sealed:
        return None
    if ctx.keys is None:
        log.error(
            "signing secret %s of tenant %s is stored, but SECRETS_KEYS is unset", name, tenant_id
        )
        raise ApiError(503, "the API cannot open its signing secrets (no SECRETS_KEYS)")
    try:
        return ctx.keys.open(tenant_id, name, sealed[name])
    except SecretDecryptError as exc:
        log.error("signing secret %s of tenant %s does not open: %s", name, tenant_id, exc)
        raise ApiError(503, "the API cannot open this signing secret") from None


def _check(ctx: ApiContext, request: Request, secret: str, body: bytes, tolerance: int) -> None:
    try:
        verify(
            secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
            now=ctx.clock(),
            tolerance_seconds=tolerance,
        )
    except SignatureRefused as exc:
        raise ApiError(exc.status, str(exc)) from None


async def verify_hook(ctx: ApiContext, hook: Hook, request: Request, body: bytes) -> Caller:
    """The hook's sender, if the request is signed with the hook's secret; 401 otherwise."""
    secret = None
    if hook.tenant_id is not None and hook.secret_name is not None:
        secret = await _stored_secret(ctx, hook.tenant_id, hook.secret_name)
    if secret is None or hook.tenant_id is None:
        log.warning(
            "webhook %s of flow %s has no secret to verify with (config.secretName %r, "
            "tenant %s): every delivery is refused",
            hook.trigger_id,
            hook.workflow_id,
            hook.secret_name,
            hook.tenant_id,
        )
        raise ApiError(401, "this hook has no signing secret set: nothing it receives is taken")
    _check(ctx, request, secret, body, hook.tolerance_seconds)
    return Caller(hook.tenant_id, hook.trigger_id, secret)


async def verify_tenant(ctx: ApiContext, request: Request, body: bytes) -> Caller:
    """The tenant X-Meta-Tenant names, if the request is signed with its API secret.

    Every refusal (no such tenant, no secret, a stale timestamp, a bad signature) is the
    same 401 in the same words, so the answer tells no one which tenants exist.
    """
    tenant = parse_uuid(request.headers.get(TENANT_HEADER, ""))
    refused = ApiError(
        401, f"sign the request with your tenant's API secret and name it in {TENANT_HEADER}"
    )
    if tenant is None:
        raise refused
    secret = await _stored_secret(ctx, tenant, ctx.tenant_secret_name)
    if secret is None:
        raise refused
    try:
        _check(ctx, request, secret, body, ctx.tenant_tolerance_seconds)
    except ApiError:
        raise refused from None
    return Caller(tenant, secret=secret)
