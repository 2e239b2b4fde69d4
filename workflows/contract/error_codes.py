"""`workflow_runs.error_code`: a run's failure as a small, stable class a program can act on.

The error text says what happened in words meant for people and changes with them; the
code says what kind of failure it was, so the platform can count, alert and offer a retry
without parsing messages. It is derived from the failure types the engine already raises
(the `ApplicationError` types of agents and of the run's own refusals, Temporal's timeouts
and cancellations): one table here, used by the workflow, `prepare_flow` and the
reconciler alike. Codes are only ever added; a type not listed reads as `node_failed`.
"""

from __future__ import annotations

import re

#: Refused before any node: the argument, the definition or the inputs are invalid, or the
#: run's record cannot hold them.
INVALID_INPUT = "invalid_input"
#: Refused before any node: a tenant, workspace, user, flow or run it names does not exist.
UNKNOWN_REFERENCE = "unknown_reference"
#: Refused before any node: the flow is archived, inactive or paused, or a draft run
#: without `draft`.
FLOW_UNAVAILABLE = "flow_unavailable"
#: An HTTP (or model endpoint) answer of 4xx / 5xx.
HTTP_4XX = "http_4xx"
HTTP_5XX = "http_5xx"
#: A node's time ran out: an attempt's `timeoutSeconds`, a request, a review's deadline, an
#: event `wait`'s timeout; or the run's own execution timeout.
TIMEOUT = "timeout"
#: A peer could not be reached (connection refused, reset, no agent card, no docker engine).
UNREACHABLE = "unreachable"
#: A template failed, or rendered a value the node cannot use.
TEMPLATE_ERROR = "template_error"
#: A `{{ secrets.NAME }}` the run's tenant does not have.
SECRET_MISSING = "secret_missing"
#: The operator's policy refused an address, image, network or mount.
NOT_ALLOWED = "not_allowed"
#: A node's output broke its schema, was not the JSON asked for, or was too large.
INVALID_OUTPUT = "invalid_output"
#: Any other failure of a node (an exit code, a remote task that failed, a sub-flow, ...).
NODE_FAILED = "node_failed"
#: The run was cancelled (or a sub-flow it waited on was).
CANCELLED = "cancelled"
#: An operator terminated the run (written by the reconciler).
TERMINATED = "terminated"
#: The run could not record its progress or its end (the database refused it).
BOOKKEEPING_FAILED = "bookkeeping_failed"

ERROR_CODES = (
    INVALID_INPUT,
    UNKNOWN_REFERENCE,
    FLOW_UNAVAILABLE,
    HTTP_4XX,
    HTTP_5XX,
    TIMEOUT,
    UNREACHABLE,
    TEMPLATE_ERROR,
    SECRET_MISSING,
    NOT_ALLOWED,
    INVALID_OUTPUT,
    NODE_FAILED,
    CANCELLED,
    TERMINATED,
    BOOKKEEPING_FAILED,
)

#: Failure types by the code they read as (types not listed: NODE_FAILED).
_BY_TYPE = {
    INVALID_INPUT: (
        "InvalidFlow",
        "InvalidInputs",
        "InvalidRunArgument",
        "RunRecordRejected",
    ),
    UNKNOWN_REFERENCE: ("UnknownReference",),
    FLOW_UNAVAILABLE: ("FlowUnavailable",),
    TIMEOUT: ("HttpTimeout", "LlmTimeout", "OcrTimeout", "ContainerTimeout"),
    UNREACHABLE: (
        "HttpConnectionError",
        "LlmConnectionError",
        "A2AConnectionError",
        "A2AAgentCardUnavailable",
        "DockerUnavailable",
        "MqttError",
    ),
    TEMPLATE_ERROR: ("TemplateError",),
    SECRET_MISSING: ("MissingSecret",),
    NOT_ALLOWED: ("OutboundRefused", "DockerPolicyRefused"),
    INVALID_OUTPUT: (
        "OutputSchemaMismatch",
        "OutputTooLarge",
        "OutputTooDeep",
        "LlmInvalidJson",
        "LlmSchemaMismatch",
    ),
    BOOKKEEPING_FAILED: ("BookkeepingFailed", "DatabaseRefused", "DatabaseOutage"),
}
_CODE_OF_TYPE = {kind: code for code, kinds in _BY_TYPE.items() for kind in kinds}
#: `Http404`, `Llm503`: an answer's status.
_STATUS_TYPE = re.compile(r"(?:Http|Llm)([45])\d\d")


def code_of_type(error_type: str | None) -> str:
    """The code of an `ApplicationError` type (`Http404` -> `http_4xx`)."""
    if not error_type:
        return NODE_FAILED
    status = _STATUS_TYPE.fullmatch(error_type)
    if status:
        return HTTP_4XX if status.group(1) == "4" else HTTP_5XX
    return _CODE_OF_TYPE.get(error_type, NODE_FAILED)
