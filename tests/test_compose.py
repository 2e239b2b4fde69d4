"""docker-compose.yml cannot run here (no image registry): its wiring is checked by reading it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.settings import Settings
from workflows import search_attributes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_the_stack_has_its_services(compose: dict[str, Any]) -> None:
    assert {"postgres", "temporal", "temporal-ui", "worker", "api"} <= set(compose["services"])


def test_databases_and_temporal_have_health_checks_the_worker_waits_for(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("postgres", "temporal"):
        assert services[name]["healthcheck"]["test"], name
    waits = services["worker"]["depends_on"]
    assert waits["postgres"]["condition"] == "service_healthy"
    assert waits["temporal"]["condition"] == "service_healthy"


def test_ports_match_the_contract(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "7233:7233" in services["temporal"]["ports"]
    assert any(p.startswith("8233:") for p in services["temporal-ui"]["ports"])


def test_temporal_uses_the_stack_postgres(compose: dict[str, Any]) -> None:
    env = compose["services"]["temporal"]["environment"]
    assert env["POSTGRES_SEEDS"] == "postgres"
    assert env["DB"].startswith("postgres")


def test_the_worker_gets_valid_settings(compose: dict[str, Any], monkeypatch) -> None:
    env = compose["services"]["worker"]["environment"]
    pg = compose["services"]["postgres"]["environment"]
    for key, value in env.items():
        # as compose reads `${NAME:-default}` on a machine that does not set NAME
        monkeypatch.setenv(key, re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)))
    settings = Settings()
    assert settings.temporal_address == "temporal:7233"
    assert settings.temporal_task_queue == "meta-agent-flows"
    url = settings.require_database_url()
    credentials = f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
    assert f"{credentials}@postgres:5432/{pg['POSTGRES_DB']}" in url
    assert compose["services"]["worker"]["build"] == "."
    assert (ROOT / "Dockerfile").exists()


def test_every_search_attribute_is_registered(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["temporal-search-attributes"]["command"])
    kinds = {"INT": "Int", "KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList"}
    for key in search_attributes.ALL:
        kind = kinds[key.indexed_value_type.name]
        assert f"{key.name}={kind}" in script


def test_the_worker_reaches_the_docker_engine_its_docker_host_names(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    socket = worker["environment"]["DOCKER_HOST"].removeprefix("unix://")
    assert socket in [volume.split(":")[1] for volume in worker["volumes"]]
    assert "tesseract-ocr" in (ROOT / "Dockerfile").read_text()


def test_the_api_gets_valid_settings_and_is_published(compose: dict[str, Any], monkeypatch) -> None:
    api = compose["services"]["api"]
    for key, value in api["environment"].items():
        monkeypatch.setenv(key, re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)))
    settings = Settings()
    assert settings.temporal_address == "temporal:7233"
    assert (
        settings.temporal_task_queue
        == compose["services"]["worker"]["environment"]["TEMPORAL_TASK_QUEUE"]
    )
    assert settings.api_host == "0.0.0.0"
    assert f"{settings.api_port}:{settings.api_port}" in api["ports"]
    assert "meta-agent api" in " ".join(api["command"])
    for needed in ("postgres", "temporal"):
        assert api["depends_on"][needed]["condition"] == "service_healthy"
