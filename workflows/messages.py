"""Arguments and results exchanged by `FlowRun`, its activities and its callers.

One pydantic model per workflow or activity argument, so fields can be added
later with defaults without breaking histories of runs already in flight.
Payloads stay plain JSON, so any Temporal client can start a run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workflows.hitl import HitlTaskState

# Stable activity names: renaming one breaks the histories of runs in flight.
PREPARE_FLOW = "prepare_flow"
RECORD_RUN = "record_run"
AGENT_ACTIVITY_PREFIX = "agent."

#: The most a node may return: Temporal refuses payloads over 2 MB, and a node's output
#: travels in one (an activity result, a write-back, the workflow's own state).
MAX_OUTPUT_BYTES = 1_500_000
#: The most one write-back may carry (rows plus the run's outputs), under that 2 MB limit.
MAX_WRITE_BYTES = 1_800_000


NodeStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]


class NodeState(BaseModel):
    """What the interpreter knows of one top-level node (kept across continue-as-new)."""

    status: NodeStatus = "pending"
    output: Any = None
    #: the handles it left by (edges with these sourceHandles are taken)
    handles: list[str | None] = Field(default_factory=list)
    error: str | None = None
    attempts: int = 0


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
    #: Internal: set by the run itself when it continues as new.
    checkpoint: Checkpoint | None = None
    #: Internal (tests, benchmarks): continue as new past this many history events.
    history_limit: int | None = Field(default=None, ge=100)
    #: Internal: off only on servers that cannot register custom search attributes
    #: (Temporal's time-skipping test server); sub-flows inherit it.
    search_attributes: bool = True


class FlowResult(BaseModel):
    status: Literal["completed"] = "completed"
    outputs: dict[str, Any] = Field(default_factory=dict)


class PrepareInput(BaseModel):
    orchestrator_run_id: str
    request: FlowRunInput
    started_at: datetime


class PreparedFlow(BaseModel):
    """A loaded and validated definition, or the problems that stop the run."""

    run_row_id: str
    definition: dict[str, Any] = Field(default_factory=dict)
    workflow_id: str | None = None
    version: int | None = None
    tenant_id: str | None = None
    workspace_id: str | None = None
    problems: list[str] = Field(default_factory=list)
    #: why the run cannot start, in the words its row and its failure carry (None: it can)
    error: str | None = None
    #: the failure's type: InvalidFlow, InvalidInputs, UnknownReference
    error_type: str = "InvalidFlow"


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
