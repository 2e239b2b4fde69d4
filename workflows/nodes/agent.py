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
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import CancelledError as TemporalCancelledError
from temporalio.workflow import ActivityCancellationType

from workflows import patches
from workflows.failures import NodeError, check_payload, error_text, failure_code

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
    from workflows.contract import (
        AGENT_ACTIVITY_PREFIX,
        DATABASE_UNAVAILABLE,
        MAX_WRITE_BYTES,
        AgentOutcome,
        AgentTask,
    )

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


def a2a_handles(scope: Scope, node: Node, output: Any) -> list[str | None]:
    """A reused A2A task leaves as it did: by `input_required` alone if it needed input."""
    if isinstance(output, dict) and output.get("state") in A2A_NEEDS_INPUT_STATES:
        return [INPUT_REQUIRED_HANDLE]
    return scope.handles_except(node, ERROR_HANDLE, INPUT_REQUIRED_HANDLE)


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
    if "variables" not in refs.names:  # the flow's constants travel only to nodes that read them
        reads.pop("variables", None)
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
    rows_may_wait = run.records_every_end and patches.patched(patches.ROWS_WAIT_FOR_DATABASE)
    agent_task.rows_may_wait = rows_may_wait
    if run.records_every_end:
        try:
            size = check_payload(agent_task, "the node's input (its config and what it reads)")
        except NodeError as exc:  # its activity never runs to write the row: write it here
            _failed_row(scope, node, task_id, str(exc), started_at=workflow.now())
            raise
        # Other nodes' rows ride along only in the room the node's own input leaves.
        agent_task.carried_rows = run.write_back.take_finished(room=MAX_WRITE_BYTES - size)
    waited = timedelta(0)
    while True:
        try:
            result = await workflow.execute_activity(
                f"{AGENT_ACTIVITY_PREFIX}{node.type}",
                agent_task,
                activity_id=task_id,
                start_to_close_timeout=timeout,
                heartbeat_timeout=min(AGENT_HEARTBEAT_TIMEOUT, timeout),
                retry_policy=retry_policy(node.data.retry),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=node.label,
                result_type=AgentOutcome if rows_may_wait else None,
            )
        except ActivityError as exc:
            if rows_may_wait and _database_unavailable(exc):
                # Nothing was done: wait for the database, keeping the node's attempts.
                waited = await _wait_for_database(node, waited)
                continue
            run.write_back.restore(agent_task.carried_rows)
            if isinstance(exc.cause, TemporalCancelledError):
                raise asyncio.CancelledError() from None
            message = error_text(exc)
            # A timed-out attempt could not record its own end: record it here.
            _failed_row(scope, node, task_id, message)
            raise NodeError(message, failure_code(exc)) from None
        except BaseException:
            # Ended without success: the rows it carried may not have been written.
            run.write_back.restore(agent_task.carried_rows)
            raise
        if not rows_may_wait:
            return result
        return _take_outcome(scope, agent_task, result)


def _database_unavailable(exc: ActivityError) -> bool:
    return isinstance(exc.cause, ApplicationError) and exc.cause.type == DATABASE_UNAVAILABLE


async def _wait_for_database(node: Node, waited: timedelta) -> timedelta:
    """Sleep before trying an agent again that could not begin for a database outage: from
    a second, doubling, up to a minute. Returns how long it has waited in all.
    """
    delay = min(max(waited, timedelta(seconds=1)), timedelta(minutes=1))
    await workflow.sleep(delay, summary=f"{node.label}: waiting for the database")
    return waited + delay


def _take_outcome(scope: Scope, task: AgentTask, outcome: AgentOutcome) -> Any:
    """The agent's output; rows the database could not take when they were due go to the
    run's write-back buffer, which retries until it answers.
    """
    write_back = scope.run.write_back
    if not outcome.carried_written:
        write_back.restore(task.carried_rows)
    if outcome.row is not None:
        write_back.add(outcome.row.model_copy(update={"outputs": outcome.output}))
    if outcome.attempt is not None:
        scope.run.view(task.task_id, task.node_id, attempts=outcome.attempt)
    return outcome.output


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
