"""`meta-agent users`, the dev stack's demo people, and finding a dev stack from a sub-folder."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import hitl_queries
from tests.test_cli import ameta_agent
from workers.demo_people import DEMO_USERS, seed_demo_people
from workers.settings import Settings, find_home

ROOT = Path(__file__).resolve().parents[1]


async def _tenant(sessions: async_sessionmaker[AsyncSession], name: str) -> str:
    tenant = str(uuid.uuid4())
    async with sessions() as s, s.begin():
        await s.execute(
            text("INSERT INTO tenants (id, name) VALUES (:i, :n)"), {"i": tenant, "n": name}
        )
    return tenant


async def test_users_are_added_to_a_tenant_and_granted_its_roles(
    database_url: str, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    tag = uuid.uuid4().hex[:8]
    acme = await _tenant(session_maker, f"acme-{tag}")
    other = await _tenant(session_maker, f"other-{tag}")
    env = {"DATABASE_URL": database_url}

    added = await ameta_agent("users", "add", f"ada-{tag}", "--tenant", f"acme-{tag}", env=env)
    assert added.returncode == 0, added.stderr
    again = await ameta_agent("users", "add", f"ada-{tag}", "--tenant", f"acme-{tag}", env=env)
    assert again.returncode == 1
    assert "already exists" in again.stdout
    bob = await ameta_agent(
        "users", "add", f"bob-{tag}", "--tenant", other, "--role", "finance", env=env
    )
    assert bob.returncode == 0, bob.stderr

    granted = await ameta_agent("users", "grant", f"ada-{tag}", "finance", env=env)
    assert granted.stdout.strip() == f"ada-{tag} now holds role finance"
    twice = await ameta_agent("users", "grant", f"ada-{tag}", "finance", env=env)
    assert twice.stdout.strip() == f"ada-{tag} already held role finance"
    # With --tenant, another tenant's user is no user at all.
    across = await ameta_agent(
        "users", "grant", f"bob-{tag}", "finance-lead", "--tenant", acme, env=env
    )
    assert across.returncode == 1
    assert f"no user 'bob-{tag}'" in across.stderr

    listed = await ameta_agent("users", "list", "--tenant", f"acme-{tag}", env=env)
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["USER", "ID", "TENANT", "ROLES"]
    assert [line.split()[0] for line in lines[1:]] == [f"ada-{tag}"]
    assert lines[1].split()[2:] == [acme, "finance"]

    # The role granted is the tenant's own: it lets ada decide acme's finance reviews only.
    async with session_maker() as s:
        ada = await s.scalar(text("SELECT id FROM users WHERE username = :u"), {"u": f"ada-{tag}"})
        assert ada is not None
        ok = await hitl_queries.reviewer_problem(s, ada, uuid.UUID(acme), None, "finance")
        assert ok is None
        refused = await hitl_queries.reviewer_problem(s, ada, uuid.UUID(other), None, "finance")
        assert refused is not None
        assert "does not belong" in refused

    revoked = await ameta_agent("users", "revoke", f"ada-{tag}", "finance", env=env)
    assert revoked.stdout.strip() == f"ada-{tag} no longer holds role finance"


async def test_the_demo_people_are_seeded_once_and_may_decide_the_examples_reviews(
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    first = await seed_demo_people(session_maker)
    second = await seed_demo_people(session_maker)
    assert first == second
    assert {p.username for p in first.people} == set(DEMO_USERS)
    roles = {
        step.get("toRole") or node["data"]["config"]["assigneeRole"]
        for node in json.loads((ROOT / "examples/flows/order-approval.json").read_text())["nodes"]
        if node["type"] == "hitl"
        for step in [{}, *node["data"]["config"].get("escalation", [])]
    }
    assert roles == {"finance", "finance-lead"}
    by_name = {p.username: p for p in first.people}
    async with session_maker() as s:
        count = await s.scalar(text("SELECT count(*) FROM tenants WHERE domain = 'demo.local'"))
        assert count == 1
        for role in roles:
            holder = next(p for p in first.people if role in p.roles)
            assert (
                await hitl_queries.reviewer_problem(s, holder.user_id, first.tenant_id, None, role)
                is None
            )
        assert (
            await hitl_queries.reviewer_problem(
                s, by_name["requester"].user_id, first.tenant_id, None, "finance"
            )
            is not None
        )
    banner = "\n".join(first.banner_lines())
    assert f"reviewer   {by_name['reviewer'].user_id}  role finance" in banner


def test_the_dev_stack_folder_is_found_from_any_folder_of_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "checkout"
    deep = project / "examples" / "flows"
    deep.mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    monkeypatch.delenv("META_AGENT_HOME", raising=False)
    # No stack yet: the project's root, so `meta-agent dev` run from below keeps it there.
    assert find_home(deep) == project / ".meta-agent"
    (project / ".meta-agent").mkdir()
    assert find_home(deep) == (project / ".meta-agent").resolve()
    assert find_home(tmp_path / "elsewhere") == (tmp_path / "elsewhere" / ".meta-agent")

    monkeypatch.chdir(deep)
    assert Settings().dev_state_file == (project / ".meta-agent" / "dev-stack.json").resolve()
    monkeypatch.setenv("META_AGENT_HOME", str(tmp_path / "mine"))
    assert Settings().dev_state_file == tmp_path / "mine" / "dev-stack.json"


async def test_the_cli_finds_a_running_dev_stack_from_a_sub_folder(
    database_url: str, tmp_path: Path
) -> None:
    """The state file a running `meta-agent dev` leaves at the root, read from below it."""
    project = tmp_path / "checkout"
    (project / ".meta-agent").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    (project / "docs").mkdir()
    state = {"pid": os.getpid(), "database_url": database_url}
    (project / ".meta-agent" / "dev-stack.json").write_text(json.dumps(state))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "META_AGENT_HOME")}
    env["PYTHONPATH"] = str(ROOT)

    probe = f"probe-{uuid.uuid4().hex[:8]}"

    def users_add() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", "users", "add", probe],
            cwd=project / "docs",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    added = await asyncio.to_thread(users_add)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f"added user {probe} (")
