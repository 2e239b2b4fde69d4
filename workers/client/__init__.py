"""The one way to talk to a run from Python; the CLI, the dev samples, tests and benchmarks
use it too.

    start_run(client, task_queue, params, run_id=None) -> handle      start a FlowRun
                                                                      (sessions=: refuse an
                                                                      unavailable flow first)
    get_status(client, run_id) -> dict                                its live status
    result(client, run_id) -> FlowResult                              wait for its outputs
    decide(client, run_id, hitl_task_id, decision, decided_by, comments=None) -> row
    send_decision(...)                                                the same, fire and forget
    pause / resume / send_event / cancel(client, run_id, ...)
    retry(client, run_id, new_run_id=None, task_queue=None, from_scratch=False) -> handle
                                                                      a failed run, again,
                                                                      reusing what it did

The Temporal names a run answers to are re-exported here (from `workflows.contract`), for
callers that must speak to a run directly.
"""

from workers.client.starting import (
    MAX_RUN_ID,
    FlowUnavailable,
    InvalidFlow,
    InvalidInputs,
    RetryRefused,
    RunIdRefused,
    StartedWith,
    check_inputs,
    original_request,
    retry,
    start_run,
    stored_flow,
)
from workers.client.steering import (
    DecisionRefused,
    cancel,
    decide,
    pause,
    resume,
    send_decision,
    send_event,
)
from workers.client.watching import (
    TIME_LIMIT_ERROR,
    failure_text,
    get_status,
    result,
    terminated_text,
)
from workflows.contract import (
    EVENT_SIGNAL,
    FLOW_RUN,
    HITL_DECISION_SIGNAL,
    PAUSE_SIGNAL,
    RESUME_SIGNAL,
    STATUS_QUERY,
    SUBMIT_HITL_DECISION_UPDATE,
)

__all__ = [
    "EVENT_SIGNAL",
    "FLOW_RUN",
    "HITL_DECISION_SIGNAL",
    "MAX_RUN_ID",
    "PAUSE_SIGNAL",
    "RESUME_SIGNAL",
    "STATUS_QUERY",
    "SUBMIT_HITL_DECISION_UPDATE",
    "TIME_LIMIT_ERROR",
    "DecisionRefused",
    "FlowUnavailable",
    "InvalidFlow",
    "InvalidInputs",
    "RetryRefused",
    "RunIdRefused",
    "StartedWith",
    "cancel",
    "check_inputs",
    "decide",
    "failure_text",
    "get_status",
    "original_request",
    "pause",
    "result",
    "resume",
    "retry",
    "send_decision",
    "send_event",
    "start_run",
    "stored_flow",
    "terminated_text",
]
