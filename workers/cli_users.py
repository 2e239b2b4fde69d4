"""`meta-agent users add|list|grant|revoke`: the people who may decide review tasks.

A review task assigned to a role may be decided by an active user of the run's tenant who
holds that role of that tenant (a run of no tenant: a role of no tenant). So a user is
added to one tenant (`--tenant`) or to none, and a role is always granted in the user's
own tenant; with `--tenant`, a user of another tenant reads as no user at all.
"""

from __future__ import annotations

import argparse
from typing import Any

from persistence import user_queries
from persistence.engine import one_off_session
from workers.cli_tenant import tenant_of
from workers.settings import Settings

_TENANT_HELP = "the tenant (its id, domain or name); without it: users of no tenant"


async def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    """`users add`: a new user; a taken name exits 1 (names are unique across tenants)."""
    async with one_off_session(settings.require_database_url()) as session, session.begin():
        tenant = await tenant_of(session, args.tenant)
        try:
            user = await user_queries.add_user(
                session, args.username, tenant, email=args.email, full_name=args.full_name
            )
        except user_queries.UserExistsError as exc:
            print(f"meta-agent: {exc}")
            return 1
        for role in args.role or []:
            await user_queries.grant(session, user, role)
    roles = f", roles {', '.join(args.role)}" if args.role else ""
    print(f"added user {user.username} ({user.id}){roles}")
    return 0


async def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    """`users list`: every user (or one tenant's), with the roles each holds."""
    async with one_off_session(settings.require_database_url()) as session:
        users = await user_queries.list_users(session, await tenant_of(session, args.tenant))
    if not users:
        print("no users")
        return 0
    cells = [("USER", "ID", "TENANT", "ROLES")]
    for user in users:
        name = user.username if user.is_active else f"{user.username} (inactive)"
        tenant = str(user.tenant_id) if user.tenant_id else "-"
        cells.append((name, str(user.id), tenant, ", ".join(user.roles) or "-"))
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    for row in cells:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    return 0


async def cmd_users_grant(args: argparse.Namespace, settings: Settings) -> int:
    """`users grant`: the role of the user's own tenant (created if the tenant lacks it)."""
    async with one_off_session(settings.require_database_url()) as session, session.begin():
        user = await user_queries.find_user(
            session, args.user, await tenant_of(session, args.tenant)
        )
        added = await user_queries.grant(session, user, args.role)
    print(f"{user.username} {'now holds' if added else 'already held'} role {args.role}")
    return 0


async def cmd_users_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """`users revoke`: the role of the user's tenant taken away; review tasks already decided
    stay decided.
    """
    async with one_off_session(settings.require_database_url()) as session, session.begin():
        user = await user_queries.find_user(
            session, args.user, await tenant_of(session, args.tenant)
        )
        gone = await user_queries.revoke(session, user, args.role)
    print(f"{user.username} {'no longer holds' if gone else 'did not hold'} role {args.role}")
    return 0


def add_commands(sub: Any) -> None:
    """Add `users add|list|grant|revoke`."""
    users = sub.add_parser("users", help="users and the roles that let them decide reviews")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="add a user to a tenant (or to none)")
    add.add_argument("username")
    add.add_argument("--tenant", help=_TENANT_HELP)
    add.add_argument("--email")
    add.add_argument("--full-name")
    add.add_argument("--role", action="append", help="grant this role too (repeatable)")
    add.set_defaults(handler=cmd_users_add)
    lst = users_sub.add_parser("list", help="users with their roles")
    lst.add_argument("--tenant", help="only this tenant's (its id, domain or name)")
    lst.set_defaults(handler=cmd_users_list)
    for name, handler, what in (
        ("grant", cmd_users_grant, "give a user a role of their tenant"),
        ("revoke", cmd_users_revoke, "take a role of their tenant from a user"),
    ):
        cmd = users_sub.add_parser(name, help=what)
        cmd.add_argument("user", help="username or user id")
        cmd.add_argument("role")
        cmd.add_argument("--tenant", help="only a user of this tenant (its id, domain or name)")
        cmd.set_defaults(handler=handler)
