"""`meta-agent secrets`: a tenant's secrets, stored encrypted, for `{{ secrets.NAME }}`.

A value is read from standard input (or a file), never from the command line,
where `ps` and shell history would show it to anyone on the machine. Nothing
here prints a value: `list` shows names, key ids and dates.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from persistence import secret_queries
from persistence.engine import one_off_session
from persistence.queries import NotFoundError
from persistence.secret_keys import SecretKeys, SecretKeysError
from workers.settings import Settings


def _name(value: str) -> str:
    try:
        return secret_queries.check_name(value)
    except secret_queries.BadSecretNameError as exc:
        raise SystemExit(f"meta-agent: {exc}") from None


def _strip_newline(value: str) -> str:
    """`echo value |` and files end in a newline that is no part of the secret."""
    if value.endswith("\r\n"):
        return value[:-2]
    return value.removesuffix("\n")


def _read_value(args: argparse.Namespace) -> str:
    if args.value_file:
        try:
            value = _strip_newline(Path(args.value_file).read_text())
        except OSError as exc:
            raise SystemExit(f"meta-agent: cannot read {args.value_file}: {exc.strerror}") from None
    elif sys.stdin.isatty():
        value = getpass.getpass(f"value of {args.name} (not echoed): ")
    else:
        value = _strip_newline(sys.stdin.read())
    if not value:
        raise SystemExit("meta-agent: the value is empty; nothing was stored")
    return value


async def cmd_secrets_set(args: argparse.Namespace, settings: Settings) -> int:
    """`secrets set`: store or replace a tenant's secret, encrypted with the current key."""
    name = _name(args.name)
    keys = settings.require_secret_keys()
    value = _read_value(args)
    async with one_off_session(settings.require_database_url()) as session, session.begin():
        tenant = await secret_queries.find_tenant(session, args.tenant)
        created = await secret_queries.set_secret(session, keys, tenant, name, value)
    print(f"{'stored' if created else 'replaced'} secret {name} of tenant {tenant}")
    return 0


async def cmd_secrets_list(args: argparse.Namespace, settings: Settings) -> int:
    """`secrets list`: names, key ids and dates; never a value."""
    async with one_off_session(settings.require_database_url()) as session:
        tenant = await secret_queries.find_tenant(session, args.tenant)
        rows = await secret_queries.list_secrets(session, tenant)
    if not rows:
        print(f"no secrets for tenant {tenant}")
        return 0
    print(f"{'NAME':<40} {'KEY':<12} {'CREATED':<20} UPDATED")
    for row in rows:
        print(
            f"{row.name:<40} {row.key_id:<12} {row.created_at:%Y-%m-%d %H:%M:%S} "
            f"{row.updated_at:%Y-%m-%d %H:%M:%S}"
        )
    return 0


async def cmd_secrets_delete(args: argparse.Namespace, settings: Settings) -> int:
    """`secrets delete`: a name the tenant does not have is an error, not a quiet success."""
    name = _name(args.name)
    async with one_off_session(settings.require_database_url()) as session, session.begin():
        tenant = await secret_queries.find_tenant(session, args.tenant)
        deleted = await secret_queries.delete_secret(session, tenant, name)
    if not deleted:
        raise NotFoundError(f"tenant {tenant} has no secret {name}")
    print(f"deleted secret {name} of tenant {tenant}")
    return 0


async def cmd_secrets_rotate(args: argparse.Namespace, settings: Settings) -> int:
    """`secrets rotate`: every secret re-encrypted with the current key; exits 1 if some could not
    be read, and those stay under their old key.
    """
    keys = settings.require_secret_keys()
    async with one_off_session(settings.require_database_url()) as session, session.begin():
        report = await secret_queries.rotate_secrets(session, keys)
    print(
        f"re-encrypted {report.reencrypted} secret(s) with key {keys.current_id!r}; "
        f"{report.current} already used it"
    )
    for tenant, _name, why in report.failed:
        print(f"meta-agent: tenant {tenant}: {why}", file=sys.stderr)
    if report.failed:
        print(
            f"meta-agent: {len(report.failed)} secret(s) left under their old key: keep that "
            "key in SECRETS_KEYS, or store those values again",
            file=sys.stderr,
        )
        return 1
    return 0


async def cmd_secrets_keygen(args: argparse.Namespace, settings: Settings) -> int:
    """`secrets keygen`: prints a new key entry; needs no database and stores nothing."""
    try:
        print(SecretKeys.generate_entry(args.id))
    except SecretKeysError as exc:
        raise SystemExit(f"meta-agent: {exc}") from None
    return 0


def add_commands(sub: Any) -> None:
    """Add `secrets set|list|delete|rotate|keygen`; no argument takes a secret's value."""
    secrets = sub.add_parser(
        "secrets",
        help="a tenant's secrets for {{ secrets.NAME }}: set, list, delete, rotate keys",
        description="Secrets are stored per tenant, AES-GCM encrypted with SECRETS_KEYS; a run "
        "reads only its own tenant's. Values are read from stdin, never from arguments.",
    )
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    tenant_help = "tenant id, domain, or name (when no other tenant has it)"

    set_ = secrets_sub.add_parser(
        "set", help="store a secret; the value comes from stdin (or --value-file)"
    )
    set_.add_argument("--tenant", required=True, help=tenant_help)
    set_.add_argument("name", help="as templates write it: {{ secrets.NAME }}")
    set_.add_argument("--value-file", help="read the value from this file instead of stdin")
    set_.set_defaults(handler=cmd_secrets_set)

    lst = secrets_sub.add_parser("list", help="a tenant's secret names and dates (no values)")
    lst.add_argument("--tenant", required=True, help=tenant_help)
    lst.set_defaults(handler=cmd_secrets_list)

    delete = secrets_sub.add_parser("delete", help="remove a tenant's secret")
    delete.add_argument("--tenant", required=True, help=tenant_help)
    delete.add_argument("name")
    delete.set_defaults(handler=cmd_secrets_delete)

    rotate = secrets_sub.add_parser(
        "rotate", help="re-encrypt every secret with the current (first) SECRETS_KEYS key"
    )
    rotate.set_defaults(handler=cmd_secrets_rotate)

    keygen = secrets_sub.add_parser("keygen", help="print a new keyid:base64 key for SECRETS_KEYS")
    keygen.add_argument("--id", help="key id (default: random)")
    keygen.set_defaults(handler=cmd_secrets_keygen)
