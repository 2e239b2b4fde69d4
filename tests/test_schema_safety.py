"""The JSON Schemas a flow supplies (inputSchema, outputSchema, a model's jsonSchema, review
forms) are checked before any run uses them: no `$ref` is ever fetched (jsonschema would
GET `http://` and read `file://` references, from inside the engine's network, and quote
what it found), no pattern backtracks, no schema refers back to itself. Found by an outside
review: an inputSchema `$ref` read an internal token back through a webhook's 422.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flow_language.drawing import edge, node
from flow_language.steps_format import read_drawing
from flow_language.validation import input_problems, parse_definition, problems_of
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply


def _flow(start_schema: dict[str, Any] | None = None, **agent_data: Any) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start", inputSchema=start_schema or {"type": "object"}),
            node("call", "transform", {"output": 1}, **agent_data),
        ],
        "edges": [edge("start", "call")],
    }


def _in_properties(ref: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"x": {"$ref": ref}}}


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        (_in_properties("http://127.0.0.1:9/secret.json"), "cannot be resolved"),
        (_in_properties("file:///etc/passwd"), "cannot be resolved"),
        ({"$ref": "#"}, "leads back to itself"),
        (_in_properties("#/$defs/missing"), "cannot be resolved"),
        ({"type": "string", "pattern": "(a)\\1"}, "is not supported"),
    ],
    ids=["http", "file", "itself", "nowhere", "backreference"],
)
def test_a_schema_that_fetches_recurses_or_backtracks_is_refused_naming_its_node(
    schema: dict[str, Any], words: str
) -> None:
    for problems, field in (
        (problems_of(_flow(schema)), "node 'start': data.inputSchema"),
        (problems_of(_flow(outputSchema=schema)), "node 'call': data.outputSchema"),
    ):
        assert len(problems) == 1, problems
        assert problems[0].startswith(f"{field}: not a usable JSON Schema: ")
        assert words in problems[0]


async def test_a_run_refuses_a_schema_that_would_fetch_and_fetches_nothing(
    flow_worker: FlowWorker, http_peer: HttpPeer, tmp_path: Path
) -> None:
    http_peer.route("GET", "/secret.json", Reply(body={"enum": ["INTERNAL-TOKEN"]}))
    secret_file = tmp_path / "secret.json"
    secret_file.write_text('{"enum": ["FILE-SECRET"]}')
    for ref in (f"{http_peer.base}/secret.json", secret_file.as_uri()):
        run_id = await flow_worker.fail(_flow(_in_properties(ref)), {"x": "guess"})
        row = await flow_worker.run_row(run_id)
        assert row["status"] == "failed"
        assert "not a usable JSON Schema" in row["error"]
        assert "INTERNAL-TOKEN" not in row["error"]
        assert "FILE-SECRET" not in row["error"]
        assert await flow_worker.task_rows(run_id) == {}  # refused before any node
    assert http_peer.requests == []


def test_a_backtracking_pattern_checks_inputs_in_linear_time() -> None:
    """`^(a+)+$` against 40 a's and a `!` took Python's `re` minutes; RE2 answers at once
    (the test would hit its timeout otherwise).
    """
    definition = parse_definition(
        _flow({"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}})
    )
    problems = input_problems(definition, {"x": "a" * 5000 + "!"})
    assert len(problems) == 1
    assert problems[0].startswith("inputs.x: ")
    assert input_problems(definition, {"x": "a" * 5000}) == []


def _loop_flow(extra_id: str) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("l", "loop", {"items": [1, 2]}),
            {**node("b", "transform", {"output": "{{ item }}"}), "parentId": "l"},
            node(extra_id, "transform", {"output": 0}),
        ],
        "edges": [edge("start", "l"), edge("l", extra_id)],
    }


@pytest.mark.parametrize(
    ("lookalike", "index"), [("l[0].b", "0"), ("l[12].anything", "12"), ("l[3].m[0].b", "3")]
)
def test_an_id_that_reads_as_a_loop_iterations_is_refused(lookalike: str, index: str) -> None:
    assert problems_of(_loop_flow(lookalike)) == [
        f"node {lookalike!r}: id begins like the nodes of iteration {index} of loop 'l' "
        f"(`l[{index}].`), whose rows and activities are keyed so: rename the node"
    ]


@settings(max_examples=300, deadline=None)
@example("l[٣].b")  # a non-ASCII digit: no iteration is numbered so
@example("l[0].")
@example("l[].b")
@given(st.text(alphabet=st.sampled_from("l[]0123456789.b٣ x"), min_size=1, max_size=12) | st.text())
def test_any_other_id_is_a_fine_id(node_id: str) -> None:
    """Only ids that begin `<a loop's id>[<ASCII digits>].` are refused, whatever else they
    hold (reference: the task ids the interpreter writes).
    """
    head, closed, tail = node_id.partition("]")
    digits = head[2:]
    looks_like = (
        node_id.startswith("l[")
        and bool(closed)
        and tail.startswith(".")
        and bool(digits)
        and all(c in "0123456789" for c in digits)
    )
    problems = [p for p in problems_of(_loop_flow(node_id)) if "id begins like" in p]
    assert bool(problems) == looks_like, problems


def test_the_steps_format_names_the_step_of_a_lookalike_id() -> None:
    steps = {
        "steps": [
            {"id": "l", "type": "loop", "config": {"items": [1], "body": ["b"]}},
            {"id": "b", "type": "transform", "config": {"output": 1}},
            {"id": "l[0].b", "type": "transform", "config": {"output": 2}},
        ],
        "connections": [{"from": "l", "to": "l[0].b"}],
    }
    problems = problems_of(read_drawing(steps))
    assert len(problems) == 1
    assert problems[0].startswith("step 'l[0].b': id begins like the nodes of iteration 0")
