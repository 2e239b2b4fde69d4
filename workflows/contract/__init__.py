"""The Temporal surface of the engine: every name and every model that crosses a process.

`FlowRun` and its callers (the client, the CLI, any Temporal SDK) meet on the
workflow, signal, query and update names; `FlowRun` and its activities meet on
the activity names and their argument models. Both sides import this package
(the write-back's records and the review activities' models live in its
submodules, re-exported here) and nothing else of each other, so a rename here
is a rename everywhere, and a renamed constant that runs in flight still use
breaks replay: keep the values.

One pydantic model per argument, so fields can be added later with defaults
without breaking histories of runs in flight. Payloads stay plain JSON, so any
Temporal client can start a run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flow_language.review_rules import HitlTaskState
from workflows.contract.error_codes import (
    code_of_type as code_of_type,
)
from workflows.contract.records import (
    TRIGGER_TYPES as TRIGGER_TYPES,
)
from workflows.contract.records import (
    RunRecord as RunRecord,
)
from workflows.contract.records import (
    RunStatus as RunStatus,
)
from workflows.contract.records import (
    RunUpdate as RunUpdate,
)
from workflows.contract.records import (
    TaskRecord as TaskRecord,
)
from workflows.contract.records import (
    TaskStatus as TaskStatus,
)
from workflows.contract.records import (
    TriggerType as TriggerType,
)
from workflows.contract.review import (
    DecisionRecord as DecisionRecord,
)
from workflows.contract.review import (
    EscalationRecord as EscalationRecord,
)
from workflows.contract.review import (
    HitlClose as HitlClose,
)
from workflows.contract.review import (
    HitlOpen as HitlOpen,
)
from workflows.contract.review import (
    ReviewerCheck as ReviewerCheck,
)

# -- names: stable, since renaming one breaks the histories of runs in flight -----------------

#: The one workflow type.
FLOW_RUN = "FlowRun"
#: Signals FlowRun takes: pause and resume it, an event for `wait` nodes, a reviewer's decision.
PAUSE_SIGNAL = "pause"
RESUME_SIGNAL = "resume"
EVENT_SIGNAL = "event"
HITL_DECISION_SIGNAL = "hitl_decision"
#: The update that records a reviewer's decision and answers with its row (or why not).
SUBMIT_HITL_DECISION_UPDATE = "submit_hitl_decision"
#: The query answering the run's status, its nodes and its open review tasks.
STATUS_QUERY = "status"

#: Activities: load and validate the flow; write run and node rows; one per agent type.
PREPARE_FLOW = "prepare_flow"
RECORD_RUN = "record_run"
AGENT_ACTIVITY_PREFIX = "agent."
#: Review (HITL) bookkeeping activities.
HITL_OPEN = "hitl_open"
HITL_CHECK_REVIEWER = "hitl_check_reviewer"
HITL_RECORD_DECISION = "hitl_record_decision"
#: Checks the reviewer and records the decision in one transaction (runs since
#: `decision-in-one-step`). A name of its own: a worker of an older release, which would
#: record the decision without the check, does not have it, so the task waits for one that does.
HITL_DECIDE = "hitl_decide"
#: `hitl_decide`, and the run's row from `waiting_hitl` to `running` in the same transaction,
#: answering whether it moved it (runs since `decision-resumes-run`). A name of its own: a
#: worker of an older release would store the decision and leave the row as it was.
HITL_DECIDE_RESUMING = "hitl_decide_resuming"
HITL_ESCALATE = "hitl_escalate"
HITL_CLOSE = "hitl_close"
#: Reads the completed node rows of the run a retry reuses (`FlowRunInput.retry_of`).
LOAD_REUSED_OUTPUTS = "load_reused_outputs"

# -- the workflow's argument and result ------------------------------------------------------

#: The most a node may return: Temporal refuses payloads over 2 MB, and a node's output
#: travels in one (an activity result, a write-back, the workflow's own state).
MAX_OUTPUT_BYTES = 1_500_000
#: The most one write-back may carry (rows plus the run's outputs), under that 2 MB limit.
MAX_WRITE_BYTES = 1_800_000


NodeStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]
#: The statuses of a node (and its row) that has ended: none changes again.
NODE_ENDED = ("completed", "failed", "skipped", "cancelled")


class NodeState(BaseModel):
    """What the interpreter knows of one top-level node (kept across continue-as-new)."""

    status: NodeStatus = "pending"
    output: Any = None
    #: the handles it left by (edges with these sourceHandles are taken)
    handles: list[str | None] = Field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    #: it took its recorded output from the retried run instead of running
    reused: bool = False


class EventMessage(BaseModel):
    """Payload of the `event` signal, which `wait` nodes with config.event wait for."""

    name: str
    payload: Any = None


class LoopProgress(BaseModel):
    """Finished iterations of a loop interrupted by continue-as-new."""

    results: dict[int, Any] = Field(default_factory=dict)
    total: int | None = None


class Checkpoint(BaseModel):
    """The state a run carries into its next Temporal run after continue-as-new."""

    run_row_id: str
    definition: dict[str, Any]
    workflow_id: str | None = None
    flow_name: str | None = None
    version: int | None = None
    tenant_id: str | None = None
    workspace_id: str | None = None
    nodes: dict[str, NodeState] = Field(default_factory=dict)
    loops: dict[str, LoopProgress] = Field(default_factory=dict)
    wait_deadlines: dict[str, datetime] = Field(default_factory=dict)
    hitl: dict[str, HitlTaskState] = Field(default_factory=dict)
    events: list[EventMessage] = Field(default_factory=list)
    paused: bool = False
    continued: int = 0
    #: the retried run's `workflow_runs.id` whose completed node outputs this run reuses
    reuse_run_id: str | None = None


class FlowRunInput(BaseModel):
    """The `FlowRun` argument (CONTRACT section 2)."""

    model_config = ConfigDict(extra="ignore")

    workflow_id: str | None = None
    version: int | None = None
    definition: dict[str, Any] | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    tenant_id: str | None = None
    workspace_id: str | None = None
    triggered_by: str | None = None
    tags: list[str] = Field(default_factory=list)
    parent_run_id: str | None = None
    #: the workflow id of the run this one retries (`workflow_runs.retry_of_run_id`), and
    #: whether to reuse what that run's completed nodes recorded instead of running them
    retry_of: str | None = None
    reuse_outputs: bool = True
    #: what started the run (`workflow_runs.trigger_type`) and what it said: a schedule's
    #: `{"scheduled_time": ...}`, an event's `{"event": name, "payload": ...}`, a webhook's
    #: request details; recorded on the run row as given
    trigger_type: TriggerType = "manual"
    trigger_metadata: dict[str, Any] = Field(default_factory=dict)
    #: run a stored flow's draft version (or a draft flow) on purpose; without it only a
    #: published one runs (inline definitions are drafts by nature and always run)
    draft: bool = False
    #: Internal: set by the run itself when it continues as new.
    checkpoint: Checkpoint | None = None
    #: Internal (tests, benchmarks): continue as new past this many history events.
    history_limit: int | None = Field(default=None, ge=100)
    #: Internal: off only on servers that cannot register custom search attributes
    #: (Temporal's time-skipping test server); sub-flows inherit it.
    search_attributes: bool = True


class FlowResult(BaseModel):
    """What `FlowRun` returns: only a completed run returns; a failed or cancelled one raises."""

    status: Literal["completed"] = "completed"
    outputs: dict[str, Any] = Field(default_factory=dict)


class PrepareInput(BaseModel):
    """The `prepare_flow` argument: the run as requested, and when it started (the run's row records
    it).
    """

    orchestrator_run_id: str
    request: FlowRunInput
    started_at: datetime
    #: the Temporal Schedule that started the run and the time it fired for, from the
    #: search attributes Temporal sets on a scheduled start (None: not started by one)
    scheduled_by: str | None = None
    scheduled_time: datetime | None = None


class PreparedFlow(BaseModel):
    """A loaded and validated definition, or the problems that stop the run."""

    run_row_id: str
    definition: dict[str, Any] = Field(default_factory=dict)
    workflow_id: str | None = None
    #: the stored flow's name (an inline definition's own `name`), for people and telemetry
    flow_name: str | None = None
    version: int | None = None
    tenant_id: str | None = None
    workspace_id: str | None = None
    problems: list[str] = Field(default_factory=list)
    #: why the run cannot start, in the words its row and its failure carry (None: it can)
    error: str | None = None
    #: the failure's type: InvalidFlow, InvalidInputs, UnknownReference
    error_type: str = "InvalidFlow"
    #: the retried run whose completed node outputs may be reused (same tenant and flow)
    reuse_run_id: str | None = None


class AgentTask(BaseModel):
    """One agent node execution; the activity renders `config` itself, with secrets."""

    run_row_id: str
    tenant_id: str | None = None
    task_id: str
    node_id: str
    node_type: str
    label: str
    #: raw config: templates still unrendered, so secrets never enter the history
    config: dict[str, Any]
    #: what the templates may read: input, run, item, index, and the referenced nodes
    scope: dict[str, Any]
    #: JSON Schemas (from the node or its `agents` row) for the node's input and output
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    #: the handles of the node's outgoing edges (an a2a task needing input fails without one)
    outgoing_handles: list[str] = Field(default_factory=list)
    #: key-first lookups that fail on absent values (False: runs started before that change)
    strict_templates: bool = False
    #: nodes in `scope` that were skipped, or failed and went on: their absent fields are null
    tolerant_nodes: list[str] = Field(default_factory=list)
    #: finished rows of other nodes of the run, written with this node's first row
    carried_rows: list[TaskRecord] = Field(default_factory=list)
    #: the activity answers with an `AgentOutcome`, handing back the rows it could not write
    #: while the database was unreachable (False: runs started before that change)
    rows_may_wait: bool = False


#: The `ApplicationError.type` of an agent attempt that did nothing because the database was
#: unreachable before its work began: the workflow waits and tries again, spending none of the
#: node's attempts.
DATABASE_UNAVAILABLE = "DatabaseUnavailable"


class AgentOutcome(BaseModel):
    """What an agent activity returns when `AgentTask.rows_may_wait`: its output, and the
    rows the database could not take when they were due (the workflow writes them later).
    """

    output: Any = None
    #: the node's end row, without its outputs (they are `output`), if it was not written
    row: TaskRecord | None = None
    #: whether the rows the task carried were written
    carried_written: bool = True
    #: which attempt succeeded (1: the first), for the run's status and its node's span
    attempt: int | None = None


class ReusedQuery(BaseModel):
    """The `load_reused_outputs` argument: a page of the retried run's completed rows."""

    run_row_id: str
    tenant_id: str | None = None
    #: the last task id of the previous page ("" for the first)
    after: str = ""


class ReusedTask(BaseModel):
    """One completed node execution of the retried run, as its row recorded it."""

    task_id: str
    node_type: str | None = None
    row_id: str
    output: Any = None


class ReusedPage(BaseModel):
    """Rows in task-id order, at most about MAX_OUTPUT_BYTES of outputs."""

    tasks: list[ReusedTask] = Field(default_factory=list)
    #: where the next page starts (`ReusedQuery.after`); None: this was the last
    after: str | None = None
