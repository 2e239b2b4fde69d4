"""The stored React Flow drawing, reduced to what carries meaning (CONTRACT section 1).

React Flow adds layout fields (position, measured, style, selected, viewport,
edge type/markerEnd ...); they are accepted and dropped here, so the rest of
the interpreter sees only ids, types, parents, data and edge handles.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AGENT_TYPES = ("docker", "api", "a2a", "llm", "vision", "audio", "sensor", "workflow")
CONTROL_TYPES = ("condition", "hitl", "loop", "wait", "transform")
NODE_TYPES = ("start", "end", *AGENT_TYPES, *CONTROL_TYPES)

#: Agent types whose work is an activity of the same name prefix (`agent.api` ...).
ACTIVITY_AGENT_TYPES = ("docker", "api", "a2a", "llm", "vision", "audio", "sensor")
#: Agents that take the run's input when their config has no `input` (a container's stdin).
INPUT_BY_DEFAULT_TYPES = ("docker",)

ERROR_HANDLE = "error"
#: the handle an a2a node leaves by when its remote task needs input
INPUT_REQUIRED_HANDLE = "input_required"
#: the remote task states (A2A spelling) that send an a2a node out by that handle
A2A_NEEDS_INPUT_STATES = ("input-required", "auth-required")


class RetrySpec(BaseModel):
    """How an agent node's activity is retried; unset fields keep the defaults of
    `workflows.nodes.agent.retry_policy`. Unknown keys are refused, so a misspelt one is not
    silently a default.
    """

    model_config = ConfigDict(extra="forbid")

    maxAttempts: int | None = Field(default=None, ge=1, le=100)
    initialIntervalSeconds: float | None = Field(default=None, gt=0)
    backoffCoefficient: float | None = Field(default=None, ge=1)
    maxIntervalSeconds: float | None = Field(default=None, gt=0)
    nonRetryableErrors: list[str] = Field(default_factory=list)


class NodeData(BaseModel):
    """What a node carries besides its place in the drawing: label, agent, limits, error handling
    and its type's config.
    """

    # The builder may keep its own keys in data (icons, colours ...): allowed, ignored.
    model_config = ConfigDict(extra="allow")

    label: str | None = None
    agentId: str | None = None
    timeoutSeconds: float | None = Field(default=None, gt=0)
    retry: RetrySpec | None = None
    onError: Literal["fail", "continue", "route"] = "fail"
    config: dict[str, Any] = Field(default_factory=dict)
    #: JSON Schema of the run's inputs (start) or of the node's input (agents: config.input)
    inputSchema: dict[str, Any] | None = None
    #: JSON Schema an agent node's output must satisfy
    outputSchema: dict[str, Any] | None = None


class Node(BaseModel):
    """One node of the drawing: id, type, the loop it sits in (`parentId`) and its data."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    type: str
    parentId: str | None = None
    data: NodeData = Field(default_factory=NodeData)

    @property
    def label(self) -> str:
        """The builder's label, or the id when the node has none."""
        return self.data.label or self.id

    @property
    def named(self) -> str:
        """How messages name it: `node 'id'`, with its label when that says more."""
        label = f" ({self.data.label})" if self.data.label and self.data.label != self.id else ""
        return f"node {self.id!r}{label}"

    @classmethod
    def stand_in(cls, raw: Any) -> Node | None:
        """Only the id, type and parent of a raw node whose other fields were refused."""
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            return None
        if not isinstance(raw.get("type"), str):
            return None
        parent = raw.get("parentId")
        try:
            return cls(
                id=raw["id"], type=raw["type"], parentId=parent if isinstance(parent, str) else None
            )
        except ValueError:  # an id pydantic refuses as text (a lone surrogate)
            return None


class Edge(BaseModel):
    """One connection of the drawing; `sourceHandle` picks the branch it belongs to (a condition's
    case, `error` ...).
    """

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    source: str
    target: str
    sourceHandle: str | None = None
    targetHandle: str | None = None


class FlowDefinition(BaseModel):
    """A validated definition; build it with `flow_language.validation.parse_definition`."""

    model_config = ConfigDict(extra="ignore")

    nodes: list[Node]
    edges: list[Edge] = Field(default_factory=list)
    #: constants of the flow, read in templates as `variables.<name>` (never rendered)
    variables: dict[str, Any] = Field(default_factory=dict)

    @cached_property
    def by_id(self) -> dict[str, Node]:
        """The nodes by id."""
        return {n.id: n for n in self.nodes}

    @cached_property
    def outgoing(self) -> dict[str, list[Edge]]:
        """Each node's outgoing edges, in drawing order (an empty list for a node with none)."""
        out: dict[str, list[Edge]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            out.setdefault(e.source, []).append(e)
        return out

    @cached_property
    def incoming(self) -> dict[str, list[Edge]]:
        """Each node's incoming edges, in drawing order (an empty list for a node with none)."""
        inc: dict[str, list[Edge]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            inc.setdefault(e.target, []).append(e)
        return inc

    def out_handles(self, node_id: str) -> list[str | None]:
        """The sourceHandles of the node's outgoing edges, in drawing order."""
        return [e.sourceHandle for e in self.outgoing.get(node_id, [])]

    def children(self, parent: str | None) -> list[Node]:
        """Nodes directly inside `parent` (a loop), or the top level for None; in drawing order."""
        return [n for n in self.nodes if n.parentId == parent]

    def start_node(self) -> Node:
        """The top-level start node; validation has made sure there is exactly one."""
        return next(n for n in self.nodes if n.type == "start" and n.parentId is None)
