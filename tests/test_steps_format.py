"""Reading steps/connections documents into the drawing the engine runs: the mapping of each
step type, and properties over many generated step graphs.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_language.drawing import edge, node
from flow_language.steps_format import as_drawing, read_drawing
from flow_language.validation import parse_definition, problems_of
from workers.run_progress import graph_ranks

_CI = settings(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)


def drawn(document: dict[str, Any]) -> dict[str, Any]:
    drawing = read_drawing(document)
    assert drawing.problems == (), drawing.problems
    assert isinstance(drawing.definition, dict)
    return drawing.definition


def by_id(drawing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in drawing["nodes"]}


def test_a_react_flow_definition_is_read_as_it_is() -> None:
    flow = {"nodes": [node("start", "start")], "edges": [], "viewport": {"zoom": 1}}
    drawing = read_drawing(flow)
    assert drawing.definition is flow
    assert not drawing.steps
    assert drawing.problems == ()


def test_each_step_type_becomes_its_node() -> None:
    document: dict[str, Any] = {
        "workflowId": "wf-1",
        "name": "orders",
        "description": "every type",
        "version": 3,
        "steps": [
            {
                "id": "ask",
                "name": "Ask the model",
                "type": "agent",
                "config": {
                    "agentType": "llm",
                    "prompt": "hi",
                    "timeoutSeconds": 20,
                    "agentId": "a-1",
                    "outputSchema": {"type": "object"},
                },
                "inputs": ["order"],
                "outputs": ["answer"],
            },
            {
                "id": "call",
                "type": "webhook",
                "config": {"method": "POST", "url": "http://x.test/hook", "body": {"a": 1}},
            },
            {"id": "sleep", "type": "wait", "config": {"seconds": 5}},
            {"id": "fan", "type": "parallel", "config": {}},
            {"id": "each", "type": "loop", "config": {"items": "{{ input.xs }}", "body": ["one"]}},
            {"id": "one", "type": "transform", "config": {"output": "{{ item }}"}},
            {"id": "other", "type": "agent", "config": {"type": "docker", "image": "x"}},
        ],
        "connections": [
            {"from": "ask", "to": "call"},
            {"from": "call", "to": "fan"},
            {"from": "fan", "to": "sleep"},
            {"from": "fan", "to": "each"},
        ],
        "triggers": [{"type": "schedule", "config": {"cron": "0 * * * *"}}],
    }
    drawing = drawn(document)
    nodes = by_id(drawing)
    assert [n["id"] for n in drawing["nodes"]] == [
        "start",
        "ask",
        "call",
        "sleep",
        "fan",
        "each",
        "one",
        "other",
    ]
    assert nodes["ask"] == {
        "id": "ask",
        "type": "llm",
        "data": {
            "label": "Ask the model",
            "timeoutSeconds": 20,
            "agentId": "a-1",
            "outputSchema": {"type": "object"},
            "config": {"prompt": "hi"},
        },
    }
    assert nodes["call"]["type"] == "api"
    assert nodes["call"]["data"]["config"] == document["steps"][1]["config"]
    assert nodes["sleep"]["type"] == "wait"
    assert nodes["fan"] == {"id": "fan", "type": "transform", "data": {"config": {"output": None}}}
    assert nodes["each"]["data"]["config"] == {"items": "{{ input.xs }}"}
    assert nodes["one"]["parentId"] == "each"
    assert nodes["other"]["type"] == "docker"
    assert nodes["other"]["data"]["config"] == {"image": "x"}
    # the entries are the top-level steps nothing leads into
    assert [e["target"] for e in drawing["edges"] if e["source"] == "start"] == ["ask", "other"]
    assert drawing["name"] == "orders"
    assert drawing["triggers"] == document["triggers"]
    # the document itself is left as it was written
    assert document["steps"][0]["config"]["agentType"] == "llm"


def test_condition_branches_come_from_the_connections_in_order() -> None:
    document = {
        "steps": [
            {"id": "check", "type": "condition", "config": {}},
            {"id": "big", "type": "transform", "config": {"output": 1}},
            {"id": "huge", "type": "transform", "config": {"output": 2}},
            {"id": "small", "type": "transform", "config": {"output": 3}},
        ],
        "connections": [
            {"from": "check", "to": "huge", "condition": {"expression": "input.n > 100"}},
            {"from": "check", "to": "small"},
            {"from": "check", "to": "big", "condition": {"when": "{{ input.n > 10 }}"}},
        ],
    }
    drawing = drawn(document)
    assert by_id(drawing)["check"]["data"]["config"] == {
        "branches": [
            {"handle": "huge", "when": "{{ input.n > 100 }}"},
            {"handle": "big", "when": "{{ input.n > 10 }}"},
        ],
        "default": "small",
    }
    handles = {e["target"]: e.get("sourceHandle") for e in drawing["edges"]}
    assert handles == {"huge": "huge", "small": "small", "big": "big", "check": None}


def test_error_handling_becomes_retry_and_on_error() -> None:
    def data_of(error_handling: dict[str, Any], kind: str = "webhook") -> dict[str, Any]:
        config = {"url": "http://x.test"} if kind == "webhook" else {"seconds": 1}
        step = {"id": "s", "type": kind, "config": config, "errorHandling": error_handling}
        data = by_id(drawn({"steps": [step]}))["s"]["data"]
        return {k: v for k, v in data.items() if k != "config"}

    assert data_of({"strategy": "retry", "maxRetries": 4, "retryDelay": 2500}) == {
        "retry": {"maxAttempts": 5, "initialIntervalSeconds": 2.5}
    }
    assert data_of({"strategy": "retry"}) == {}  # the engine's default policy
    assert data_of({"strategy": "fail"}) == {"retry": {"maxAttempts": 1}}
    assert data_of({"strategy": "skip"}) == {"onError": "continue", "retry": {"maxAttempts": 1}}
    assert data_of({"strategy": "skip", "maxRetries": 2}) == {
        "onError": "continue",
        "retry": {"maxAttempts": 3},
    }
    assert data_of({"strategy": "skip"}, kind="wait") == {"onError": "continue"}
    assert data_of({"strategy": "fail"}, kind="wait") == {}


def test_the_start_node_takes_another_id_when_a_step_has_start() -> None:
    document = {
        "steps": [
            {"id": "start", "type": "transform", "config": {"output": 1}},
            {"id": "start_1", "type": "transform", "config": {"output": 2}},
        ],
        "connections": [{"from": "start", "to": "start_1"}],
        "inputSchema": {"type": "object", "required": ["n"]},
    }
    drawing = drawn(document)
    assert drawing["nodes"][0] == {
        "id": "start_2",
        "type": "start",
        "data": {"label": "start", "inputSchema": {"type": "object", "required": ["n"]}},
    }
    assert parse_definition(document).start_node().id == "start_2"


def test_variables_are_kept_and_parsed_in_both_formats() -> None:
    steps = {
        "steps": [{"id": "t", "type": "transform", "config": {"output": "{{ variables.x }}"}}],
        "variables": {"x": 1, "input": "not the run's input"},
    }
    flow = {
        "nodes": [node("start", "start"), node("t", "transform", {"output": "{{ variables.x }}"})],
        "edges": [edge("start", "t")],
        "variables": {"x": 1, "input": "not the run's input"},
    }
    assert (
        parse_definition(steps).variables == parse_definition(flow).variables == steps["variables"]
    )
    # a flow without variables carries none through the run's history
    plain = {"nodes": [node("start", "start")], "edges": []}
    assert "variables" not in parse_definition(plain).model_dump(exclude_defaults=True)


def test_the_same_flow_in_both_formats_parses_to_the_same_graph() -> None:
    steps = {
        "steps": [
            {
                "id": "fetch",
                "type": "webhook",
                "config": {"url": "{{ input.url }}"},
                "errorHandling": {"strategy": "retry", "maxRetries": 2, "retryDelay": 1000},
            },
            {"id": "check", "type": "condition", "config": {}},
            {"id": "yes", "type": "transform", "config": {"output": "y"}},
            {"id": "no", "type": "transform", "config": {"output": "n"}},
        ],
        "connections": [
            {"from": "fetch", "to": "check"},
            {
                "from": "check",
                "to": "yes",
                "condition": {"expression": "nodes.fetch.output.json.ok"},
            },
            {"from": "check", "to": "no"},
        ],
    }
    flow = {
        "nodes": [
            node("start", "start"),
            node(
                "fetch",
                "api",
                {"url": "{{ input.url }}"},
                retry={"maxAttempts": 3, "initialIntervalSeconds": 1.0},
            ),
            node(
                "check",
                "condition",
                {
                    "branches": [{"handle": "yes", "when": "{{ nodes.fetch.output.json.ok }}"}],
                    "default": "no",
                },
            ),
            node("yes", "transform", {"output": "y"}),
            node("no", "transform", {"output": "n"}),
        ],
        "edges": [
            edge("start", "fetch"),
            edge("fetch", "check"),
            edge("check", "yes", "yes"),
            edge("check", "no", "no"),
        ],
    }

    def graph(definition: dict[str, Any]) -> dict[str, Any]:
        dumped = parse_definition(definition).model_dump(mode="json", exclude_defaults=True)
        for n in dumped["nodes"]:
            n["data"].pop("label", None)
        dumped["edges"] = sorted(
            (e["source"], e["target"], e.get("sourceHandle")) for e in dumped["edges"]
        )
        return dumped

    assert graph(steps) == graph(flow)


def test_displays_rank_a_stored_steps_flow_as_its_drawing() -> None:
    document = {
        "steps": [
            {"id": "c", "type": "transform", "config": {"output": 1}},
            {"id": "b", "type": "transform", "config": {"output": 1}},
            {"id": "a", "type": "transform", "config": {"output": 1}},
        ],
        "connections": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
    }
    assert graph_ranks(document) == {"start": 0, "a": 1, "b": 2, "c": 3}
    assert as_drawing({"steps": "no"}) == {"steps": "no"}


# -- properties over generated step graphs ---------------------------------------------------


_SIMPLE_STEPS = [
    {"type": "webhook", "config": {"url": "http://x.test/{{ input.n }}"}},
    {"type": "agent", "config": {"agentType": "api", "url": "http://y.test"}},
    {"type": "wait", "config": {"seconds": 1}},
    {"type": "parallel", "config": {}},
    {"type": "transform", "config": {"output": {"n": "{{ input.n }}"}}},
]


@st.composite
def _step_graphs(draw: st.DrawFn) -> dict[str, Any]:
    """A DAG of simple steps: each connection goes from an earlier step to a later one, so
    chains, fan-outs and joins all occur; ids are arbitrary texts.
    """
    ids = draw(
        st.lists(
            st.text(
                st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                min_size=1,
                max_size=12,
            ),
            min_size=1,
            max_size=9,
            unique=True,
        )
    )
    kinds = [draw(st.sampled_from(_SIMPLE_STEPS)) for _ in ids]
    pairs = [(i, j) for i in range(len(ids)) for j in range(i + 1, len(ids))]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True) if pairs else st.just([]))
    order = draw(st.permutations(list(range(len(ids)))))  # steps listed in any order
    return {
        "steps": [{"id": ids[k], **copy.deepcopy(kinds[k])} for k in order],
        "connections": [{"from": ids[i], "to": ids[j]} for i, j in chosen],
    }


@_CI
@given(document=_step_graphs())
def test_generated_step_graphs_read_to_nodes_named_by_steps_and_edges_like_connections(
    document: dict[str, Any],
) -> None:
    before = copy.deepcopy(document)
    drawing = read_drawing(document)
    assert document == before  # reading changes nothing it is given
    assert read_drawing(copy.deepcopy(document)) == drawing  # and is a function of the JSON
    assert problems_of(document) == []
    step_ids = [s["id"] for s in document["steps"]]
    graph = drawing.definition
    start, *rest = graph["nodes"]
    assert start["type"] == "start"
    assert [n["id"] for n in rest] == step_ids
    own = [e for e in graph["edges"] if e["source"] != start["id"]]
    assert [(e["source"], e["target"]) for e in own] == [
        (c["from"], c["to"]) for c in document["connections"]
    ]
    led_into = {c["to"] for c in document["connections"]}
    entries = [e["target"] for e in graph["edges"] if e["source"] == start["id"]]
    assert entries == [i for i in step_ids if i not in led_into]
    definition = parse_definition(document)
    assert {n.id for n in definition.nodes} == {start["id"], *step_ids}


@_CI
@given(document=_step_graphs(), data=st.data())
def test_conditions_on_generated_graphs_branch_by_their_targets(
    document: dict[str, Any], data: st.DataObject
) -> None:
    """Any step with outgoing connections made a condition: each connection but the first
    gets a test, the first stays the default; the branches name their targets in order.
    """
    sources = sorted({c["from"] for c in document["connections"]})
    if not sources:
        return
    chosen = data.draw(st.sampled_from(sources))
    step = next(s for s in document["steps"] if s["id"] == chosen)
    step.update(type="condition", config={})
    out = [c for c in document["connections"] if c["from"] == chosen]
    for i, c in enumerate(out[1:]):
        c["condition"] = {"expression": f"input.n == {i}"}
    if len(out) == 1:
        out[0]["condition"] = {"when": True}
    assert problems_of(document) == []
    config = parse_definition(document).by_id[chosen].data.config
    tested = out[1:] if len(out) > 1 else out
    assert [b["handle"] for b in config["branches"]] == [c["to"] for c in tested]
    assert config.get("default") == (out[0]["to"] if len(out) > 1 else None)
