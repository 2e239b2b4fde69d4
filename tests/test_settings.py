"""Configuration errors name the variable and say what a good value looks like."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persistence.engine import async_url
from workers.cli import main
from workers.settings import DEFAULT_TASK_QUEUE, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("META_AGENT_HOME", str(tmp_path))


def test_defaults_follow_the_contract() -> None:
    s = load_settings()
    assert s.temporal_task_queue == DEFAULT_TASK_QUEUE == "meta-agent-flows"
    assert s.temporal_namespace == "default"
    assert s.effective_temporal_address() == "localhost:7233"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://u@h/db", "scheme must be postgresql://"),
        ("DATABASE_URL", "postgresql://u@h:5432", "names no database"),
        ("DATABASE_URL", "not a url", "not a URL"),
        ("TEMPORAL_ADDRESS", "localhost", "must be host:port"),
        ("DEV_TEMPORAL_PORT", "70000", "less than or equal to 65535"),
        ("TEMPORAL_TASK_QUEUE", "  ", "must not be empty"),
        ("PAYLOAD_KEYS", "k1:bm90IDMyIGJ5dGVz", "AES-256 needs 32"),
        ("DATABASE_OUTAGE_LIMIT_SECONDS", "0", "greater than 0"),
        ("HEALTH_PORT", "0", "greater than or equal to 1"),
    ],
)
def test_bad_values_are_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert name in str(err.value)
    assert message in str(err.value)


def test_the_cli_reports_a_bad_setting_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u@h/db")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meta-agent: invalid configuration")
    assert "Traceback" not in err


def test_without_database_url_the_running_dev_stack_is_used(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL is not set"):
        load_settings().require_database_url()
    (tmp_path / "dev-stack.json").write_text(
        json.dumps({"database_url": "postgresql://p@127.0.0.1:1/x", "temporal_address": "h:9"})
    )
    s = load_settings()
    assert s.require_database_url() == "postgresql://p@127.0.0.1:1/x"
    assert s.effective_temporal_address() == "h:9"


def test_libpq_urls_are_translated_for_asyncpg() -> None:
    url = async_url("postgresql://u:p%40ss@db:5432/app?sslmode=require")
    assert url.drivername == "postgresql+asyncpg"
    assert url.password == "p@ss"
    assert dict(url.query) == {"ssl": "require"}
