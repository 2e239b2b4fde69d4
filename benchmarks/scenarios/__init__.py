"""The suite's scenarios by letter (issue "Throughput", item 1), one module per kind of load."""

from benchmarks.scenarios.chain import (
    CHAIN_RUNS,
    ONE_RUN_AT_A_TIME,
    WORKER_PROCESSES,
    WRITE_BACK,
)
from benchmarks.scenarios.common import Bench, Scenario
from benchmarks.scenarios.fan_out import FAN_OUT_RUNS
from benchmarks.scenarios.loop import LOOP_RUN
from benchmarks.scenarios.parked import PARKED_RUNS

SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        CHAIN_RUNS,
        FAN_OUT_RUNS,
        LOOP_RUN,
        WRITE_BACK,
        PARKED_RUNS,
        WORKER_PROCESSES,
        ONE_RUN_AT_A_TIME,
    )
}

__all__ = ["SCENARIOS", "Bench", "Scenario"]
