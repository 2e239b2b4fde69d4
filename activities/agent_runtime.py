"""What every agent activity does around its own work.

An agent activity records its own `task_instances` row (running, then
completed or failed), so the workflow spends no extra round trip on
bookkeeping; renders its config with secrets, which exist only here;
heartbeats so cancellation and worker death are noticed quickly; and turns
errors into retryable or non-retryable Temporal failures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.activity import Info as ActivityInfo
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.agent_rows import AttemptRows
from activities.agent_spans import attempt_span
from activities.database_refusals import outage_outlasted
from activities.log_context import name_node
from activities.outbound import outbound_refusal
from activities.row_batches import RowBatches
from activities.scrubber import ACTIVE, Scrubber
from activities.secrets import MissingSecretError, SecretProvider, masked
from flow_language import templates
from flow_language.form_schema import validator_for
from flow_language.sizes import MAX_VALUE_DEPTH, json_size, value_depth
from persistence.health import DatabaseHealth, database_unreachable
from persistence.ids import require_uuid
from workflows.contract import (
    AGENT_ACTIVITY_PREFIX,
    DATABASE_UNAVAILABLE,
    MAX_OUTPUT_BYTES,
    AgentTask,
    TaskRecord,
)

AgentHandler = Callable[[dict[str, Any], AgentTask], Awaitable[Any]]
_HEARTBEAT_EVERY = 1.0
_MAX_ERROR_CHARS = 4000
#: What one node may hand back: Temporal refuses payloads over 2 MB, with a far less clear
#: message than ours, and the row and every later node's scope carry the output too.


class AgentRuntime:
    """What every agent activity does around its own work (see the module's docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        secrets: SecretProvider,
        health: DatabaseHealth | None = None,
        rows: RowBatches | None = None,
    ) -> None:
        self._sessions = sessions
        #: where node rows go (benchmark (d)'s write-back-off worker passes one that drops them)
        self._rows = rows or RowBatches(sessions)
        self._secrets = secrets
        self._health = health or DatabaseHealth()

    async def _record(self, task: AgentTask, row: TaskRecord, carried: bool = False) -> None:
        """Upsert the node's row; with `carried`, the finished rows of other nodes the
        workflow handed this activity too (all in one transaction).
        """
        run_row_id = require_uuid(task.run_row_id, "run_row_id")
        rows = [*task.carried_rows, row] if carried else [row]
        await self._rows.write(
            run_row_id, task.tenant_id, rows, refresh_usage=row.total_tokens is not None
        )

    def activity(
        self, agent_type: str, handler: AgentHandler
    ) -> Callable[[AgentTask], Awaitable[Any]]:
        """The `agent.<type>` activity running `handler` inside the common envelope."""

        @activity.defn(name=f"{AGENT_ACTIVITY_PREFIX}{agent_type}")
        async def run_agent(task: AgentTask) -> Any:
            name_node(task)
            with attempt_span(task, activity.info()):
                return await self.run(task, handler)

        return run_agent

    async def run(self, task: AgentTask, handler: AgentHandler) -> Any:
        """One attempt of an agent node: render its config, record its rows, run `handler`, and
        scrub and check what it returns; failures come out as Temporal decides to retry them or not.
        """
        info = activity.info()
        refs = templates.references(task.config)
        scope = (
            templates.mark_tolerant(task.scope, task.tolerant_nodes)
            if task.tolerant_nodes
            else task.scope
        )
        # Heartbeats while rendering too: a heavy (if bounded) template takes a while.
        heartbeat = asyncio.create_task(_heartbeat_forever())
        try:
            # Off the event loop: it must not stall other runs' heartbeats and calls. A config
            # without templates is what it says (no thread hand-off for it).
            public = (
                await asyncio.to_thread(
                    templates.render,
                    task.config,
                    {**scope, "secrets": masked(refs.secrets)},
                    strict=task.strict_templates,
                )
                if templates.has_template(task.config)
                else task.config
            )
        except BaseException as exc:
            heartbeat.cancel()
            if isinstance(exc, templates.TemplateError):
                raise ApplicationError(str(exc), type="TemplateError", non_retryable=True) from None
            raise
        row = TaskRecord(
            orchestrator_task_id=task.task_id,
            node_id=task.node_id,
            status="running",
            agent_type=task.node_type,
            agent_config=task.config,
            inputs=public,
            retry_count=info.attempt - 1,
            started_at=datetime.now(UTC),
        )
        rows = AttemptRows(
            lambda row, carried: self._record(task, row, carried), task, row, self._health
        )
        # The heartbeat goes on until the rows are written: a write that hangs (a database
        # cut off without a reset) must not make Temporal think the attempt died and run
        # the agent's work again.
        try:
            return await self._work(task, handler, info, refs.secrets, scope, public, rows)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _work(
        self,
        task: AgentTask,
        handler: AgentHandler,
        info: ActivityInfo,
        secret_names: Iterable[str],
        scope: dict[str, Any],
        public: Any,
        rows: AttemptRows,
    ) -> Any:
        """Resolve secrets, render, run `handler`, check its output and write the end row."""
        secrets: Mapping[str, str] = {}
        scrubber = Scrubber(())
        try:
            if secret_names:
                secrets = await self._resolve_secrets(task, secret_names)
                scrubber = Scrubber(secrets.values())
            with ACTIVE.holding(secrets.values()):
                config = (
                    await asyncio.to_thread(
                        templates.render,
                        task.config,
                        {**scope, "secrets": secrets},
                        strict=task.strict_templates,
                    )
                    if secrets
                    else public
                )
                if task.input_schema is not None:
                    _enforce(
                        task.input_schema, config.get("input", task.scope.get("input")), "input"
                    )
                output = scrubber.value(await handler(config, task))
            _check_size(output)
            if task.output_schema is not None:
                _enforce(task.output_schema, output, "output")
        except asyncio.CancelledError:
            await rows.ended_otherwise(
                status="cancelled", error="cancelled", completed_at=datetime.now(UTC)
            )
            raise
        except Exception as exc:
            if isinstance(exc, ApplicationError) and exc.type == DATABASE_UNAVAILABLE:
                await rows.close()  # nothing was done: no row
                raise
            failure = _as_application_error(exc, task, scrubber)
            last = failure.non_retryable or _is_last_attempt(info)
            await rows.ended_otherwise(
                status="failed" if last else "running",
                error=str(failure)[:_MAX_ERROR_CHARS],
                completed_at=datetime.now(UTC) if last else None,
            )
            # Not `from exc`: the original exception (and the text of its causes) would
            # travel with the failure into history unscrubbed.
            raise failure from None
        finally:
            await rows.close()
        await rows.completed(
            outputs=output, completed_at=datetime.now(UTC), **_usage_columns(output)
        )
        return rows.outcome(output)

    async def _resolve_secrets(self, task: AgentTask, names: Iterable[str]) -> Mapping[str, str]:
        """The tenant's secrets the config names. With the database unreachable the attempt
        does nothing and says so (`DATABASE_UNAVAILABLE`): the workflow waits and tries again
        without spending the node's attempts, until the outage outlasts the worker's patience.
        """
        try:
            secrets = await self._secrets.resolve(task.tenant_id, names)
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            self._health.lost(exc)
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            if self._health.gave_up():
                raise outage_outlasted(self._health, reason, task.node_id) from None
            if not task.rows_may_wait:
                raise
            raise ApplicationError(
                f"node {task.node_id!r}: the database is unreachable ({reason}); waiting for it",
                type=DATABASE_UNAVAILABLE,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,  # logged once, by the health
            ) from None
        self._health.answered()
        return secrets


async def _heartbeat_forever() -> None:
    """Heartbeat once the attempt has worked a while: the first heartbeat goes to the server
    at once (later ones are throttled), which a quick call should not pay for.
    """
    while True:
        await asyncio.sleep(_HEARTBEAT_EVERY)
        activity.heartbeat()


def _check_size(output: Any) -> None:
    depth = value_depth(output)
    if depth > MAX_VALUE_DEPTH:
        raise ApplicationError(
            f"the node's output nests more than {MAX_VALUE_DEPTH} levels deep, "
            "more than a run's values may",
            type="OutputTooDeep",
            non_retryable=True,
        )
    size = json_size(output)
    if size > MAX_OUTPUT_BYTES:
        raise ApplicationError(
            f"the node's output is {size} bytes, over the {MAX_OUTPUT_BYTES} a node may "
            "return; ask for less (maxResponseBytes, maxLogBytes, maxTokens ...)",
            type="OutputTooLarge",
            non_retryable=True,
        )


def _usage_columns(output: Any) -> dict[str, Any]:
    """What a model node reports as `{model, usage, first_token_ms}`, as row columns."""
    if not isinstance(output, dict) or not isinstance(output.get("usage"), dict):
        return {}
    usage = output["usage"]
    columns = {
        "model_used": output.get("model"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "first_token_time_ms": output.get("first_token_ms"),
    }
    return {k: v for k, v in columns.items() if v is not None}


def _enforce(schema: dict[str, Any], value: Any, what: str) -> None:
    """The agent's input_schema / output_schema: a mismatch is the flow's fault, not retried."""
    errors = sorted(validator_for(schema).iter_errors(value), key=lambda e: list(e.path))
    if not errors:
        return
    details = "; ".join(
        f"{what}{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message}" for e in errors[:5]
    )
    raise ApplicationError(
        f"the node's {what} does not match its {what}Schema: {details}",
        type=f"{what.capitalize()}SchemaMismatch",
        non_retryable=True,
    )


def _is_last_attempt(info: activity.Info) -> bool:
    policy = info.retry_policy
    return bool(policy and policy.maximum_attempts and info.attempt >= policy.maximum_attempts)


def _as_application_error(exc: Exception, task: AgentTask, scrubber: Scrubber) -> ApplicationError:
    """What Temporal and the rows get: a scrubbed message and details, no raw cause."""
    if isinstance(exc, MissingSecretError):
        return ApplicationError(str(exc), type="MissingSecret", non_retryable=True)
    if isinstance(exc, templates.TemplateError):
        return ApplicationError(scrubber.text(str(exc)), type="TemplateError", non_retryable=True)
    refused = outbound_refusal(exc)
    if refused is not None:
        return ApplicationError(
            scrubber.text(f"node {task.node_id!r}: {refused}"),
            type="OutboundRefused",
            non_retryable=True,
        )
    if isinstance(exc, ApplicationError):
        return ApplicationError(
            scrubber.text(exc.message),
            *scrubber.value(list(exc.details)),
            type=exc.type,
            non_retryable=exc.non_retryable,
            next_retry_delay=exc.next_retry_delay,
        )
    return ApplicationError(scrubber.text(f"{type(exc).__name__}: {exc}"), type=type(exc).__name__)
