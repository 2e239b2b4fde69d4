"""Agent nodes (docker, api, a2a, llm, vision, audio, sensor): one activity each.

The activity renders the node's config itself, with the tenant's secrets, so
no secret enters the run's history; it writes the node's rows itself too. The
workflow passes it the raw config and only the node outputs its templates read.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.exceptions import CancelledError as TemporalCancelledError
from temporalio.workflow import ActivityCancellationType

from workflows import patches
from workflows.failures import NodeError, check_payload, error_text

with workflow.unsafe.imports_passed_through():
    from flow_language import templates
    from flow_language.definition import (
        A2A_NEEDS_INPUT_STATES,
        ERROR_HANDLE,
        INPUT_BY_DEFAULT_TYPES,
        INPUT_REQUIRED_HANDLE,
        Node,
        RetrySpec,
    )
    from workflows.contract import AGENT_ACTIVITY_PREFIX, MAX_WRITE_BYTES, AgentTask

if TYPE_CHECKING:
    from workflows.scheduler import NodeResult, Scope

DEFAULT_AGENT_TIMEOUT = timedelta(minutes=5)
AGENT_HEARTBEAT_TIMEOUT = timedelta(seconds=10)


async def run_agent(scope: Scope, node: Node, task_id: str) -> NodeResult:
    """Agent nodes other than a2a: the activity's output, leaving by every handle but `error`."""
    return await _agent(scope, node, task_id), None


async def run_a2a(scope: Scope, node: Node, task_id: str) -> NodeResult:
    """An A2A task that needs input (or auth) leaves by `input_required` alone."""
    output = await _agent(scope, node, task_id)
    if isinstance(output, dict) and output.get("state") in A2A_NEEDS_INPUT_STATES:
        return output, [INPUT_REQUIRED_HANDLE]
    return output, scope.handles_except(node, ERROR_HANDLE, INPUT_REQUIRED_HANDLE)


def retry_policy(retry: RetrySpec | None) -> RetryPolicy:
    """The node's `retry` as Temporal's policy: 3 attempts from 1 s, doubling, by default."""
    return RetryPolicy(
        maximum_attempts=(retry.maxAttempts if retry and retry.maxAttempts else 3),
        initial_interval=timedelta(
            seconds=(retry.initialIntervalSeconds if retry and retry.initialIntervalSeconds else 1)
        ),
        backoff_coefficient=(
            retry.backoffCoefficient if retry and retry.backoffCoefficient else 2.0
        ),
        maximum_interval=timedelta(seconds=retry.maxIntervalSeconds)
        if retry and retry.maxIntervalSeconds
        else None,
        non_retryable_error_types=list(retry.nonRetryableErrors) if retry else None,
    )


async def _agent(scope: Scope, node: Node, task_id: str) -> Any:
    run = scope.run
    refs = run.references(node)
    visible = scope.scope_vars()
    reads = {k: v for k, v in visible.items() if k != "nodes"}
    reads["nodes"] = {k: v for k, v in visible["nodes"].items() if k in refs.nodes}
    if not _reads_input(node, refs) and patches.patched(patches.AGENT_INPUT_ONLY_IF_READ):
        # The run's input travels to the activity only when the node uses it: a loop over
        # a large input would otherwise carry all of it into every iteration's activity.
        del reads["input"]
    timeout = (
        timedelta(seconds=node.data.timeoutSeconds)
        if node.data.timeoutSeconds
        else DEFAULT_AGENT_TIMEOUT
    )
    agent_task = AgentTask(
        run_row_id=run.run_row_id or "",
        tenant_id=run.tenant_id,
        task_id=task_id,
        node_id=node.id,
        node_type=node.type,
        label=node.label,
        config=node.data.config,
        scope=reads,
        input_schema=node.data.inputSchema,
        output_schema=node.data.outputSchema,
        strict_templates=run.strict_templates,
        tolerant_nodes=templates.tolerant_nodes(reads),
        outgoing_handles=sorted({h for h in scope.defn.out_handles(node.id) if h}),
    )
    if run.records_every_end:
        try:
            size = check_payload(agent_task, "the node's input (its config and what it reads)")
        except NodeError as exc:  # its activity never runs to write the row: write it here
            _failed_row(scope, node, task_id, str(exc), started_at=workflow.now())
            raise
        # Other nodes' rows ride along only in the room the node's own input leaves.
        agent_task.carried_rows = run.write_back.take_finished(room=MAX_WRITE_BYTES - size)
    try:
        return await workflow.execute_activity(
            f"{AGENT_ACTIVITY_PREFIX}{node.type}",
            agent_task,
            activity_id=task_id,
            start_to_close_timeout=timeout,
            heartbeat_timeout=min(AGENT_HEARTBEAT_TIMEOUT, timeout),
            retry_policy=retry_policy(node.data.retry),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=node.label,
        )
    except BaseException as exc:
        # Ended without success: the rows it carried may not have been written.
        run.write_back.restore(agent_task.carried_rows)
        if not isinstance(exc, ActivityError):
            raise
        if isinstance(exc.cause, TemporalCancelledError):
            raise asyncio.CancelledError() from None
        message = error_text(exc)
        # A timed-out attempt could not record its own end: record it here.
        _failed_row(scope, node, task_id, message)
        raise NodeError(message) from None


def _reads_input(node: Node, refs: templates.References) -> bool:
    """Whether the activity needs the run's input: its templates read it, or it is what the
    node takes without a `config.input` (a docker node's stdin, an `inputSchema`'s subject).
    """
    if "input" in refs.names:
        return True
    defaults_to_input = node.type in INPUT_BY_DEFAULT_TYPES or node.data.inputSchema is not None
    return defaults_to_input and "input" not in node.data.config


def _failed_row(
    scope: Scope, node: Node, task_id: str, message: str, started_at: datetime | None = None
) -> None:
    """An agent node's failed row, where its activity could not write it."""
    scope.run.record_node(
        task_id, node, "failed", error=message, started_at=started_at, completed_at=workflow.now()
    )
