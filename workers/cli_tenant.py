"""`--tenant` of the CLI's listings: what an operator acting for one tenant may see.

The CLI connects as the worker does (the tables' owner, which sees every tenant); with
`--tenant`, every listing and lookup is narrowed to that tenant, and another tenant's
run or task is "not found" in the same words as one that does not exist.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from persistence import secret_queries

TENANT_HELP = "only this tenant's (its id, domain or name)"


async def tenant_of(session: AsyncSession, ref: str | None) -> uuid.UUID | None:
    """The tenant `--tenant` names (NotFoundError if none), or None without the option."""
    if ref is None:
        return None
    return await secret_queries.find_tenant(session, ref)
