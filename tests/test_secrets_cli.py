"""`meta-agent secrets` and the settings of the tenant secret store.

The commands commit, and `rotate` sees every row, so they run on a database of
their own; `workers.cli.main` is called in a thread (it runs its own event loop).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from activities.secrets import TenantSecrets
from persistence.engine import create_engine, session_factory
from persistence.migrate import upgrade_async
from persistence.secret_keys import SecretKeys
from tests.conftest import DatabaseFactory
from tests.test_secrets import key
from workers.cli import main
from workers.dev import _ensure_secrets_key
from workers.settings import SettingsError, load_settings

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture(scope="module")
async def cli_database(databases: DatabaseFactory) -> str:
    """A database of the CLI tests' own: the commands commit, and rotate sees every row."""
    url = await databases.create()
    await upgrade_async(url)
    return url


@pytest.fixture
def cli(
    cli_database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Cli:
    monkeypatch.setenv("DATABASE_URL", cli_database)
    monkeypatch.setenv("META_AGENT_HOME", str(tmp_path))
    monkeypatch.delenv("SECRETS_KEYS", raising=False)

    async def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = await asyncio.to_thread(main, list(argv))  # main runs its own event loop
            said = ""
        except SystemExit as exc:  # usage errors, and refusals worded for a person
            code = exc.code if isinstance(exc.code, int) else 1
            said = "" if isinstance(exc.code, int) else f"{exc.code}\n"
        out = capsys.readouterr()
        return code, out.out, out.err + said

    return run


@pytest.fixture
async def cli_tenant(cli_database: str) -> AsyncIterator[uuid.UUID]:
    engine = create_engine(cli_database, pool_size=1)
    async with session_factory(engine)() as s, s.begin():
        await s.execute(
            text("INSERT INTO tenants (id, name, domain) VALUES (:i, :n, :d)"),
            {"i": (tenant := uuid.uuid4()), "n": f"T {tenant.hex[:6]}", "d": f"{tenant.hex}.io"},
        )
    yield tenant
    await engine.dispose()


async def test_the_cli_sets_lists_deletes_and_rotates_without_showing_a_value(
    cli: Cli,
    cli_database: str,
    cli_tenant: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = cli
    first = key("first")
    monkeypatch.setenv("SECRETS_KEYS", first)
    code, out, _ = await run("secrets", "set", "--tenant", str(cli_tenant), "API_KEY", stdin="v1\n")
    assert (code, out) == (0, f"stored secret API_KEY of tenant {cli_tenant}\n")
    # by domain and by name too; the value from stdin, its one trailing newline dropped
    code, out, _ = await run(
        "secrets", "set", "--tenant", f"{cli_tenant.hex}.io", "API_KEY", stdin="v2\n"
    )
    assert out.startswith("replaced secret API_KEY")
    code, _, _ = await run(
        "secrets", "set", "--tenant", f"T {cli_tenant.hex[:6]}", "OTHER", stdin="o"
    )
    assert code == 0

    code, out, _ = await run("secrets", "list", "--tenant", str(cli_tenant))
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "KEY", "CREATED", "UPDATED"]
    assert [line.split()[:2] for line in lines[1:]] == [["API_KEY", "first"], ["OTHER", "first"]]
    assert "v2" not in out

    engine = create_engine(cli_database, pool_size=1)
    secrets = TenantSecrets(session_factory(engine), SecretKeys.parse(first))
    assert await secrets.resolve(str(cli_tenant), ["API_KEY"]) == {"API_KEY": "v2"}

    second = key("second")
    monkeypatch.setenv("SECRETS_KEYS", f"{second},{first}")
    code, out, _ = await run("secrets", "rotate")
    assert (code, out) == (0, "re-encrypted 2 secret(s) with key 'second'; 0 already used it\n")
    after = TenantSecrets(session_factory(engine), SecretKeys.parse(second))
    assert await after.resolve(str(cli_tenant), ["API_KEY", "OTHER"]) == {
        "API_KEY": "v2",
        "OTHER": "o",
    }

    code, out, _ = await run("secrets", "delete", "--tenant", str(cli_tenant), "OTHER")
    assert (code, out) == (0, f"deleted secret OTHER of tenant {cli_tenant}\n")
    code, _, err = await run("secrets", "delete", "--tenant", str(cli_tenant), "OTHER")
    assert (code, err) == (1, f"meta-agent: tenant {cli_tenant} has no secret OTHER\n")
    await engine.dispose()


async def test_the_cli_refuses_without_keys_values_on_argv_and_unknown_tenants(
    cli: Cli, cli_tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = cli
    code, _, err = await run("secrets", "set", "--tenant", str(cli_tenant), "X", stdin="v")
    assert code == 2
    assert "SECRETS_KEYS is not set" in err

    monkeypatch.setenv("SECRETS_KEYS", key("k"))
    # there is no way to pass the value as an argument
    code, _, err = await run("secrets", "set", "--tenant", str(cli_tenant), "X", "the-value")
    assert code == 2
    assert "unrecognized arguments" in err
    code, _, err = await run("secrets", "set", "--tenant", "nobody", "X", stdin="v")
    assert (code, err) == (1, "meta-agent: no tenant with the id, domain or name 'nobody'\n")
    code, _, err = await run("secrets", "set", "--tenant", str(cli_tenant), "bad-name", stdin="v")
    assert code == 1
    assert "secret name 'bad-name' must be a letter" in err
    code, _, err = await run("secrets", "set", "--tenant", str(cli_tenant), "X", stdin="\n")
    assert (code, err) == (1, "meta-agent: the value is empty; nothing was stored\n")


async def test_a_value_file_is_read_instead_of_stdin(
    cli: Cli, cli_tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = cli
    entry = key("f")
    monkeypatch.setenv("SECRETS_KEYS", entry)
    (tmp_path / "value").write_text("from-file\n")
    args = ("secrets", "set", "--tenant", str(cli_tenant), "F", "--value-file")
    code, _, _ = await run(*args, str(tmp_path / "value"))
    assert code == 0
    engine = create_engine(os.environ["DATABASE_URL"], pool_size=1)
    secrets = TenantSecrets(session_factory(engine), SecretKeys.parse(entry))
    assert await secrets.resolve(str(cli_tenant), ["F"]) == {"F": "from-file"}
    await engine.dispose()


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no-colon-here", "entry 1 is not keyid:base64"),
        ("k1:not*base64", "key 'k1' is not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "decodes to 5 bytes"),
        (f"{key('a')},{key('a')}", "key id 'a' is given twice"),
        (f"{key('a')},bad id:{base64.b64encode(os.urandom(32)).decode()}", "entry 2"),
    ],
)
def test_a_malformed_secrets_keys_stops_the_worker_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("SECRETS_KEYS", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "SECRETS_KEYS" in str(err.value)
    assert message in str(err.value)
    for entry in value.split(","):
        material = entry.partition(":")[2]
        assert not material or material not in str(err.value)  # no key material in the message


def test_secrets_environment_tenants_is_validated_and_keys_stay_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRETS_ENVIRONMENT_TENANTS", "acme")
    with pytest.raises(SettingsError, match="SECRETS_ENVIRONMENT_TENANTS"):
        load_settings()
    tenant = uuid.uuid4()
    monkeypatch.setenv("SECRETS_ENVIRONMENT_TENANTS", f"{tenant}, *")
    entry = key("r")
    monkeypatch.setenv("SECRETS_KEYS", entry)
    settings = load_settings()
    assert settings.secrets_environment_tenants == "*"
    keys = settings.secret_keys()
    assert keys is not None
    assert keys.current_id == "r"
    secret_part = entry.partition(":")[2]
    assert secret_part not in repr(settings)
    assert secret_part not in repr(keys)


def test_the_dev_stack_keeps_one_key_that_the_cli_and_worker_find(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SECRETS_KEYS", raising=False)
    monkeypatch.setenv("META_AGENT_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.secret_keys() is None
    _ensure_secrets_key(settings.dev_secrets_key_file)
    made = settings.dev_secrets_key_file.read_text()
    _ensure_secrets_key(settings.dev_secrets_key_file)  # a restart keeps it
    assert settings.dev_secrets_key_file.read_text() == made
    assert settings.dev_secrets_key_file.stat().st_mode & 0o077 == 0
    assert settings.secret_keys() is None  # no stack running: not used
    settings.dev_state_file.write_text(json.dumps({"database_url": "postgresql://h/x"}))
    keys = load_settings().secret_keys()
    assert keys is not None
    assert keys.current_id == "dev"


async def test_a_name_that_is_another_tenants_domain_names_neither(
    cli: Cli, cli_database: str, cli_tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One tenant named `acme`, another whose domain is `acme`: `--tenant acme` is refused,
    rather than quietly taken as whichever is looked up first.
    """
    monkeypatch.setenv("SECRETS_KEYS", key("k"))
    clash = f"clash-{cli_tenant.hex[:6]}"
    engine = create_engine(cli_database, pool_size=1)
    async with session_factory(engine)() as s, s.begin():
        for name, domain in ((clash, f"{clash}.test"), ("evil corp", clash)):
            await s.execute(
                text("INSERT INTO tenants (id, name, domain) VALUES (:i, :n, :d)"),
                {"i": uuid.uuid4(), "n": name, "d": domain},
            )
    await engine.dispose()
    code, out, err = await cli("secrets", "set", "--tenant", clash, "TOKEN", stdin="v")
    assert code == 1
    assert out == ""
    assert "more than one tenant has the domain or name" in err
