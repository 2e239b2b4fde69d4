"""Telemetry settings a worker cannot honour stop it with one line naming the variable."""

from __future__ import annotations

import socket

import pytest

from workers.run_progress import plain_table
from workers.settings import SettingsError
from workers.telemetry import metrics_runtime, span_processors


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "bogus",
            },
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json"),
    ],
)
def test_an_exporter_setting_it_cannot_honour_is_a_settings_error(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        span_processors(environ)


def test_no_exporter_asked_for_means_no_span_processor() -> None:
    assert span_processors({}) == []
    assert span_processors({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) == []
    assert span_processors({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert len(span_processors({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})) == 1


def test_a_taken_metrics_port_names_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match="METRICS_PORT"):
            metrics_runtime("127.0.0.1", port)


def test_a_run_without_node_rows_shows_an_empty_table() -> None:
    assert plain_table([])[0].split() == ["NODE", "STATUS", "TYPE", "DURATION", "ATTEMPTS", "LABEL"]
