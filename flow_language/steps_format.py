"""The platform's second definition format: `steps` and `connections` (its MongoDB document).

A definition in this format is read into the same React Flow drawing the builder saves
(`nodes`/`edges`), which the rest of the engine validates and runs; so both formats have
one meaning, one validation and one interpreter. The reading is a pure function of the
JSON (no I/O, no clock, no randomness, dicts and lists walked in their given order), so
any caller gets the same drawing from the same document. Problems of the format itself
are reported here, naming the step id, connection index or trigger index; the drawing's
own checks (schemas, cycles, templates) then word theirs in steps, not nodes (`reworded`).
The mapping of each step type is in `steps_mapping`; docs/flows.md describes both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flow_language.steps_mapping import (
    STEP_TYPES,
    Connection,
    StepReader,
    connection_condition,
)

TRIGGER_TYPES = ("schedule", "webhook", "event", "manual")
#: The synthesised entry's id, unless a step already has it (then `start_1`, `start_2` ...).
START_ID = "start"

_REWORDS = (
    (re.compile(r"^node "), "step "),
    # an agent's or webhook's own settings are written in its config
    (
        re.compile(r"^(step .*?): data\.(agentId|timeoutSeconds|inputSchema|outputSchema)\b"),
        r"\1: config.\2",
    ),
    (re.compile(r"^edge '(connections\[\d+\])'"), r"\1"),
    (
        re.compile(r": connects nodes in different loop bodies"),
        ": connects steps in different loop bodies",
    ),
    (re.compile(r"^cycle in (.*) through nodes "), r"cycle in \1 through steps "),
    (re.compile(r"repeat work with a loop node instead$"), "repeat work with a loop step instead"),
    (
        re.compile(r": unreachable from the start node$"),
        ": unreachable: every connection into it comes from a cycle",
    ),
)


@dataclass(frozen=True)
class Drawing:
    """A definition as the engine reads it: the React Flow form, with what its reading found.

    For a React Flow definition, `definition` is the input itself and nothing else is set.
    """

    #: the React Flow form (None: the document could not be read as either format)
    definition: Any
    #: problems of the steps format itself, each naming its step, connection or trigger
    problems: tuple[str, ...] = ()
    #: read from steps/connections: the drawing's own problems are worded in steps
    steps: bool = False
    #: steps placed in the graph (so connections to them hold) whose config was refused
    refused: frozenset[str] = field(default_factory=frozenset)
    #: the synthesised start node's id: its problems are the document's `inputSchema`'s
    start: str | None = None

    def reworded(self, problems: Iterable[str]) -> list[str]:
        """`problems` of the drawing in the words of its format (unchanged for React Flow)."""
        if not self.steps:
            return list(problems)
        out = []
        for problem in problems:
            problem = problem.replace(f"node {self.start!r}: data.inputSchema", "inputSchema", 1)
            for pattern, words in _REWORDS:
                problem = pattern.sub(words, problem)
            out.append(problem)
        return out


def is_steps(raw: Any) -> bool:
    """Whether `raw` is written in steps/connections: it has `steps` (a drawing has `nodes`)."""
    return isinstance(raw, dict) and "steps" in raw


def read_drawing(raw: Any) -> Drawing:
    """The drawing `raw` means, in either format; a React Flow definition passes unchanged."""
    if not is_steps(raw):
        return Drawing(raw)
    if "nodes" in raw or "edges" in raw:
        given = "`nodes`" if "nodes" in raw else "`edges`"
        return Drawing(
            None,
            (
                f"the definition has both `steps` and {given}: write it either as steps and "
                "connections or as React Flow nodes and edges, not both",
            ),
            steps=True,
        )
    if not isinstance(raw["steps"], list) or not raw["steps"]:
        return Drawing(None, ("`steps` must be a non-empty list",), steps=True)
    return _Reader(raw).read()


def as_drawing(raw: Any) -> Any:
    """The React Flow form of `raw` as far as it can be read (for displays of stored flows)."""
    drawing = read_drawing(raw)
    return raw if drawing.definition is None else drawing.definition


class _Reader:
    """Reads one steps document; `read` gives its drawing and every problem found."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def read(self) -> Drawing:
        steps = StepReader(self.raw["steps"], self.problems)
        connections = self._connections(steps)
        nodes = steps.nodes(connections)
        edges: list[dict[str, Any]] = [c.edge(steps) for c in connections]
        start = START_ID
        suffix = 0
        while start in steps.by_id:
            suffix += 1
            start = f"{START_ID}_{suffix}"
        led_into = {c.target for c in connections}
        start_data: dict[str, Any] = {"label": "start"}
        schema = self.raw.get("inputSchema")
        if isinstance(schema, dict):
            start_data["inputSchema"] = schema
        elif schema is not None:
            self.problems.append("inputSchema: must be a JSON Schema object")
        entries = [n["id"] for n in nodes if n.get("parentId") is None and n["id"] not in led_into]
        edges += [{"id": f"{start}->{e}", "source": start, "target": e} for e in entries]
        drawing: dict[str, Any] = {
            "nodes": [{"id": start, "type": "start", "data": start_data}, *nodes],
            "edges": edges,
        }
        self._document_fields(drawing)
        return Drawing(
            drawing, tuple(self.problems), steps=True, refused=frozenset(steps.refused), start=start
        )

    def _connections(self, steps: StepReader) -> list[Connection]:
        raw = self.raw.get("connections", [])
        if not isinstance(raw, list):
            self.problems.append("`connections` must be a list")
            return []
        found: list[Connection] = []
        seen: dict[tuple[str, str], int] = {}
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                self.problems.append(f"connections[{i}]: must be an object with `from` and `to`")
                continue
            ends = [item.get("from"), item.get("to")]
            bad = [k for k, v in zip(("from", "to"), ends, strict=True) if not _text(v)]
            for key in bad:
                self.problems.append(f"connections[{i}]: {key}: must name a step (a text)")
            if bad:
                continue
            source, target = str(ends[0]), str(ends[1])
            where = f"connections[{i}] ({source} → {target})"
            missing = [
                (k, v) for k, v in (("from", source), ("to", target)) if v not in steps.by_id
            ]
            for key, value in missing:
                self.problems.append(f"{where}: {key}: {value!r} names no step")
            if missing:
                continue
            if (source, target) in seen:
                self.problems.append(
                    f"{where}: repeats connections[{seen[source, target]}]; write one connection "
                    "(for a condition, join the two tests with `or`)"
                )
                continue
            seen[source, target] = i
            when, broken = connection_condition(item.get("condition"), where, self.problems)
            kind = steps.by_id[source].get("type")
            if item.get("condition") is not None and kind != "condition":
                self.problems.append(
                    f"{where}: a `condition` needs a condition step as its source, and "
                    f"{source!r} is of type {kind!r}; put a condition step between them"
                )
                when, broken = None, False
            found.append(Connection(i, source, target, when, broken))
        return found

    def _document_fields(self, drawing: dict[str, Any]) -> None:
        """The document's other fields: checked, and kept where they mean something."""
        for key in ("workflowId", "name", "description"):
            if key in self.raw and not isinstance(self.raw[key], str):
                self.problems.append(f"{key}: must be a text")
        version = self.raw.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            self.problems.append("version: must be an integer")
        if isinstance(self.raw.get("name"), str):
            drawing["name"] = self.raw["name"]
        variables = self.raw.get("variables", {})
        if isinstance(variables, dict):
            if variables:
                drawing["variables"] = variables
        else:
            self.problems.append("variables: must be a JSON object")
        triggers = self.raw.get("triggers", [])
        if not isinstance(triggers, list):
            self.problems.append("triggers: must be a list")
            return
        for i, trigger in enumerate(triggers):
            if not isinstance(trigger, dict):
                self.problems.append(f"triggers[{i}]: must be an object with `type` and `config`")
                continue
            if trigger.get("type") not in TRIGGER_TYPES:
                self.problems.append(
                    f"triggers[{i}]: type: {trigger.get('type')!r} is none of "
                    f"{', '.join(TRIGGER_TYPES)}"
                )
            if not isinstance(trigger.get("config"), dict):
                self.problems.append(f"triggers[{i}]: config: must be a JSON object")
        drawing["triggers"] = triggers


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


__all__ = ["START_ID", "STEP_TYPES", "TRIGGER_TYPES", "Drawing", "as_drawing", "read_drawing"]
