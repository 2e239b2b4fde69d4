"""Starting a run, and starting a failed or cancelled one again."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from flow_language.definition import FlowDefinition
from flow_language.refusals import counted
from flow_language.validation import DefinitionError, input_problems, parse_definition
from persistence import flow_lifecycle, queries
from persistence.ids import parse_uuid
from workflows.contract import FLOW_RUN, TRIGGER_TYPES, FlowResult, FlowRunInput


class InvalidInputs(ValueError):
    """The inputs break the start node's inputSchema; nothing was started."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(counted("invalid inputs", problems))


class InvalidFlow(ValueError):
    """The flow's definition is itself invalid (`check_definition`); nothing was started."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(counted("invalid flow", problems))


#: The longest run id a caller may choose: the row is keyed by it in VARCHAR(255), and its
#: sub-flows by `<run id>/<node id>` (node ids up to 128 characters).
MAX_RUN_ID = 120


class RunIdRefused(ValueError):
    """The run id cannot key a run: too long, or already used by another run."""


class RetryRefused(ValueError):
    """The run cannot be retried (still running, completed, or not a FlowRun); nothing started."""


class FlowUnavailable(ValueError):
    """The stored flow may not run now (archived, inactive, paused, or only a draft without
    `draft`); nothing was started. The message is the one the run itself would fail with.
    """


async def stored_flow(session: AsyncSession, params: FlowRunInput) -> queries.StoredDefinition:
    """The stored flow a request names, as its run would load it (in the request's tenant);
    FlowUnavailable when it may not run now, `queries.NotFoundError` when there is none.
    """
    tenant = parse_uuid(params.tenant_id) if params.tenant_id else None
    found = await queries.find_workflow_id(session, str(params.workflow_id), tenant_id=tenant)
    stored = await queries.load_definition(session, found, params.version, tenant_id=tenant)
    refused = flow_lifecycle.unavailable(stored, draft=params.draft)
    if refused:
        raise FlowUnavailable(refused)
    return stored


def check_inputs(definition: Any, inputs: Any) -> list[str]:
    """Problems of `inputs` against the start node's inputSchema of `definition` (raw JSON).

    The same check `prepare_flow` makes, made before a run exists so a caller's typo
    costs no run. A definition that is itself invalid yields none here: the run reports
    it, with all its problems, when it starts.
    """
    try:
        text = json.dumps(definition, sort_keys=True)
    except (TypeError, ValueError):  # not JSON: the run refuses it, naming the problem
        return []
    parsed = _parsed(text)
    return [] if parsed is None else input_problems(parsed, inputs)


@lru_cache(maxsize=64)
def _parsed(definition: str) -> FlowDefinition | None:
    """A definition parsed once for the many runs a caller starts of it (None: invalid)."""
    try:
        return parse_definition(json.loads(definition))
    except DefinitionError:
        return None


async def start_run(
    client: Client,
    task_queue: str,
    params: FlowRunInput,
    *,
    run_id: str | None = None,
    execution_timeout: timedelta | None = None,
    flow_name: str | None = None,
    trigger_type: str | None = None,
    trigger_metadata: dict[str, Any] | None = None,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    existing_ok: bool = False,
    check_definition: bool = False,
) -> WorkflowHandle[Any, FlowResult]:
    """Start a `FlowRun`; `run_id` becomes the Temporal workflow ID (the orchestrator run ID).

    The Temporal UI shows the run's argument as the caller's request only (no field left
    at its default), and a summary naming the flow (`flow_name` when the caller knows it),
    with its version, tenant and who started it in the details.

    `execution_timeout` bounds the whole run, continue-as-new included; past it the run
    ends as failed with TIME_LIMIT_ERROR (written by the reconciler).

    `trigger_type` (manual, schedule, webhook, event; ValueError for another) and
    `trigger_metadata` say what started the run, recorded on its row; they override the
    request's own.

    The inputs of an inline definition are checked first: InvalidInputs, and nothing is
    started, when they break its inputSchema. A stored flow's definition is in the
    database: with `sessions`, it is loaded first, and a flow that may not run now raises
    FlowUnavailable (archived, inactive, paused, a draft without `params.draft`) and inputs
    that break it InvalidInputs, nothing started; without, the run refuses them itself.

    `existing_ok` (a `run_id` derived from a delivery's idempotency key): a run already
    under `run_id`, running or ended, is returned as it is, before any check, so a
    redelivery gets the first delivery's run and never starts a second.

    `check_definition` (callers that answer a sender who cannot see the run fail, such as
    a webhook): a definition that is itself invalid raises InvalidFlow with its problems
    instead of starting a run that fails at once.
    """
    params = _with_trigger(params, trigger_type, trigger_metadata)
    if existing_ok and run_id and await _exists(client, run_id):
        return client.get_workflow_handle(run_id, result_type=FlowResult)
    definition = params.definition
    if definition is None and params.workflow_id and sessions is not None:
        async with sessions() as session:
            definition = (await stored_flow(session, params)).definition
    if definition is not None and check_definition:
        try:
            parse_definition(definition)
        except DefinitionError as exc:
            raise InvalidFlow(exc.problems) from None
    if definition is not None:
        problems = check_inputs(definition, params.inputs)
        if problems:
            raise InvalidInputs(problems)
    run_id = run_id or f"flow-{uuid.uuid4()}"
    if len(run_id) > MAX_RUN_ID:
        raise RunIdRefused(f"run id of {len(run_id)} characters, over the {MAX_RUN_ID} allowed")
    try:
        return await client.start_workflow(
            FLOW_RUN,
            params.model_dump(mode="json", exclude_defaults=True),
            id=run_id,
            static_summary=_summary(params, flow_name),
            static_details=_details(params),
            task_queue=task_queue,
            result_type=FlowResult,
            execution_timeout=execution_timeout,
            # A run's rows are keyed by its id: a second run under it would overwrite them.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        if existing_ok:  # the same delivery, twice at once: the other one started it
            return client.get_workflow_handle(run_id, result_type=FlowResult)
        raise RunIdRefused(f"run id {run_id!r} is already used by another run") from None


async def _exists(client: Client, run_id: str) -> bool:
    """Whether Temporal knows a run under `run_id` (running, or ended within retention)."""
    try:
        await client.get_workflow_handle(run_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def _with_trigger(
    params: FlowRunInput, trigger_type: str | None, trigger_metadata: dict[str, Any] | None
) -> FlowRunInput:
    """The request with the caller's trigger, refused (ValueError) outside the vocabulary."""
    update: dict[str, Any] = {}
    if trigger_type is not None:
        if trigger_type not in TRIGGER_TYPES:
            raise ValueError(
                f"trigger_type {trigger_type!r} is not one of {', '.join(TRIGGER_TYPES)}"
            )
        update["trigger_type"] = trigger_type
    if trigger_metadata is not None:
        if not isinstance(trigger_metadata, dict):
            raise ValueError("trigger_metadata must be a JSON object")
        update["trigger_metadata"] = trigger_metadata
    return params.model_copy(update=update) if update else params


def _summary(params: FlowRunInput, flow_name: str | None) -> str:
    """One line for the UI's run list and header: which flow, which version."""
    inline = params.definition.get("name") if isinstance(params.definition, dict) else None
    name = flow_name or params.workflow_id or (inline if isinstance(inline, str) else None)
    version = f" v{params.version}" if params.version is not None else ""
    return f"{name or 'inline flow'}{version}"[:200]


def _details(params: FlowRunInput) -> str:
    """Who and what the run is for, as the UI's details (Markdown)."""
    facts = [
        ("flow", params.workflow_id or "(inline definition)"),
        ("version", params.version),
        ("tenant", params.tenant_id),
        ("workspace", params.workspace_id),
        ("started by", params.triggered_by),
        ("parent run", params.parent_run_id),
        ("retry of", params.retry_of),
        ("trigger", params.trigger_type if params.trigger_type != "manual" else None),
        ("draft run", "yes" if params.draft else None),
        ("tags", ", ".join(params.tags) if params.tags else None),
        ("inputs", ", ".join(sorted(params.inputs)) or None),
    ]
    return "\n".join(f"- **{k}**: `{v}`" for k, v in facts if v is not None)


#: What a retry carries over from the run it retries: the caller's request, nothing the run
#: set itself (its checkpoint) and no parent (a retry is a run of its own).
_REQUEST_FIELDS = {
    "workflow_id",
    "version",
    "definition",
    "inputs",
    "tenant_id",
    "workspace_id",
    "triggered_by",
    "tags",
    "history_limit",
    "search_attributes",
    "trigger_type",
    "trigger_metadata",
    "draft",
}

_RETRYABLE = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}


@dataclass(frozen=True)
class StartedWith:
    """What a run was started with: its request, task queue and time limit."""

    request: FlowRunInput
    task_queue: str
    execution_timeout: timedelta | None


async def original_request(client: Client, run_id: str) -> StartedWith:
    """The request a run was started with, its task queue and its time limit.

    Read from the start event of the run's latest Temporal run: a run that continued as new
    carries its request on unchanged, with its own checkpoint (a second argument, or in
    older runs a field of the first), which is dropped here. (The chain's first run may
    already be gone past the namespace's retention.)
    """
    handle = client.get_workflow_handle(run_id)
    async for event in handle.fetch_history_events(page_size=1):
        attrs = event.workflow_execution_started_event_attributes
        break
    else:  # pragma: no cover - every workflow history opens with its start event
        raise RetryRefused(f"run {run_id!r} has no start event")
    if attrs.workflow_type.name != FLOW_RUN:
        raise RetryRefused(f"run {run_id!r} is a {attrs.workflow_type.name!r}, not a {FLOW_RUN}")
    try:
        # The request is the first argument; a run continued as new carries its checkpoint
        # as a second.
        [request] = await client.data_converter.decode(attrs.input.payloads[:1], [FlowRunInput])
    except Exception as exc:  # a run started raw, with an argument that is no request
        raise RetryRefused(
            f"run {run_id!r} was not started with a FlowRun request: {str(exc)[:200]}"
        ) from None
    assert isinstance(request, FlowRunInput)
    timeout = attrs.workflow_execution_timeout
    return StartedWith(
        FlowRunInput(**request.model_dump(include=_REQUEST_FIELDS)),
        attrs.task_queue.name,
        timeout.ToTimedelta() if attrs.HasField("workflow_execution_timeout") else None,
    )


async def retry(
    client: Client,
    run_id: str,
    *,
    new_run_id: str | None = None,
    task_queue: str | None = None,
    from_scratch: bool = False,
) -> WorkflowHandle[Any, FlowResult]:
    """Start the failed or cancelled run `run_id` again, as a new run that points to it.

    Same flow (id and version, or inline definition; a request without a version gets the
    flow's current one, as any start does), inputs, tenant, workspace, triggered_by, tags
    and time limit, under `new_run_id` (default: a new `flow-<uuid>`), on the original's
    task queue unless `task_queue` is given. The original run is left as it is; the new
    one's `retry_of` names it (`workflow_runs.retry_of_run_id`).

    By default the new run reuses the outputs the original's completed nodes recorded in
    Postgres and runs only the others (and what follows them); `from_scratch` runs every
    node again. Outputs are reused only if the original ran the same flow version.

    RetryRefused, and nothing is started, while it still runs or when it completed; the
    errors of `start_run` (InvalidInputs, RunIdRefused) apply as for any start.
    """
    description = await client.get_workflow_handle(run_id).describe()
    if description.status == WorkflowExecutionStatus.RUNNING:
        raise RetryRefused(f"run {run_id!r} is still running: cancel it or wait for its end")
    if description.status not in _RETRYABLE:
        state = description.status.name.lower() if description.status else "in an unknown state"
        raise RetryRefused(f"run {run_id!r} {state}: only a failed or cancelled run is retried")
    started = await original_request(client, run_id)
    request = started.request.model_copy(
        update={"retry_of": run_id, "reuse_outputs": not from_scratch}
    )
    return await start_run(
        client,
        task_queue or started.task_queue,
        request,
        run_id=new_run_id,
        execution_timeout=started.execution_timeout,
    )
