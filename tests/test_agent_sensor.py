"""The sensor agent: inline, HTTP and MQTT (mosquitto) sources; stats, thresholds, anomalies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import pytest
from temporalio.client import WorkflowFailureError

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply

PLANT_WATCH = Path(__file__).resolve().parents[1] / "examples" / "flows" / "plant-watch.json"
READINGS = [20.0, 21.0, 20.5, 21.5, 20.0, 21.0, 20.5, 21.0, 20.0, 21.5, 20.5, 95.0, 21.0, 20.5]


def sensor_flow(config: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("probe", "sensor", config, **data),
            node(
                "check",
                "condition",
                {"branches": [{"handle": "hot", "when": "{{ nodes.probe.output.alerting }}"}],
                 "default": "calm"},
            ),
            node("alarm", "transform", {"output": "{{ nodes.probe.output.alerts[0].name }}"}),
            node("fine", "transform", {"output": "all quiet"}),
            node(
                "done",
                "end",
                {"outputs": {"probe": "{{ nodes.probe.output }}",
                             "verdict": "{{ nodes.alarm.output or nodes.fine.output }}"}},
            ),
        ],
        "edges": [
            edge("start", "probe"),
            edge("probe", "check"),
            edge("check", "alarm", "hot"),
            edge("check", "fine", "calm"),
            edge("alarm", "done"),
            edge("fine", "done"),
        ],
    }  # fmt: skip


THRESHOLDS = [
    {"name": "too hot", "aggregate": "max", "op": ">", "value": 80, "severity": "critical"},
    {"name": "too cold", "aggregate": "min", "op": "<", "value": 5},
]


async def test_inline_values_give_stats_a_zscore_anomaly_and_an_alert_that_drives_a_condition(
    flow_worker: FlowWorker,
) -> None:
    config = {
        "source": {"type": "inline", "values": "{{ input.readings }}"},
        "field": "celsius",
        "thresholds": THRESHOLDS,
        "anomaly": {"method": "zscore", "window": 5, "threshold": 3},
    }
    samples = [{"celsius": v} for v in READINGS]
    result, run_id = await flow_worker.run(sensor_flow(config), {"readings": samples})
    probe = result.outputs["probe"]
    stats = probe["stats"]
    assert stats["count"] == len(READINGS)
    assert stats["max"] == 95.0
    assert stats["min"] == 20.0
    assert stats["p95"] == 95.0  # nearest rank of 14 readings: the 14th
    assert stats["mean"] == pytest.approx(sum(READINGS) / len(READINGS), abs=1e-6)
    assert stats["last"] == 20.5
    assert [a["index"] for a in probe["anomalies"]] == [11]
    assert probe["anomalies"][0]["value"] == 95.0
    assert [a["name"] for a in probe["alerts"]] == ["too hot"]
    assert probe["alerts"][0]["actual"] == 95.0
    assert result.outputs["verdict"] == "too hot"
    rows = await flow_worker.task_rows(run_id)
    assert rows["fine"]["status"] == "skipped"
    assert rows["probe"]["outputs"]["alerting"] is True


async def test_a_window_keeps_only_the_latest_samples_and_isolation_forest_finds_the_spike(
    flow_worker: FlowWorker,
) -> None:
    calm = {
        "source": {"type": "inline", "values": READINGS},
        "window": 2,
        "aggregates": ["count", "max"],
        "thresholds": THRESHOLDS,
    }
    result, _ = await flow_worker.run(sensor_flow(calm))
    assert result.outputs["probe"]["stats"] == {"count": 2, "max": 21.0}
    assert result.outputs["verdict"] == "all quiet"

    forest = {
        "source": {"type": "inline", "values": READINGS},
        "anomaly": {"method": "isolation_forest", "contamination": 0.08},
    }
    result, _ = await flow_worker.run(sensor_flow(forest))
    assert [a["value"] for a in result.outputs["probe"]["anomalies"]] == [95.0]


async def test_an_http_source_is_read_at_its_path_and_its_errors_are_classified(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/plant/7", Reply(200, {"data": {"readings": READINGS}}))
    config = {
        "source": {"type": "http", "url": f"{http_peer.base}/plant/7", "path": "data.readings"},
        "thresholds": THRESHOLDS,
    }
    result, _ = await flow_worker.run(sensor_flow(config))
    assert result.outputs["probe"]["stats"]["count"] == len(READINGS)

    retry = {"maxAttempts": 3, "initialIntervalSeconds": 0.1}
    for status, attempts in ((404, 1), (503, 3)):
        http_peer.route("GET", f"/down/{status}", Reply(status, {"error": "x"}))
        source = {"type": "http", "url": f"{http_peer.base}/down/{status}"}
        handle = await flow_worker.start(sensor_flow({"source": source}, retry=retry))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        row = (await flow_worker.task_rows(handle.id))["probe"]
        assert row["retry_count"] == attempts - 1, status
        assert f"answered {status}" in row["error"]


async def test_text_that_holds_no_number_is_refused_clearly(flow_worker: FlowWorker) -> None:
    config = {"source": {"type": "inline", "values": [{"t": "warm"}]}, "field": "t"}
    handle = await flow_worker.start(sensor_flow(config, retry={"maxAttempts": 3}))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    row = (await flow_worker.task_rows(handle.id))["probe"]
    assert row["retry_count"] == 0
    assert "none of the 1 samples holds a number (config.field 't')" in row["error"]


@contextlib.contextmanager
def publishing(broker: str, topic: str, values: list[float]) -> Iterator[None]:
    """Publish `values` round and round on `topic` until the block ends.

    The publisher has a thread and an event loop of its own, like a real device: it shares
    nothing with the worker under test.
    """
    url = urlparse(broker)
    stop = threading.Event()

    async def loop() -> None:
        async with aiomqtt.Client(hostname=url.hostname or "", port=url.port or 1883) as client:
            while not stop.is_set():
                for value in values:
                    await client.publish(topic, json.dumps({"value": value}))
                    await asyncio.sleep(0.02)

    thread = threading.Thread(target=asyncio.run, args=(loop(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.peers
async def test_an_mqtt_topic_is_read_for_n_samples_from_mosquitto(
    flow_worker: FlowWorker, mqtt_broker: str
) -> None:
    topic = f"plant/{time.monotonic_ns()}/temp"
    config = {
        "source": {"type": "mqtt", "broker": mqtt_broker, "topic": topic, "samples": 30},
        "thresholds": THRESHOLDS,
    }
    with publishing(mqtt_broker, topic, READINGS):
        handle = await flow_worker.start(sensor_flow(config, timeoutSeconds=30))
        result = await asyncio.wait_for(handle.result(), 90)
    probe = result.outputs["probe"]
    assert probe["stats"]["count"] == 30
    assert probe["stats"]["max"] == 95.0  # 30 consecutive samples span the 14-sample cycle
    assert result.outputs["verdict"] == "too hot"


@pytest.mark.peers
async def test_a_silent_mqtt_topic_ends_after_its_seconds_and_retries(
    flow_worker: FlowWorker, mqtt_broker: str
) -> None:
    config = {
        "source": {"type": "mqtt", "broker": mqtt_broker, "topic": "nobody/home", "seconds": 1}
    }
    retry = {"maxAttempts": 2, "initialIntervalSeconds": 0.1}
    handle = await flow_worker.start(sensor_flow(config, retry=retry))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    row = (await flow_worker.task_rows(handle.id))["probe"]
    assert row["retry_count"] == 1
    assert "no message on 'nobody/home' within 1.0 s" in row["error"]


@pytest.mark.peers
async def test_cancelling_stops_listening_to_mqtt(
    flow_worker: FlowWorker, mqtt_broker: str
) -> None:
    config = {"source": {"type": "mqtt", "broker": mqtt_broker, "topic": "quiet", "seconds": 60}}
    handle = await flow_worker.start(sensor_flow(config, timeoutSeconds=120))
    await asyncio.sleep(2)
    assert await flow_worker.cancel_and_wait(handle) < 10
    assert (await flow_worker.task_rows(handle.id))["probe"]["status"] == "cancelled"


async def test_a_slow_http_source_hits_the_node_timeout(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/slow", Reply(200, READINGS, delay=15))
    config = {"source": {"type": "http", "url": f"{http_peer.base}/slow"}}
    began = time.monotonic()
    handle = await flow_worker.start(sensor_flow(config, timeoutSeconds=2))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert time.monotonic() - began < 12
    row = (await flow_worker.task_rows(handle.id))["probe"]
    assert row["status"] == "failed"


async def test_the_plant_watch_example_pages_on_overheat_and_logs_otherwise(
    flow_worker: FlowWorker,
) -> None:
    definition = json.loads(await asyncio.to_thread(PLANT_WATCH.read_text))
    hot = [{"celsius": v} for v in (70, 71, 70, 72, 71, 96)]
    result, _ = await flow_worker.run(definition, {"readings": hot})
    assert result.outputs["verdict"] == "overheat at 96.0 °C"
    assert [a["value"] for a in result.outputs["anomalies"]] == [96.0]
    calm = [{"celsius": v} for v in (70, 71, 70)]
    result, _ = await flow_worker.run(definition, {"readings": calm})
    assert result.outputs["verdict"] == "normal, mean 70.333333 °C"
