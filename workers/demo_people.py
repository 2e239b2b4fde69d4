"""The demo tenant and people `meta-agent dev` seeds, so the README's review walk-through
works as written: `order-approval` asks role `finance` (escalating to `finance-lead`), and
`meta-agent hitl decide TASK --approve --as reviewer` needs a user holding it.

Seeding is idempotent: whatever already exists is kept, whatever is missing is added, so a
stack started again (or a person who renamed a role) loses nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import user_queries

log = logging.getLogger("meta_agent.dev")

DEMO_TENANT = "demo"
DEMO_DOMAIN = "demo.local"
#: username -> the roles of the demo tenant it holds (the roles the example reviews ask for).
DEMO_USERS: dict[str, tuple[str, ...]] = {
    "reviewer": ("finance",),
    "lead": ("finance-lead",),
    "requester": (),
}


@dataclass(frozen=True)
class DemoPerson:
    """A seeded user, as the banner prints it."""

    username: str
    user_id: uuid.UUID
    roles: tuple[str, ...]


@dataclass(frozen=True)
class DemoPeople:
    """The demo tenant and its people."""

    tenant_id: uuid.UUID
    people: list[DemoPerson]

    def banner_lines(self) -> list[str]:
        """The banner's lines: the tenant, each user with their roles."""
        lines = [f"  demo tenant  {DEMO_TENANT} ({self.tenant_id})"]
        for person in self.people:
            roles = f"role {', '.join(person.roles)}" if person.roles else "no role"
            lines.append(f"    {person.username:<10} {person.user_id}  {roles}")
        return lines


async def seed_demo_people(sessions: async_sessionmaker[AsyncSession]) -> DemoPeople:
    """The demo tenant, its users and their roles, added where missing.

    A username taken by a user of another tenant is left alone (and left out), since
    usernames are unique across tenants.
    """
    people = []
    async with sessions() as session, session.begin():
        tenant_id = await user_queries.ensure_tenant(session, DEMO_TENANT, DEMO_DOMAIN)
        for username, roles in DEMO_USERS.items():
            user = await user_queries.ensure_user(session, username, tenant_id)
            if user is None:
                log.warning(
                    "user %r belongs to another tenant: not seeded as a demo user", username
                )
                continue
            for role in roles:
                await user_queries.grant(session, user, role)
            people.append(DemoPerson(username, user.id, roles))
    return DemoPeople(tenant_id, people)
