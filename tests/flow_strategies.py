"""Random valid flows for the differential test (hypothesis strategies).

Flows of start / end / transform / condition / loop nodes with fan-out, joins,
conditions, nested loop bodies and every onError; node ids and keys drawn from
ordinary names and names of dict methods; templates restricted to lookups the
reference evaluator resolves without Jinja.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from flow_language.validation import problems_of

#: Ordinary names first (hypothesis shrinks towards them), then names of dict methods.
PLAIN_NAMES = ("a", "b", "x", "name", "total", "flag")
METHOD_NAMES = ("get", "items", "keys", "values", "update", "pop", "copy", "setdefault")
NAMES = PLAIN_NAMES + METHOD_NAMES
NODE_IDS = NAMES + tuple(f"n{i}" for i in range(60))
HANDLES = ("yes", "no", "maybe", "other")
END_KEYS = ("a", "b", "items", "get")  # few, so that several end nodes write the same key
FAIL = "{{ 1 // 0 }}"  # a template that fails its node: division by zero


# -- random JSON ---------------------------------------------------------------------------


def _json(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.integers(-2, 5),
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        text,
    )
    records = st.lists(st.dictionaries(st.sampled_from(NAMES), scalars, max_size=3), max_size=3)
    return st.one_of(
        st.recursive(
            scalars,
            lambda inner: st.one_of(
                st.lists(inner, max_size=3),
                st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
            ),
            max_leaves=8,
        ),
        records,  # what loops are for
    )


#: Inputs are values, never rendered: any text JSON carries (UTF-8) but NUL, which Postgres
#: JSONB cannot store.
input_values = _json(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6))
#: Literals inside config are rendered: no braces, so no template syntax.
literal_values = _json(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00{}%"), max_size=6)
)
inputs_strategy = st.dictionaries(st.sampled_from(NAMES), input_values, max_size=5)


# -- random flows ----------------------------------------------------------------------------

UNKNOWN: Any = object()  # a value the generator cannot foresee


@dataclass
class _Where:
    """What a node's templates may read: upstream outputs, and `item` inside loops."""

    readable: set[str]
    in_loop: bool
    item: Any = UNKNOWN  # what `item` will look like (a guess, for keys that exist)
    preds: tuple[str, ...] = ()  # read often: after a condition, a skipped one reads as null


def _element(shape: Any) -> Any:
    """A guess at the items of a list: its first object."""
    if isinstance(shape, list):
        return next((v for v in shape if isinstance(v, dict)), UNKNOWN)
    return UNKNOWN


class _FlowBuilder:
    """Draws a valid flow: a DAG per scope, every template reading only upstream nodes.

    Lookups mostly name keys that exist (the generator keeps a guess of each output's
    shape), so flows get past their first template.
    """

    def __init__(self, draw: st.DrawFn, inputs: dict[str, Any]) -> None:
        self.draw = draw
        self.inputs = inputs
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        self.types: dict[str, str] = {}
        self.shapes: dict[str, Any] = {}  # a guess at each node's output
        self.handles: dict[str, list[str]] = {}  # a condition's declared handles
        self.routed: set[str] = set()  # onError "route"
        self.upstream: dict[str, set[str]] = {}  # whose outputs a node may read

    # -- pieces of config ----------------------------------------------------------------------

    def path(self, where: _Where) -> tuple[str, Any]:
        """`input.k`, `nodes.<id>.output.k`, `item.k` or `index`, and a guess at its value."""
        roots = ["input"] + ["nodes"] * bool(where.readable) + ["item", "index"] * where.in_loop
        root = self.draw(st.sampled_from(roots))
        if root == "index":
            return "index", UNKNOWN
        text, shape = root, {"input": self.inputs, "item": where.item}.get(root)
        if root == "nodes":
            near = bool(where.preds) and self.draw(st.booleans())
            node_id = self.draw(st.sampled_from(sorted(where.preds if near else where.readable)))
            text, shape = f"nodes.{node_id}.output", self.shapes[node_id]
        for _ in range(3):
            known = sorted(shape) if isinstance(shape, dict) else []
            step = self.draw(st.integers(0, 4))  # 0: stop here; 1: any name (often absent)
            if step > 1 and known:
                key = self.draw(st.sampled_from(known))
            elif step == 1:
                key = self.draw(st.sampled_from(NAMES))
            else:
                break
            text += f".{key}"
            shape = shape.get(key, UNKNOWN) if isinstance(shape, dict) else UNKNOWN
        return text, shape

    def value(self, where: _Where, nested: bool = False) -> tuple[Any, Any]:
        """A config value (templates inside), and a guess at what it renders to."""
        kinds = ["path", "literal"]
        if not nested:  # now and then a value that fails its node
            kinds = ["path"] * 8 + ["literal", "dict", "list"] * 2 + ["fail"]
            kinds += ["gather"] * 3 * bool(where.preds)
        kind = self.draw(st.sampled_from(kinds))
        if kind == "gather":  # a join reading every branch (a skipped one reads as null)
            gathered = {p: "{{ nodes." + p + ".output }}" for p in where.preds}
            return gathered, {p: self.shapes[p] for p in where.preds}
        if kind == "path":
            text, shape = self.path(where)
            return "{{ " + text + " }}", shape
        if kind == "literal":
            literal = self.draw(literal_values)
            return literal, literal
        if kind == "fail":
            return FAIL, UNKNOWN
        keys = self.draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
        parts = [self.value(where, nested=True) for _ in keys]
        if kind == "dict":
            return dict(zip(keys, (v for v, _ in parts), strict=True)), dict(
                zip(keys, (s for _, s in parts), strict=True)
            )
        return [v for v, _ in parts], [s for _, s in parts]

    def when(self, where: _Where) -> Any:
        kinds = ["compare"] * 6 + ["path", "bool", "text"] * 2 + ["fail"]
        kind = self.draw(st.sampled_from(kinds))
        if kind == "compare":
            op = self.draw(st.sampled_from(["==", "!="] * 4 + ["<", ">", "<=", ">="]))
            number = self.draw(st.integers(-1, 4))
            return "{{ " + f"{self.path(where)[0]} {op} {number}" + " }}"
        if kind == "path":
            return "{{ " + self.path(where)[0] + " }}"
        if kind == "bool":
            return self.draw(st.booleans())
        if kind == "text":
            return self.draw(st.sampled_from(["yes", "no", "false", "0", "", " None "]))
        return FAIL

    def loop_config(self, where: _Where) -> tuple[dict[str, Any], Any]:
        """A loop's config, and a guess at what `item` will be in its body."""
        config: dict[str, Any]
        if self.draw(st.integers(0, 4)) == 0:
            config = {
                "while": self.when(_Where(where.readable, True, where.item)),
                "maxIterations": self.draw(st.integers(1, 3)),
            }
            return config, None  # a while loop's item is null
        lists = sorted(n for n in where.readable if isinstance(self.shapes[n], list))
        sources = ["literal"] * 2 + ["input"] + ["nodes"] * bool(lists) + ["item"] * where.in_loop
        source = self.draw(st.sampled_from(sources))
        items: Any
        shape: Any = UNKNOWN
        if source == "literal":
            parts = [self.value(where, nested=True) for _ in range(self.draw(st.integers(0, 3)))]
            items, shape = [v for v, _ in parts], [s for _, s in parts]
        elif source == "input":
            listed = sorted(k for k, v in self.inputs.items() if isinstance(v, list))
            keys = listed if listed and self.draw(st.integers(0, 4)) > 0 else list(NAMES)
            key = self.draw(st.sampled_from(keys))
            items, shape = "{{ input." + key + " }}", self.inputs.get(key)
        elif source == "nodes":
            node_id = self.draw(st.sampled_from(lists))
            items, shape = "{{ nodes." + node_id + ".output }}", self.shapes[node_id]
        else:
            text, shape = self.path(where)
            items = "{{ " + text + " }}"
        config = {"items": items}
        limit = self.draw(st.sampled_from([None, 1, 2, 3, "{{ 4 // 2 }}"]))
        if limit is not None:
            config["maxConcurrency"] = limit
        return config, _element(shape)

    # -- graph ----------------------------------------------------------------------------------

    def fresh_id(self) -> str:
        return self.draw(st.sampled_from([i for i in NODE_IDS if i not in self.types]))

    def add_node(
        self,
        node_id: str,
        node_type: str,
        parent: str | None,
        config: dict[str, Any],
        on_error: str = "fail",
    ) -> str:
        self.types[node_id] = node_type
        data: dict[str, Any] = {"label": node_id, "config": config}
        if on_error != "fail":
            data["onError"] = on_error
            if on_error == "route":
                self.routed.add(node_id)
        node: dict[str, Any] = {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}}
        if parent is not None:
            node["parentId"] = parent
        node["data"] = data
        self.nodes.append(node)
        return node_id

    def connect(self, source: str, target: str, handle: str | None) -> None:
        edge: dict[str, Any] = {"id": f"e{len(self.edges)}", "source": source, "target": target}
        if handle is not None:
            edge["sourceHandle"] = handle
        self.edges.append(edge)

    def leaving_by(self, source: str) -> st.SearchStrategy[str | None]:
        options: list[str | None] = [None, *self.handles.get(source, []) * 2]
        if source in self.routed:
            options.append("error")
        return st.sampled_from(options)

    def scope(self, parent: str | None, depth: int, outer: set[str], item: Any) -> None:
        """The nodes of the top level (parent None) or of a loop body."""
        in_loop = parent is not None
        members: list[str] = []
        if parent is None:
            members.append(self.add_node(self.fresh_id(), "start", None, {}))
            self.upstream[members[0]], self.shapes[members[0]] = set(), self.inputs
        kinds = ["transform"] * 3 + ["condition", "end"] * 2 + ["loop"] * (depth < 2) * 3
        for _ in range(self.draw(st.integers(0, 3) if in_loop else st.integers(1, 6))):
            node_type = self.draw(st.sampled_from(kinds))
            preds = self.draw(
                st.lists(st.sampled_from(members), min_size=not in_loop, max_size=3, unique=True)
                if members
                else st.just([])
            )
            readable = set(outer)
            for pred in preds:
                readable |= {pred} | self.upstream[pred]
            where = _Where(readable, in_loop, item, tuple(preds))
            node_id = self.fresh_id()
            config: dict[str, Any]
            body_item: Any = None
            if node_type == "transform":
                output, shape = self.value(where)
                config = {"output": output}
            elif node_type == "end":
                keys = self.draw(st.lists(st.sampled_from(END_KEYS), max_size=3, unique=True))
                # Its own id now and then, so end nodes writing the same key disagree.
                parts = {
                    k: (node_id, node_id) if self.draw(st.booleans()) else self.value(where)
                    for k in keys
                }
                config = {"outputs": {k: v for k, (v, _) in parts.items()}}
                shape = {k: s for k, (_, s) in parts.items()}
            elif node_type == "condition":
                handles = self.draw(st.lists(st.sampled_from(HANDLES), min_size=1, max_size=3))
                config = {"branches": [{"handle": h, "when": self.when(where)} for h in handles]}
                default = self.draw(st.sampled_from([None, *HANDLES]))
                if default is not None:
                    config["default"] = default
                shape = {"handle": UNKNOWN}
            else:
                config, body_item = self.loop_config(where)
                shape = [UNKNOWN]
            on_error = self.draw(st.sampled_from(["fail", "fail", "continue", "route"]))
            self.add_node(node_id, node_type, parent, config, on_error)
            if node_type == "condition":
                declared = [b["handle"] for b in config["branches"]] + [config.get("default")]
                self.handles[node_id] = sorted({h for h in declared if h})
            self.upstream[node_id], self.shapes[node_id] = readable, shape
            for pred in preds:
                self.connect(pred, node_id, self.draw(self.leaving_by(pred)))
            if node_type == "loop":
                self.scope(node_id, depth + 1, readable, body_item)
            members.append(node_id)
        # Validation wants an edge on every declared handle, and on `error` when routed.
        for position, member in enumerate(list(members)):
            used = {e.get("sourceHandle") for e in self.edges if e["source"] == member}
            needed = [h for h in self.handles.get(member, []) if h not in used]
            if member in self.routed and "error" not in used:
                needed.append("error")
            for handle in needed:
                target = self.draw(st.sampled_from([*members[position + 1 :], None]))
                if target is None:  # a handler reading what it handles
                    output = "{{ nodes." + member + ".output }}"
                    target = self.add_node(self.fresh_id(), "transform", parent, {"output": output})
                    self.upstream[target] = self.upstream[member] | {member}
                    self.shapes[target] = self.shapes[member]
                    members.append(target)
                self.connect(member, target, handle)


@st.composite
def flows(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid flow definition and inputs for it."""
    inputs = draw(inputs_strategy)
    builder = _FlowBuilder(draw, inputs)
    builder.scope(None, 0, set(), UNKNOWN)
    definition = {"nodes": builder.nodes, "edges": builder.edges}
    problems = problems_of(definition)
    assert not problems, f"the generator drew an invalid flow: {problems}\n{json.dumps(definition)}"
    return definition, inputs
