"""The `sensor` agent: read samples, summarise a window, raise alerts and flag anomalies.

Sources: inline `values` (usually a template over upstream outputs), an HTTP
JSON endpoint (`path` picks the list), or an MQTT topic (aiomqtt; `samples`
messages or `seconds` of listening, whichever ends first). A sample is a
number or an object whose `field` (dotted) is one. The output is
`{stats, anomalies, alerts, alerting}`; `alerting` is what a `condition` tests.
Anomalies: a rolling z-score against the preceding `window` samples, or
IsolationForest when scikit-learn is installed.
"""

from __future__ import annotations

import asyncio
import json
import math
import operator
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http_helpers import config_headers, connection_failure, status_failure
from activities.outbound import OutboundHttp, OutboundPolicy
from workflows.contract import AgentTask

AGGREGATES = ("count", "mean", "min", "max", "p95", "stddev", "last")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_DEFAULT_MQTT_SECONDS = 10.0
_MAX_SAMPLES = 100_000


class SensorAgent:
    """The `sensor` agent, reading HTTP and MQTT sources through the outbound policy."""

    def __init__(self, http: OutboundHttp) -> None:
        self._http = http.shared
        self._policy = http.policy

    async def __call__(self, config: dict[str, Any], task: AgentTask) -> dict[str, Any]:
        """The samples of `config.source`, summarised."""
        source = config["source"]
        kind = source["type"]
        if kind == "inline":
            raw = source.get("values")
            if not isinstance(raw, list):
                raise _bad("config.source.values must resolve to a list")
        elif kind == "http":
            raw = await self._http_samples(source)
        else:
            raw = await _mqtt_samples(source, self._policy)
        values = numbers(raw[-_MAX_SAMPLES:], config.get("field"))
        return summarise(values, config)

    async def _http_samples(self, source: dict[str, Any]) -> list[Any]:
        url = str(source.get("url") or "")
        if not url:
            raise _bad("config.source.url is required for an http source")
        try:
            response = await self._http.get(url, headers=config_headers(source.get("headers")))
        except httpx.HTTPError as exc:
            raise connection_failure(f"config.source.url {url}", exc) from None
        if response.status_code >= 400:
            status = response.status_code
            raise status_failure(f"config.source.url {url} answered {status}", status)
        try:
            body = response.json()
        except ValueError:
            raise _bad(f"config.source.url {url} did not answer JSON") from None
        found = _at(body, source.get("path"))
        if not isinstance(found, list):
            raise _bad(f"config.source.path {source.get('path')!r} is not a list in the answer")
        return found


async def _mqtt_samples(source: dict[str, Any], policy: OutboundPolicy) -> list[Any]:
    broker = urlparse(str(source.get("broker") or ""))
    if broker.scheme not in ("mqtt", "tcp") or not broker.hostname or not source.get("topic"):
        raise _bad("an mqtt source needs config.source.broker (mqtt://host:port) and .topic")
    wanted = int(source.get("samples") or 0) or None
    seconds = float(source.get("seconds") or (0 if wanted else _DEFAULT_MQTT_SECONDS)) or None
    limit = activity.info().start_to_close_timeout
    if limit and (seconds is None or seconds > limit.total_seconds()):
        seconds = max(0.5, limit.total_seconds() - 1)  # report what arrived before the timeout
    samples: list[Any] = []
    deadline = time.monotonic() + seconds if seconds else None
    # The broker is reached at the address the policy checked, never resolved again.
    address = (await policy.addresses(broker.hostname, broker.port or 1883))[0]
    try:
        async with aiomqtt.Client(
            hostname=address,
            port=broker.port or 1883,
            username=source.get("username"),
            password=source.get("password"),
        ) as client:
            await client.subscribe(str(source["topic"]))
            while wanted is None or len(samples) < wanted:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        message = await anext(client.messages)
                except TimeoutError:
                    break
                samples.append(_decode(message.payload))
                activity.heartbeat()
    except aiomqtt.MqttError as exc:
        raise ApplicationError(
            f"config.source.broker {broker.geturl()}: {exc}", type="MqttError"
        ) from None
    if not samples:
        raise ApplicationError(
            f"no message on {source['topic']!r} within {seconds} s", type="NoSamples"
        )
    return samples


def _decode(payload: Any) -> Any:
    text = payload.decode() if isinstance(payload, bytes | bytearray) else payload
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def _at(value: Any, path: str | None) -> Any:
    for key in (path or "").split(".") if path else []:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def numbers(raw: list[Any], field: str | None) -> list[float]:
    """The numeric readings among the samples (`field` picks one out of objects)."""
    out: list[float] = []
    for sample in raw:
        value = _at(sample, field or "value") if isinstance(sample, dict) else sample
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            out.append(float(value))
        elif isinstance(value, str):
            try:
                out.append(float(value))
            except ValueError:
                continue
    if not out:
        where = f" (config.field {field!r})" if field else ""
        raise _bad(f"none of the {len(raw)} samples holds a number{where}")
    return out


def summarise(values: list[float], config: dict[str, Any]) -> dict[str, Any]:
    """The node's output for `values`: the stats asked for, and the alerts and anomalies of the
    window.
    """
    window = int(config.get("window") or 0)
    if window:
        values = values[-window:]
    stats = {name: round(value, 6) for name, value in _stats(values).items()}
    wanted = config.get("aggregates") or list(AGGREGATES)
    alerts = []
    for rule in config.get("thresholds") or []:
        actual = stats[rule["aggregate"]]
        if _OPS[rule["op"]](actual, float(rule["value"])):
            alerts.append({**rule, "actual": actual, "severity": rule.get("severity", "warning")})
    anomalies = _anomalies(values, config["anomaly"]) if config.get("anomaly") else []
    return {
        "stats": {name: stats[name] for name in wanted},
        "anomalies": anomalies,
        "alerts": alerts,
        "alerting": bool(alerts),
    }


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    # Nearest-rank p95: a value that was actually read.
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "count": float(len(values)),
        "mean": statistics.fmean(values),
        "min": ordered[0],
        "max": ordered[-1],
        "p95": p95,
        "stddev": statistics.pstdev(values),
        "last": values[-1],
    }


def _anomalies(values: list[float], spec: dict[str, Any]) -> list[dict[str, Any]]:
    method = spec.get("method", "zscore")
    if method == "isolation_forest":
        return _isolation_forest(values, float(spec.get("contamination") or 0.05))
    window = int(spec.get("window") or 10)
    threshold = float(spec.get("threshold") or 3.0)
    found = []
    for i in range(window, len(values)):
        before = values[i - window : i]
        spread = statistics.pstdev(before)
        centre = statistics.fmean(before)
        if spread == 0:
            score = 0.0 if values[i] == centre else math.inf
        else:
            score = abs(values[i] - centre) / spread
        if score > threshold:
            shown = round(score, 3) if math.isfinite(score) else None
            found.append({"index": i, "value": values[i], "score": shown, "method": "zscore"})
    return found


def _isolation_forest(values: list[float], contamination: float) -> list[dict[str, Any]]:
    try:
        from sklearn.ensemble import IsolationForest  # optional: heavy, used by few flows
    except ImportError:
        raise _bad(
            "config.anomaly.method 'isolation_forest' needs scikit-learn on the worker "
            "(pip install scikit-learn); 'zscore' needs nothing"
        ) from None
    data = [[v] for v in values]
    model = IsolationForest(contamination=contamination, random_state=0).fit(data)
    flags = model.predict(data)
    scores = model.decision_function(data)
    return [
        {
            "index": i,
            "value": values[i],
            "score": round(float(-scores[i]), 4),
            "method": "isolation_forest",
        }
        for i in range(len(values))
        if flags[i] == -1
    ]


def _bad(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidSensorData", non_retryable=True)
