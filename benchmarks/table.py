"""The rounds of every side folded into one row each, printed as a Markdown table.

Throughput figures are the median over rounds; latencies are pooled over rounds before
their percentiles are taken; peak RSS is the largest seen; history events the mean of the
sampled runs. The ratio divides a side's runs/s by its scenario's baseline side's.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from benchmarks.measure import Measurement, percentile
from benchmarks.scenarios import Scenario

HEADER = (
    "scenario",
    "side",
    "runs/s",
    "nodes/s",
    "p50 s",
    "p95 s",
    "worker CPU s",
    "CPU ms/node",
    "machine CPU ms/node",
    "machine busy %",
    "peak RSS MiB",
    "history events/run",
    "ratio (runs/s ÷ baseline)",
)


def _fmt(x: float) -> str:
    if x != x:  # nan
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def rows(scenarios: Sequence[Scenario], measurements: Sequence[Measurement]) -> list[list[str]]:
    """One row per scenario and side, in the scenarios' order."""
    out = []
    for scenario in scenarios:
        mine = [m for m in measurements if m.scenario == scenario.key]
        rate = {
            side: statistics.median(m.runs_per_second for m in mine if m.side == side)
            for side in scenario.sides
            if any(m.side == side for m in mine)
        }
        for side in scenario.sides:
            ms = [m for m in mine if m.side == side]
            if not ms:
                continue
            latencies = [x for m in ms for x in m.latencies]
            cpu = statistics.median(m.cpu_seconds for m in ms)
            nodes = statistics.median(m.nodes for m in ms)
            # No baseline (its side failed in every round): no ratio, not a ratio of 0.
            baseline = rate.get(scenario.baseline)
            ratio = f"{rate[side] / baseline:.2f}" if baseline else "-"
            out.append(
                [
                    scenario.key,
                    side,
                    _fmt(rate[side]),
                    _fmt(statistics.median(m.nodes_per_second for m in ms)),
                    _fmt(percentile(latencies, 50)),
                    _fmt(percentile(latencies, 95)),
                    _fmt(cpu),
                    _fmt(1000 * cpu / nodes),
                    _fmt(1000 * statistics.median(m.machine_cpu_seconds for m in ms) / nodes),
                    f"{100 * statistics.median(m.machine_busy for m in ms):.0f}",
                    _fmt(max(m.peak_rss_mib for m in ms)),
                    _fmt(statistics.mean(m.history_events for m in ms)),
                    ratio,
                ]
            )
    return out


def markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table, numbers right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |")
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def side_ratios(
    scenarios: Sequence[Scenario], measurements: Sequence[Measurement], side: str, over: str
) -> list[str]:
    """`side`'s runs/s over `over`'s, in each scenario that measured both (a second baseline)."""
    lines = []
    for scenario in scenarios:
        rates = {
            s: [
                m.runs_per_second
                for m in measurements
                if m.scenario == scenario.key and m.side == s
            ]
            for s in (side, over)
        }
        if all(rates.values()):
            ratio = statistics.median(rates[side]) / statistics.median(rates[over])
            lines.append(f"({scenario.key}) {side} ÷ {over}: {ratio:.2f}")
    return lines


def notes(measurements: Sequence[Measurement]) -> list[str]:
    """Scenario-specific figures (median over rounds), one line per scenario and side."""
    found: dict[tuple[str, str], dict[str, list[float]]] = {}
    for m in measurements:
        for key, value in m.notes.items():
            found.setdefault((m.scenario, m.side), {}).setdefault(key, []).append(value)
    return [
        f"({scenario}) {side}: "
        + ", ".join(f"{k} {_fmt(statistics.median(v))}" for k, v in figures.items())
        for (scenario, side), figures in found.items()
    ]
