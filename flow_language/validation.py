"""Checks a whole definition before any node runs and reports every problem at once.

Each problem names the node or edge and the field, so the builder can point at
it. Runs inside the `prepare_flow` activity and the `meta-agent flows validate`
command, never in workflow code (it reads the JSON Schema files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError

from flow_language import config_checks
from flow_language.definition import (
    ERROR_HANDLE,
    INPUT_REQUIRED_HANDLE,
    NODE_TYPES,
    Edge,
    FlowDefinition,
    Node,
)
from flow_language.form_schema import unusable, validator_for
from flow_language.refusals import counted
from flow_language.review_rules import FIXED_HANDLES, option_values
from flow_language.steps_format import Drawing, read_drawing
from flow_language.template_checks import template_problems

#: The longest node id: task rows are keyed by it, with loop prefixes, in VARCHAR(255).
MAX_NODE_ID = 128
#: What follows a loop's id in the task ids of its iterations' nodes (ASCII digits only).
_ITERATION = re.compile(r"\[([0-9]+)\]\.")
_UNKEYABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class DefinitionError(ValueError):
    """An invalid definition; `problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(counted("invalid flow definition", problems))


@cache
def config_schema(node_type: str) -> dict[str, Any]:
    """A node type's config schema, as shipped in `flow_language/schemas/`."""
    text = resources.files("flow_language.schemas").joinpath(f"{node_type}.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _config_validator(node_type: str) -> Draft202012Validator:
    return Draft202012Validator(config_schema(node_type))


def _where(node: Node | dict[str, Any]) -> str:
    return node.named if isinstance(node, Node) else f"node {node.get('id')!r}"


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Checker:
    def __init__(self, raw: Any) -> None:
        # Either format: a steps/connections document is checked as the drawing it means.
        self.drawing = raw if isinstance(raw, Drawing) else read_drawing(raw)
        self.raw = self.drawing.definition
        self.problems: list[str] = []
        self.nodes: list[Node] = []
        #: nodes whose own fields were refused: present for the graph checks, config unread
        self.stand_ins: set[str] = set(self.drawing.refused)
        self.edges: list[Edge] = []
        self.variables: dict[str, Any] = {}

    def add(self, message: str) -> None:
        self.problems.append(message)

    # -- structure ---------------------------------------------------------------------------

    def parse(self) -> bool:
        if not isinstance(self.raw, dict):
            self.add(
                "the definition must be a JSON object with `nodes` and `edges` (React Flow) "
                "or with `steps` and `connections`"
            )
            return False
        raw_nodes = self.raw.get("nodes")
        raw_edges = self.raw.get("edges", [])
        if not isinstance(raw_nodes, list) or not raw_nodes:
            self.add("`nodes` must be a non-empty list")
            return False
        if not isinstance(raw_edges, list):
            self.add("`edges` must be a list")
            raw_edges = []
        variables = self.raw.get("variables", {})
        if isinstance(variables, dict):
            self.variables = variables
        else:
            self.add("`variables` must be a JSON object (its values are read as variables.<name>)")
        for i, raw in enumerate(raw_nodes):
            where = _where(raw) if isinstance(raw, dict) and raw.get("id") else f"nodes[{i}]"
            try:
                self.nodes.append(Node.model_validate(raw))
            except ValidationError as exc:
                for err in exc.errors():
                    self.add(f"{where}: {_path(err['loc']) or 'node'}: {err['msg']}")
                stand_in = Node.stand_in(raw)
                if stand_in is not None:
                    # Keep its id, type and place, so its edges and the nodes after it are
                    # judged as drawn, not reported as dangling or unreachable on its account.
                    self.nodes.append(stand_in)
                    self.stand_ins.add(stand_in.id)
                continue
            if len(self.nodes[-1].id) > MAX_NODE_ID:
                # Its rows are keyed by it (with loop prefixes) in a 255-character column.
                self.add(f"{where}: id: {len(self.nodes[-1].id)} characters, over {MAX_NODE_ID}")
            if _UNKEYABLE.search(self.nodes[-1].id):
                # It keys rows and Temporal ids: no control character, no lone surrogate.
                self.add(f"{where}: id: holds a control character or a lone surrogate")
        for i, raw in enumerate(raw_edges):
            try:
                self.edges.append(Edge.model_validate(raw))
            except ValidationError as exc:
                eid = raw.get("id") if isinstance(raw, dict) else None
                for err in exc.errors():
                    self.add(f"edge {eid or f'edges[{i}]'!r}: {_path(err['loc'])}: {err['msg']}")
        return True

    def check_ids_and_types(self) -> dict[str, Node]:
        by_id: dict[str, Node] = {}
        for node in self.nodes:
            if node.id in by_id:
                self.add(f"{_where(node)}: duplicate node id")
            by_id[node.id] = node
            if node.type not in NODE_TYPES:
                self.add(
                    f"{_where(node)}: unknown node type {node.type!r} "
                    f"(one of {', '.join(NODE_TYPES)})"
                )
        self.check_iteration_lookalikes()
        seen_edges: set[str] = set()
        for edge in self.edges:
            if edge.id and edge.id in seen_edges:
                self.add(f"edge {edge.id!r}: duplicate edge id")
            if edge.id:
                seen_edges.add(edge.id)
        return by_id

    def check_iteration_lookalikes(self) -> None:
        """A loop's iterations key their rows and activities `<loop>[<index>].<node>`: a node
        whose own id reads so would share an iteration's row, or wedge the run on a duplicate
        activity id. Only such ids are refused; any other text is a fine id.
        """
        loops = [n.id for n in self.nodes if n.type == "loop"]
        for node in self.nodes:
            for loop in loops:
                rest = node.id[len(loop) :] if node.id.startswith(loop) else ""
                found = _ITERATION.match(rest)
                if found:
                    self.add(
                        f"{_where(node)}: id begins like the nodes of iteration {found[1]} of "
                        f"loop {loop!r} (`{loop}[{found[1]}].`), whose rows and activities are "
                        "keyed so: rename the node"
                    )
                    break

    def check_config(self, node: Node) -> None:
        if node.type not in NODE_TYPES or node.id in self.stand_ins:
            return
        for err in sorted(_config_validator(node.type).iter_errors(node.data.config), key=str):
            field = _path(["config", *err.absolute_path])
            self.add(f"{_where(node)}: {field}: {config_checks.explain(err)}")
        for field, message in config_checks.format_problems(node.type, node.data.config):
            self.add(f"{_where(node)}: {field}: {message}")
        for field, schema in (
            ("inputSchema", node.data.inputSchema),
            ("outputSchema", node.data.outputSchema),
        ):
            if schema is None:
                continue
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                self.add(f"{_where(node)}: data.{field}: not a valid JSON Schema: {exc.message}")
                continue
            problem = unusable(schema)
            if problem:  # fetches, backtracks or recurses: refused before any value reaches it
                self.add(f"{_where(node)}: data.{field}: not a usable JSON Schema: {problem}")
        if node.type == "loop" and not isinstance(node.data.config.get("items", []), list | str):
            self.add(f"{_where(node)}: config.items: must be a list or a template")

    def check_parents_and_edges(self, by_id: dict[str, Node]) -> None:
        for node in self.nodes:
            if node.parentId is None:
                continue
            parent = by_id.get(node.parentId)
            if parent is None:
                self.add(f"{_where(node)}: parentId {node.parentId!r} names no node")
            elif parent.type != "loop":
                self.add(
                    f"{_where(node)}: parentId {node.parentId!r} is a {parent.type} node; "
                    "only loop nodes contain other nodes"
                )
            if node.type == "start":
                self.add(f"{_where(node)}: a start node cannot be inside a loop")
        starts = [n for n in self.nodes if n.type == "start" and n.parentId is None]
        if len(starts) != 1:
            self.add(f"the flow needs exactly one start node (found {len(starts)})")
        for edge in self.edges:
            name = f"edge {edge.id or f'{edge.source}->{edge.target}'!r}"
            for end, node_id in (("source", edge.source), ("target", edge.target)):
                if node_id not in by_id:
                    self.add(f"{name}: {end} {node_id!r} names no node")
            if edge.source in by_id and edge.target in by_id:
                src, dst = by_id[edge.source], by_id[edge.target]
                if src.parentId != dst.parentId:
                    self.add(
                        f"{name}: connects nodes in different loop bodies "
                        f"({edge.source!r} in {src.parentId or 'the top level'}, "
                        f"{edge.target!r} in {dst.parentId or 'the top level'})"
                    )
                if dst.type == "start":
                    self.add(f"{name}: leads into the start node")

    # -- graph ----------------------------------------------------------------------------------

    def check_cycles_and_reachability(self, definition: FlowDefinition) -> None:
        scopes: dict[str | None, list[str]] = {}
        for node in definition.nodes:
            scopes.setdefault(node.parentId, []).append(node.id)
        for scope, ids in scopes.items():
            members = set(ids)
            indegree = {i: 0 for i in ids}
            for e in definition.edges:
                if e.source in members and e.target in members:
                    indegree[e.target] += 1
            queue = [i for i in ids if indegree[i] == 0]
            seen = 0
            while queue:
                current = queue.pop()
                seen += 1
                for e in definition.outgoing.get(current, []):
                    if e.target in members:
                        indegree[e.target] -= 1
                        if indegree[e.target] == 0:
                            queue.append(e.target)
            if seen < len(ids):
                stuck = sorted(i for i, d in indegree.items() if d > 0)
                where = f"loop {scope!r}" if scope else "the top level"
                self.add(
                    f"cycle in {where} through nodes {', '.join(map(repr, stuck))}; "
                    "repeat work with a loop node instead"
                )
        if sum(1 for n in definition.nodes if n.type == "start" and n.parentId is None) != 1:
            return
        start = definition.start_node()
        reached = {start.id}
        stack = [start.id]
        while stack:
            for e in definition.outgoing.get(stack.pop(), []):
                if e.target not in reached:
                    reached.add(e.target)
                    stack.append(e.target)
        for node in definition.children(None):
            if node.id not in reached:
                self.add(f"{_where(node)}: unreachable from the start node")

    def check_handles(self, definition: FlowDefinition) -> None:
        for node in definition.nodes:
            out = definition.outgoing.get(node.id, [])
            handles = {e.sourceHandle for e in out}
            cfg = node.data.config
            if ERROR_HANDLE in handles and node.data.onError != "route":
                self.add(
                    f"{_where(node)}: an edge leaves its 'error' handle but data.onError is "
                    f"{node.data.onError!r}; set it to 'route'"
                )
            if node.data.onError == "route" and ERROR_HANDLE not in handles:
                self.add(
                    f"{_where(node)}: data.onError is 'route' but no edge leaves its 'error' handle"
                )
            if node.type == "condition" and isinstance(cfg.get("branches"), list):
                # Only handles that are text: the config's own check reports any other value.
                declared = [
                    b.get("handle")
                    for b in cfg["branches"]
                    if isinstance(b, dict) and isinstance(b.get("handle"), str)
                ]
                if cfg.get("default") and isinstance(cfg["default"], str):
                    declared.append(cfg["default"])
                for handle in declared:
                    if handle and handle not in handles:
                        self.add(f"{_where(node)}: handle {handle!r} has no outgoing edge")
                for e in out:
                    if e.sourceHandle not in (*declared, None, ERROR_HANDLE):
                        branches = ", ".join(map(str, declared))
                        self.add(
                            f"edge {e.id or e.target!r}: leaves {node.id!r} by handle "
                            f"{e.sourceHandle!r}, which is none of its branches ({branches})"
                        )
            if node.type == "hitl" and str(cfg.get("decisionType")) in FIXED_HANDLES:
                allowed = {*FIXED_HANDLES[cfg["decisionType"]], *option_values(cfg.get("options"))}
                if cfg["decisionType"] == "choice" and not cfg.get("options"):
                    self.add(f"{_where(node)}: config.options: a choice needs options")
                for e in out:
                    if e.sourceHandle not in (*allowed, None, ERROR_HANDLE):
                        self.add(
                            f"edge {e.id or e.target!r}: leaves {node.id!r} by handle "
                            f"{e.sourceHandle!r}; a {cfg['decisionType']} task leaves by "
                            f"{', '.join(sorted(allowed))}"
                        )
            if node.type == "a2a":
                for e in out:
                    if e.sourceHandle not in (None, ERROR_HANDLE, INPUT_REQUIRED_HANDLE):
                        self.add(
                            f"edge {e.id or e.target!r}: leaves {node.id!r} by handle "
                            f"{e.sourceHandle!r}; an a2a node leaves by no handle, "
                            f"'{INPUT_REQUIRED_HANDLE}' or '{ERROR_HANDLE}'"
                        )
            if node.type == "wait" and "timeout" in handles and "event" not in cfg:
                self.add(f"{_where(node)}: a 'timeout' edge needs config.event with timeoutSeconds")

    def run(self) -> FlowDefinition | None:
        unread = self.raw is None and self.drawing.steps  # its reading said why
        definition = None if unread else self.check()
        self.problems = [*self.drawing.problems, *self.drawing.reworded(self.problems)]
        return definition

    def check(self) -> FlowDefinition | None:
        if not self.parse():
            return None
        by_id = self.check_ids_and_types()
        for node in self.nodes:
            self.check_config(node)
        self.check_parents_and_edges(by_id)
        definition = FlowDefinition(
            nodes=list(by_id.values()),
            edges=[e for e in self.edges if e.source in by_id and e.target in by_id],
            variables=self.variables,
        )
        self.check_cycles_and_reachability(definition)
        self.check_handles(definition)
        self.problems.extend(template_problems(definition, skip=self.stand_ins))
        return definition


def problems_of(raw: Any) -> list[str]:
    """Every problem of a raw definition, in either format, or of a drawing already read from
    one (empty when it is valid).
    """
    checker = _Checker(raw)
    checker.run()
    return checker.problems


def parse_definition(raw: Any) -> FlowDefinition:
    """The definition (React Flow or steps/connections, raw or read as a `Drawing`), or
    DefinitionError listing every problem.
    """
    checker = _Checker(raw)
    definition = checker.run()
    if checker.problems or definition is None:
        raise DefinitionError(checker.problems)
    return definition


def input_problems(definition: FlowDefinition, inputs: Any) -> list[str]:
    """The run's inputs against the start node's inputSchema."""
    schema = definition.start_node().data.inputSchema
    if not isinstance(inputs, dict):
        return ["inputs: must be a JSON object"]
    if not schema:
        return []
    problem = unusable(schema)
    if problem:
        return [f"the start node's inputSchema is not usable: {problem}"]
    try:
        errors = sorted(validator_for(schema).iter_errors(inputs), key=str)
    except (RecursionError, ValueError, LookupError) as exc:  # refs jsonschema cannot follow
        return [f"the start node's inputSchema cannot check the inputs: {type(exc).__name__}"]
    return [
        f"inputs{'.' if err.absolute_path else ''}{_path(err.absolute_path)}: {err.message}"
        for err in errors
    ]
