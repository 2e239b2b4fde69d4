"""The engine's own metrics, recorded from workflow code through the SDK's workflow meter.

The workflow meter records nothing while history replays, so a run rebuilt on
another worker counts once; it reaches whatever the worker's Temporal runtime
exports (the Prometheus endpoint of METRICS_PORT), labelled with the namespace,
task queue and workflow type besides the labels below. Without a metrics runtime
the meter is a no-op.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

#: Metric names, one place: the README lists them.
RUNS_STARTED = "meta_agent_runs_started"
RUNS_ENDED = "meta_agent_runs_ended"
NODE_DURATION = "meta_agent_node_duration"

#: Flow names are the flow author's: cut, so one cannot make a label of any size.
_LABEL_CHARS = 100


def _flow_label(flow: str | None) -> str:
    """A stored flow's name; `(inline)` for a run of an inline definition or a bad argument."""
    return (flow or "(inline)")[:_LABEL_CHARS]


def run_started(flow: str | None) -> None:
    """A run began (a run continuing as new is the same run and does not count again)."""
    workflow.metric_meter().create_counter(RUNS_STARTED, "Runs started, by flow.").add(
        1, {"flow": _flow_label(flow)}
    )


def run_ended(flow: str | None, status: str) -> None:
    """A run ended: completed, failed or cancelled."""
    workflow.metric_meter().create_counter(RUNS_ENDED, "Runs ended, by flow and status.").add(
        1, {"flow": _flow_label(flow), "status": status}
    )


def node_ended(node_type: str, status: str, took: timedelta) -> None:
    """A node execution ended; how long it took, by node type and the status it ended in."""
    workflow.metric_meter().create_histogram_timedelta(
        NODE_DURATION, "Node executions: time from start to end, by node type and status."
    ).record(max(took, timedelta(0)), {"node_type": node_type, "status": status})
