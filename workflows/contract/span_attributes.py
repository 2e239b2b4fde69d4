"""The attribute names of the engine's spans, shared by the workflow's spans (run, node),
the agents' attempt spans and `meta-agent traces`; operators query traces by them.
"""

from __future__ import annotations

RUN_ID = "meta_agent.run.id"
TEMPORAL_RUN_ID = "meta_agent.run.temporal_run_id"
FLOW_ID = "meta_agent.flow.id"
FLOW_NAME = "meta_agent.flow.name"
FLOW_VERSION = "meta_agent.flow.version"
TENANT_ID = "meta_agent.tenant.id"
TRIGGERED_BY = "meta_agent.run.triggered_by"
PARENT_RUN_ID = "meta_agent.run.parent_id"
STATUS = "meta_agent.status"
ERROR = "meta_agent.error"
ERROR_TYPE = "meta_agent.error_type"
RETRYABLE = "meta_agent.retryable"
NODE_ID = "meta_agent.node.id"
NODE_TYPE = "meta_agent.node.type"
NODE_LABEL = "meta_agent.node.label"
TASK_ID = "meta_agent.node.task_id"
#: on a node's span: how many attempts it took
ATTEMPTS = "meta_agent.node.attempts"
#: on an agent's attempt span: which attempt it is
ATTEMPT = "meta_agent.node.attempt"

#: Spans keep at most this much of an error message (the whole one is in the rows).
ERROR_CHARS = 1000
