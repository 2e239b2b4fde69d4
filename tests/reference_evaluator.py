"""A reference evaluator of the flow language (README "Flows"), in plain Python.

No Temporal, no Jinja, no concurrency: `start`, `end`, `transform`, `condition` and
`loop` nodes evaluated one after the other, for the differential test
(`tests/test_differential.py`) to compare with what `FlowRun` records.

Templates are limited to what plain dict lookups can evaluate: a string that is
exactly one `{{ path }}`, `{{ path OP integer }}` (OP: == != < > <= >=) or
`{{ integer // integer }}`, where a path is `input`, `nodes.<id>.output`, `item`
or `index` followed by `.key` lookups. `a.key` is the key of a dict, whatever its
name (`input.items` is the input's "items"). What the flow routes around reads as
null: the output of a skipped node, and any field an error output `{"error": ...}`
lacks, all the way down. Anything else absent (a key a dict lacks, a key of what is
not a dict) fails the node (README "No silent null").

Where the real run's rows depend on timing, the result says so: when a node fails
and its onError is `fail`, its scope (the run, or one loop iteration) stops at
once and nodes running alongside are cancelled, so only the nodes upstream of the
failure are sure to have a row; the others are `optional` (present with the status
given here, absent, or `cancelled` for a loop cut short). Error messages are
`ErrorText`: their wording is not compared, and which failing iteration a loop
names can depend on timing.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_WHOLE = re.compile(r"^\s*\{\{\s*(?P<expr>.*?)\s*\}\}\s*$", re.DOTALL)
_PATH = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_COMPARISON = re.compile(rf"^(?P<path>{_PATH})(?:\s*(?P<op>==|!=|<=|>=|<|>)\s*(?P<num>-?\d+))?$")
_DIVISION = re.compile(r"^(?P<a>-?\d+)\s*//\s*(?P<b>-?\d+)$")
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
ERROR_HANDLE = "error"


class ErrorText(str):
    """An error message: present in the real run too, but its wording is not compared."""


class NodeError(Exception):
    """The node fails; its onError decides what that means."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.text = ErrorText(message)


class UnsupportedTemplate(ValueError):
    """A template outside the subset this evaluator knows (a bug in the generator)."""


class RoutedAround(dict[str, Any]):
    """What the flow routes around: a skipped node's entry in `nodes` (empty), or the output
    `{"error": ...}` of a node that failed and went on. Fields it lacks read as null.
    """


ABSENT = object()  # nothing there: reading it fails the node
ROUTED_AROUND = object()  # a field a RoutedAround lacks: null, and so are its fields


def evaluate(expr: str, scope: dict[str, Any]) -> Any:
    """One `{{ ... }}` expression of the supported subset."""
    if division := _DIVISION.match(expr):
        a, b = int(division["a"]), int(division["b"])
        if b == 0:
            raise NodeError(f"{expr!r}: division by zero")
        return a // b
    match = _COMPARISON.match(expr)
    if not match:
        raise UnsupportedTemplate(expr)
    root, *keys = match["path"].split(".")
    if root not in ("input", "nodes", "item", "index"):
        raise UnsupportedTemplate(expr)
    value = scope.get(root, ABSENT)
    for key in keys:
        if value is ABSENT or value is ROUTED_AROUND:
            continue
        if isinstance(value, dict) and key in value:
            value = value[key]
        else:
            value = ROUTED_AROUND if isinstance(value, RoutedAround) else ABSENT
    if value is ABSENT:
        raise NodeError(f"{match['path']}: absent")
    if value is ROUTED_AROUND:
        value = None
    if isinstance(value, RoutedAround):
        value = dict(value)  # a copy is plain data again
    if match["op"] is None:
        return value
    try:
        return _OPS[match["op"]](value, int(match["num"]))
    except TypeError as exc:  # e.g. None > 2, "a" < 3
        raise NodeError(f"{expr!r}: {exc}") from None


def render(value: Any, scope: dict[str, Any]) -> Any:
    """Every string inside `value` rendered; dicts and lists are walked."""
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    whole = _WHOLE.match(value)
    if not whole or "{{" in whole["expr"] or "}}" in whole["expr"]:
        raise UnsupportedTemplate(value)
    return evaluate(whole["expr"], scope)


def truthy(value: Any) -> bool:
    """How `condition` and `while` read a value (README: strings like "false" are false)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


@dataclass
class Row:
    """What the `task_instances` row of one node execution says."""

    status: str  # completed, failed or skipped
    output: Any = None
    loop: bool = False  # a loop node's row
    optional: bool = False  # may be absent: its scope stopped at a failure, timing decides

    def allows(self, status: str) -> bool:
        """Whether a real row's status agrees: a loop in a stopped scope may be cut short."""
        return status == self.status or (self.optional and self.loop and status == "cancelled")


@dataclass
class Outcome:
    """How the evaluator says a run should end, and the rows it should leave.

    `culprits` are the top-level nodes whose failure may be the one that failed the run.
    """

    status: str  # the run's: completed or failed
    outputs: dict[str, Any] | None
    rows: dict[str, Row]  # by task id: `node`, `loop[3].node`, `outer[0].inner[1].node`
    culprits: list[str]  # the top-level nodes whose failure may have failed the run


@dataclass
class _State:
    # pending; completed (also onError continue); failed (onError route: leaves by `error`);
    # stopped (onError fail: its scope stops, its successors never run); skipped
    status: str = "pending"
    output: Any = None
    handles: list[str | None] = field(default_factory=list)
    errored: bool = False  # it failed: its output, if any, is {"error": ...}


@dataclass
class _Scope:
    """One graph being run: the top level, or one iteration of a loop body."""

    parent: str | None
    prefix: str  # of its task ids
    local: dict[str, Any]  # item and index
    outer: dict[str, Any]  # outputs visible from enclosing scopes, as `nodes`
    states: dict[str, _State]
    stopped: list[str] = field(default_factory=list)  # nodes that failed with onError fail


class Evaluator:
    """One evaluation of a definition with its inputs, node by node; `run` it once."""

    def __init__(self, definition: dict[str, Any], inputs: dict[str, Any]) -> None:
        self.nodes: list[dict[str, Any]] = definition["nodes"]
        self.edges: list[dict[str, Any]] = definition.get("edges", [])
        self.inputs = inputs
        self.rows: dict[str, Row] = {}

    # -- the graph ---------------------------------------------------------------------------

    def children(self, parent: str | None) -> list[dict[str, Any]]:
        """The nodes directly inside `parent` (None: the top level), as one scope runs them."""
        return [n for n in self.nodes if n.get("parentId") == parent]

    def incoming(self, node_id: str) -> list[dict[str, Any]]:
        """The edges into `node_id`, whatever handle they leave their source by."""
        return [e for e in self.edges if e["target"] == node_id]

    def outgoing(self, node_id: str) -> list[dict[str, Any]]:
        """The edges out of `node_id`, the error handle's too."""
        return [e for e in self.edges if e["source"] == node_id]

    def upstream(self, node_id: str) -> set[str]:
        """The nodes a node waits for, directly or not (edges never leave a scope)."""
        found: set[str] = set()
        todo = [node_id]
        while todo:
            for e in self.incoming(todo.pop()):
                if e["source"] not in found:
                    found.add(e["source"])
                    todo.append(e["source"])
        return found

    # -- running ----------------------------------------------------------------------------

    def run(self) -> Outcome:
        """The top level run to its end: failed, naming the nodes that stopped it, or completed."""
        top = self.run_scope(None, "", {}, {})
        if top.stopped:
            return Outcome("failed", None, self.rows, top.stopped)
        return Outcome("completed", self.outputs(top), self.rows, [])

    def run_scope(
        self, parent: str | None, prefix: str, local: dict[str, Any], outer: dict[str, Any]
    ) -> _Scope:
        """Runs nodes as they become ready until none is: the README's scheduling rule."""
        members = self.children(parent)
        scope = _Scope(parent, prefix, local, outer, {n["id"]: _State() for n in members})
        progress = True
        while progress:
            progress = False
            for node in members:
                if scope.states[node["id"]].status != "pending":
                    continue
                incoming = self.incoming(node["id"])
                sources = [scope.states[e["source"]] for e in incoming]
                if any(s.status in ("pending", "stopped") for s in sources):
                    continue  # still waiting (forever, behind a stopped node)
                progress = True
                reached = [
                    e
                    for e in incoming
                    if scope.states[e["source"]].status in ("completed", "failed")
                    and e.get("sourceHandle") in scope.states[e["source"]].handles
                ]
                if incoming and not reached:
                    scope.states[node["id"]].status = "skipped"
                    self.rows[prefix + node["id"]] = Row("skipped", None, node["type"] == "loop")
                else:
                    self.run_node(node, scope)
        if scope.stopped:
            self.mark_optional(scope)
        return scope

    def mark_optional(self, scope: _Scope) -> None:
        """After a failure the scope stops: only what the failure waited for surely ran."""
        sure = set.intersection(*(self.upstream(n) for n in scope.stopped))
        if len(scope.stopped) == 1:  # the only failure is surely seen, and recorded
            sure.add(scope.stopped[0])
        for node in self.children(scope.parent):
            if node["id"] in sure:
                continue
            self.cut_short(scope.prefix + node["id"])

    def cut_short(self, task_id: str) -> None:
        """The rows of a node and of its loop iterations may be missing (or cancelled)."""
        for row_id, row in self.rows.items():
            if row_id == task_id or row_id.startswith(task_id + "["):
                row.optional = True

    def visible(self, scope: _Scope) -> dict[str, Any]:
        """`nodes` in templates: finished nodes here (a routed failure too) and outside."""
        nodes = dict(scope.outer)
        for node_id, state in scope.states.items():
            if state.status in ("completed", "failed"):
                output = RoutedAround(state.output) if state.errored else state.output
                nodes[node_id] = {"output": output}
            elif state.status == "skipped":
                nodes[node_id] = RoutedAround()
        return nodes

    def template_scope(self, scope: _Scope) -> dict[str, Any]:
        """What a template in `scope` sees: `input`, `nodes`, and in a loop body `item`, `index`."""
        return {"input": self.inputs, "nodes": self.visible(scope), **scope.local}

    def run_node(self, node: dict[str, Any], scope: _Scope) -> None:
        """Run one ready node and apply its onError: `continue`, `route` (leave by `error`), or
        `fail`, which stops its scope.
        """
        state = scope.states[node["id"]]
        task_id = scope.prefix + node["id"]
        normal = [e.get("sourceHandle") for e in self.outgoing(node["id"])]
        normal = [h for h in normal if h != ERROR_HANDLE]
        try:
            output, handles = self.execute(node, task_id, scope)
        except NodeError as exc:
            on_error = node.get("data", {}).get("onError", "fail")
            if on_error == "continue":
                state.status, state.output, state.handles = "completed", {"error": exc.text}, normal
            elif on_error == "route":
                state.status, state.output, state.handles = "failed", {"error": exc.text}, ["error"]
            else:
                state.status = "stopped"
                scope.stopped.append(node["id"])
            state.errored = True
            self.rows[task_id] = Row("failed", state.output, node["type"] == "loop")
            return
        state.status, state.output = "completed", output
        state.handles = normal if handles is None else handles
        self.rows[task_id] = Row("completed", output, node["type"] == "loop")

    def execute(
        self, node: dict[str, Any], task_id: str, scope: _Scope
    ) -> tuple[Any, list[str | None] | None]:
        """A node's output, and the handles it leaves by (None: every one but `error`)."""
        config = node.get("data", {}).get("config", {})
        kind = node["type"]
        if kind == "start":
            return self.inputs, None
        if kind == "end":
            return render(config.get("outputs", {}), self.template_scope(scope)), None
        if kind == "transform":
            return render(config.get("output"), self.template_scope(scope)), None
        if kind == "condition":
            for branch in config["branches"]:
                if truthy(render(branch["when"], self.template_scope(scope))):
                    return {"handle": branch["handle"]}, [branch["handle"], None]
            default = config.get("default")
            return {"handle": default}, [default, None]
        if kind == "loop":
            return self.loop(node, task_id, scope), None
        raise ValueError(f"node type {kind!r} is not covered by the reference evaluator")

    # -- loops ------------------------------------------------------------------------------

    def loop(self, node: dict[str, Any], task_id: str, scope: _Scope) -> list[Any]:
        """One body run per item (or while `while` holds); the list of iteration outputs."""
        config = node["data"]["config"]
        variables = self.template_scope(scope)
        if "items" in config:
            items = render(config["items"], variables)
            if not isinstance(items, list):
                raise NodeError(f"config.items gave {type(items).__name__}, not a list")
            limit = render(config.get("maxConcurrency", 1), variables)
            if not isinstance(limit, int) or limit < 1:
                raise NodeError(f"config.maxConcurrency gave {limit!r}")
            plan: list[tuple[int, Any]] = list(enumerate(items))
        else:
            limit, plan = 1, [(i, None) for i in range(config["maxIterations"])]
        results: list[Any] = []
        failed: list[int] = []
        for index, item in plan:
            if "while" in config and not truthy(
                render(config["while"], {**variables, "index": index})
            ):
                break
            iteration = self.run_scope(
                node["id"],
                f"{task_id}[{index}].",
                {**scope.local, "item": item, "index": index},
                self.visible(scope),
            )
            if iteration.stopped:
                failed.append(index)
                if limit == 1:
                    break  # one at a time: the next iteration never starts
            else:
                results.append(self.iteration_output(node["id"], iteration))
        if failed:
            if limit > 1:  # iterations alongside the failing one are cut short anywhere
                self.cut_short(task_id)  # (its own row comes later)
            which = failed[0] if limit == 1 else "?"
            raise NodeError(f"iteration {which} failed")
        return results

    def iteration_output(self, loop_id: str, iteration: _Scope) -> Any:
        """Its completed `end` nodes' outputs, else its last nodes' (one: the value itself)."""
        body = self.children(loop_id)
        states = iteration.states
        sinks = [n for n in body if n["type"] == "end" and states[n["id"]].status == "completed"]
        sinks = sinks or [n for n in body if not self.outgoing(n["id"])]
        if len(sinks) == 1:
            state = states[sinks[0]["id"]]
            return state.output if state.status == "completed" else None
        return {n["id"]: states[n["id"]].output for n in sinks}

    def outputs(self, top: _Scope) -> dict[str, Any]:
        """The merged outputs of the completed top-level `end` nodes, else the last nodes'."""
        done = [n for n in self.children(None) if top.states[n["id"]].status == "completed"]
        ends = [n for n in done if n["type"] == "end"]
        if ends:
            merged: dict[str, Any] = {}
            for end in ends:
                merged.update(top.states[end["id"]].output)
            return merged
        return {n["id"]: top.states[n["id"]].output for n in done if not self.outgoing(n["id"])}


def evaluate_flow(definition: dict[str, Any], inputs: dict[str, Any]) -> Outcome:
    """What a run of `definition` with `inputs` should end as, and what rows it should leave."""
    return Evaluator(definition, inputs).run()
