"""Malformed and adversarial definitions and inputs, property-based: refused with a clear
problem naming the node or field, never a crash, a hang or a half-written record.

Definitions are valid flows with one to three random mutations (a value replaced by odd
JSON, huge or deeply nested; a key dropped; an id duplicated or made strange; an edge to
nowhere). Validation alone runs on many of them; a real worker runs a sample, started as
plain `temporal workflow start` would start them.
"""

from __future__ import annotations

import asyncio
import copy
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowFailureError

from flow_language.drawing import edge, node
from flow_language.sizes import MAX_VALUE_DEPTH, value_depth
from flow_language.validation import DefinitionError, input_problems, parse_definition, problems_of
from tests.flows import FlowWorker
from tests.invariant import assert_run_tells_the_truth
from workers.json_converter import MAX_JSON_DEPTH

_ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\u0000", "\ud800", "\u2028", "{", "}", "%", "'", '"']),
    ),
    max_size=20,
)
_SPECIAL = st.sampled_from(
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ input.__init__.__globals__ }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{{ nodes.nowhere.output }}",
        "{{ (2 ** 4096) ** 4096 }}",
        "x" * 200_000,
        "é" * 50_000,
    ]
)
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _ODD_TEXT)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


_VALUE = st.one_of(
    st.recursive(
        _LEAF,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(_ODD_TEXT, inner, max_size=3)
        ),
        max_leaves=8,
    ),
    _SPECIAL,
    st.builds(_nested, st.integers(100, 600)),
)


def _base() -> dict[str, Any]:
    """A valid flow touching the node types the workflow evaluates itself, and an agent."""
    return {
        "nodes": [
            node("start", "start", inputSchema={"type": "object", "required": ["n"]}),
            node(
                "check",
                "condition",
                {"branches": [{"handle": "big", "when": "{{ input.n > 1 }}"}], "default": "small"},
            ),
            node("shape", "transform", {"output": {"n": "{{ input.n }}", "tag": "big"}}),
            node("each", "loop", {"items": "{{ [1, 2] }}", "maxConcurrency": 2}),
            {**node("inner", "transform", {"output": "{{ item }}"}), "parentId": "each"},
            node("pause", "wait", {"seconds": 0}),
            node("done", "end", {"outputs": {"n": "{{ nodes.shape.output.n }}"}}),
        ],
        "edges": [
            edge("start", "check"),
            edge("check", "shape", "big"),
            edge("check", "each", "small"),
            edge("shape", "pause"),
            edge("each", "pause"),
            edge("pause", "done"),
        ],
    }


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    flow = _base()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "drop", "id", "edge", "type", "top"]))
        nodes, edges = flow["nodes"], flow["edges"]
        if not (isinstance(nodes, list) and nodes and isinstance(edges, list)):
            break  # a top-level field was replaced: nothing left to mutate inside
        target = nodes[draw(st.integers(0, len(nodes) - 1))]
        if not isinstance(target, dict):
            continue
        if kind == "value":
            data = target.setdefault("data", {})
            where = data.setdefault("config", {}) if isinstance(data, dict) else None
            if not isinstance(where, dict):
                continue
            key = draw(st.sampled_from([*where.keys(), "extra", "output", "items"]))
            where[key] = draw(_VALUE)
        elif kind == "drop":
            key = draw(st.sampled_from(["id", "type", "data", "parentId"]))
            target.pop(key, None)
        elif kind == "id":
            target["id"] = draw(st.one_of(_ODD_TEXT, st.sampled_from(["start", "each", ""])))
        elif kind == "edge":
            edges.append({"id": draw(_ODD_TEXT), "source": draw(_ODD_TEXT), "target": "done"})
        elif kind == "type":
            target["type"] = draw(st.one_of(_ODD_TEXT, st.sampled_from(["hitl", "api", "end"])))
        else:
            flow[draw(st.sampled_from(["nodes", "edges"]))] = draw(_VALUE)
    return flow


_CI = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _names_its_culprit(problem: str) -> bool:
    # a node or edge by id (or position), a top-level field, or the flow as a whole
    return problem.startswith(
        ("node ", "nodes[", "edge ", "`nodes`", "`edges`", "the definition", "the flow")
    )


@settings(
    _CI,
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")),
    derandomize=not os.environ.get("FUZZ_EXAMPLES"),
)
@given(definition=_mutated())
def test_validation_answers_every_definition_with_problems_that_name_their_place(
    definition: dict[str, Any],
) -> None:
    problems = problems_of(copy.deepcopy(definition))
    event("refused" if problems else "accepted")
    assert all(isinstance(p, str) and p.strip() for p in problems)
    assert all(_names_its_culprit(p) for p in problems), problems
    if problems:
        with pytest.raises(DefinitionError) as refused:
            parse_definition(copy.deepcopy(definition))
        assert refused.value.problems == problems
    else:
        parse_definition(copy.deepcopy(definition))


@settings(_CI, max_examples=200)
@given(inputs=_VALUE)
def test_any_inputs_are_accepted_or_refused_naming_the_field(inputs: Any) -> None:
    problems = input_problems(parse_definition(_base()), inputs)
    event("refused" if problems else "accepted")
    assert all(p.startswith("inputs") for p in problems), problems
    if isinstance(inputs, dict) and "n" in inputs:
        assert problems == []
    else:
        assert problems


@pytest.mark.slow
@settings(_CI, max_examples=25)
@given(definition=_mutated(), inputs=st.one_of(st.just({"n": 2}), _VALUE))
async def test_a_worker_refuses_or_runs_each_raw_start_and_its_rows_say_which(
    flow_worker: FlowWorker, definition: dict[str, Any], inputs: Any
) -> None:
    argument = {"definition": definition, "inputs": inputs}
    if value_depth(argument, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        # Too deep to send at all: the client refuses it before Temporal sees it.
        with pytest.raises(ValueError, match="levels deep cannot be sent"):
            await flow_worker.start_raw(argument)
        event("refused by the client")
        return
    handle = await flow_worker.start_raw(argument)
    try:
        await asyncio.wait_for(handle.result(), 60)
        outcome = "completed"
    except WorkflowFailureError as exc:
        message = str(exc.cause)
        assert message.strip(), "a run failed without a reason"
        outcome = "failed"
    problems = problems_of(copy.deepcopy(definition))
    if not isinstance(inputs, dict):
        problems = ["inputs"]  # the argument's shape is checked first
    elif value_depth(inputs) > MAX_VALUE_DEPTH:
        problems = [f"inputs: nested more than {MAX_VALUE_DEPTH} levels deep"]  # then its depth
    elif value_depth(definition) > MAX_VALUE_DEPTH:
        problems = [f"definition: nested more than {MAX_VALUE_DEPTH} levels deep"]
    elif not problems:
        problems = input_problems(parse_definition(copy.deepcopy(definition)), inputs)
    if problems:
        # Refused before any node ran: it says why, naming the first culprit.
        assert outcome == "failed"
        assert problems[0][:60] in message, (problems[0], message)
    status = await assert_run_tells_the_truth(flow_worker.client, flow_worker.sessions, handle.id)
    assert status == outcome
    event(f"run {outcome}")
    if problems:
        assert await flow_worker.task_rows(handle.id) == {}
