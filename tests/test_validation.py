"""Each validation rule of CONTRACT section 1, reported with the node or edge that breaks it."""

from __future__ import annotations

from typing import Any

import pytest

from flow_language.drawing import edge, node
from flow_language.validation import DefinitionError, input_problems, parse_definition, problems_of


def flow(*nodes: dict[str, Any], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {"nodes": [node("start", "start"), *nodes], "edges": edges, "viewport": {"zoom": 1}}


def hitl(node_id: str, **config: Any) -> dict[str, Any]:
    """A hitl approval node: the required config plus `config`."""
    return node(node_id, "hitl", {"title": "Check", "decisionType": "approval", **config})


def test_react_flow_layout_fields_are_ignored() -> None:
    definition = flow(
        {
            **node("t", "transform", {"output": 1}),
            "measured": {"width": 1},
            "selected": True,
            "dragging": False,
            "style": {"w": 3},
            "positionAbsolute": {"x": 1},
            "className": "x",
        },
        edges=[
            {
                **edge("start", "t"),
                "type": "smoothstep",
                "animated": True,
                "markerEnd": {},
                "label": "go",
            }
        ],
    )
    assert problems_of(definition) == []
    parsed = parse_definition(definition)
    assert parsed.by_id["t"].data.config == {"output": 1}


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (
            flow(
                node("a", "transform", {"output": 1}),
                node("a", "transform", {"output": 2}),
                edges=[edge("start", "a")],
            ),
            "node 'a': duplicate node id",
        ),
        (
            flow(
                node("a", "transform", {"output": 1}),
                edges=[edge("start", "a"), edge("a", "ghost")],
            ),
            "edge 'a-ghost': target 'ghost' names no node",
        ),
        (
            flow(node("a", "frobnicate"), edges=[edge("start", "a")]),
            "node 'a': unknown node type 'frobnicate'",
        ),
        (
            flow(
                node("a", "api", {"url": "http://x", "method": "YELL"}), edges=[edge("start", "a")]
            ),
            "node 'a': config.method: 'YELL' is not one of",
        ),
        (
            flow(node("a", "api", {}), edges=[edge("start", "a")]),
            "node 'a': config: 'url' is a required property",
        ),
        (
            flow(
                node("a", "transform", {"output": 1}),
                node("b", "transform", {"output": 2}),
                edges=[edge("start", "a"), edge("a", "b"), edge("b", "a")],
            ),
            "cycle in the top level through nodes 'a', 'b'",
        ),
        (
            flow(
                node("a", "transform", {"output": 1}),
                node("island", "end"),
                edges=[edge("start", "a")],
            ),
            "node 'island': unreachable from the start node",
        ),
        (
            flow(
                node(
                    "c",
                    "condition",
                    {"branches": [{"handle": "yes", "when": "{{ true }}"}], "default": "no"},
                ),
                node("y", "end"),
                edges=[edge("start", "c"), edge("c", "y", "yes")],
            ),
            "node 'c': handle 'no' has no outgoing edge",
        ),
        (
            flow(
                node("c", "condition", {"branches": [{"handle": "yes", "when": "{{ true }}"}]}),
                node("y", "end"),
                node("m", "end"),
                edges=[edge("start", "c"), edge("c", "y", "yes"), edge("c", "m", "maybe")],
            ),
            "leaves 'c' by handle 'maybe', which is none of its branches",
        ),
        (
            flow(node("a", "transform", {"output": "{{ input.x + }}"}), edges=[edge("start", "a")]),
            "node 'a': config: template syntax error",
        ),
        (
            flow(
                node("a", "transform", {"output": "{{ nodes.b.output }}"}),
                node("b", "transform", {"output": 1}),
                edges=[edge("start", "a"), edge("start", "b")],
            ),
            "node 'a': config: refers to nodes.b, which is not upstream",
        ),
        (
            flow(
                node("a", "transform", {"output": "{{ nodes.zed.output }}"}),
                edges=[edge("start", "a")],
            ),
            "refers to nodes.zed, which does not exist",
        ),
        (
            flow(node("a", "transform", {"output": "{{ item }}"}), edges=[edge("start", "a")]),
            "'item' exists only inside a loop body",
        ),
        (
            flow(
                node("a", "transform", {"output": "{{ secrets.KEY }}"}), edges=[edge("start", "a")]
            ),
            "secrets are resolved only inside agent nodes",
        ),
        (
            flow(
                node("a", "api", {"url": "http://x"}),
                node("b", "end"),
                edges=[edge("start", "a"), edge("a", "b", "error")],
            ),
            "an edge leaves its 'error' handle but data.onError is 'fail'",
        ),
        (
            flow(
                node("a", "api", {"url": "http://x"}, onError="route"), edges=[edge("start", "a")]
            ),
            "data.onError is 'route' but no edge leaves its 'error' handle",
        ),
        (
            flow(
                node("a", "api", {"url": "http://x"}, timeoutSeconds=-1), edges=[edge("start", "a")]
            ),
            "node 'a': data.timeoutSeconds: Input should be greater than 0",
        ),
        (
            flow({**node("x", "transform", {"output": 1}), "parentId": "start"}, edges=[]),
            "parentId 'start' is a start node; only loop nodes contain other nodes",
        ),
        (
            flow(
                node("h", "hitl", {"title": "t", "decisionType": "approval"}),
                node("x", "end"),
                edges=[edge("start", "h"), edge("h", "x", "maybe")],
            ),
            "a approval task leaves by approved, expired, rejected",
        ),
        (
            flow(
                node("h", "hitl", {"title": "t", "decisionType": "choice"}),
                edges=[edge("start", "h")],
            ),
            "config.options: a choice needs options",
        ),
        (
            flow(
                node("h", "hitl", {"title": "t", "decisionType": "vote"}),
                edges=[edge("start", "h")],
            ),
            "config.decisionType: 'vote' is not one of",
        ),
        (
            flow(
                node("d", "docker", {"image": "busybox", "pullPolicy": "sometimes"}),
                edges=[edge("start", "d")],
            ),
            "node 'd': config.pullPolicy: 'sometimes' is not one of",
        ),
        (
            {"nodes": [node("a", "transform", {"output": 1})], "edges": []},
            "exactly one start node (found 0)",
        ),
        (
            flow(
                node("l", "loop", {"items": "{{ input.xs }}"}),
                {**node("inner", "transform", {"output": 1}), "parentId": "l"},
                node("after", "end"),
                edges=[edge("start", "l"), edge("inner", "after")],
            ),
            "connects nodes in different loop bodies",
        ),
        (
            flow(hitl("h", assigneeId="bob"), edges=[edge("start", "h")]),
            "node 'h': config.assigneeId: 'bob' is not a user id (UUID) or a {{ template }}",
        ),
        (
            flow(
                hitl("h", escalation=[{"afterSeconds": 60, "toUser": "alice@example.com"}]),
                edges=[edge("start", "h")],
            ),
            "node 'h': config.escalation[0].toUser: 'alice@example.com' is not a user id (UUID)",
        ),
        (
            flow(
                hitl(
                    "h", escalation=[{"afterSeconds": 60, "toRole": "lead"}, {"afterSeconds": 90}]
                ),
                edges=[edge("start", "h")],
            ),
            "node 'h': config.escalation[1]: needs toRole or toUser",
        ),
        (
            flow(
                hitl(
                    "h",
                    decisionType="form_input",
                    formSchema={"type": "object", "properties": {"n": {"type": "integr"}}},
                ),
                edges=[edge("start", "h")],
            ),
            "node 'h': config.formSchema.properties.n.type: not a valid JSON Schema: "
            "'integr' is not one of",
        ),
        (
            flow(hitl("h", priority=9), edges=[edge("start", "h")]),
            "node 'h': config.priority: 9 is greater than the maximum of 5",
        ),
        (
            flow(hitl("h", deadlineSeconds=0), edges=[edge("start", "h")]),
            "node 'h': config.deadlineSeconds: 0 is less than or equal to the minimum of 0",
        ),
        (
            flow(
                node("l", "llm", {"prompt": "x", "jsonSchema": {"required": "answer"}}),
                edges=[edge("start", "l")],
            ),
            "node 'l': config.jsonSchema.required: not a valid JSON Schema: "
            "'answer' is not of type 'array'",
        ),
        (
            flow(
                node("v", "vision", {"image": "aGk=", "modelId": "ocr-large"}),
                edges=[edge("start", "v")],
            ),
            "node 'v': config.modelId: 'ocr-large' is not a UUID",
        ),
        (
            flow(node("w", "wait", {"until": "next tuesday"}), edges=[edge("start", "w")]),
            "node 'w': config.until: 'next tuesday' is not an ISO 8601 timestamp",
        ),
        (
            flow(node("w", "wait", {"until": "2030-01-01T09:00:00"}), edges=[edge("start", "w")]),
            "node 'w': config.until: '2030-01-01T09:00:00' needs a time zone",
        ),
        (
            flow(node("w", "wait", {"seconds": -5}), edges=[edge("start", "w")]),
            "node 'w': config.seconds: -5 is less than the minimum of 0",
        ),
        (
            flow(node("w", "wait", {"seconds": "soon"}), edges=[edge("start", "w")]),
            "node 'w': config.seconds: 'soon' is not a number or a {{ template }}",
        ),
        (
            flow(
                node("a", "a2a", {"agentUrl": "http://x", "mode": "eventually"}),
                edges=[edge("start", "a")],
            ),
            "node 'a': config.mode: 'eventually' is not one of",
        ),
        (
            flow(
                node("d", "docker", {"image": "busybox", "memLimit": "lots"}),
                edges=[edge("start", "d")],
            ),
            "node 'd': config.memLimit: 'lots' is not a size like 512m or 2g",
        ),
    ],
)
def test_each_rule_names_the_culprit(definition: dict[str, Any], expected: str) -> None:
    problems = problems_of(definition)
    assert any(expected in p for p in problems), problems


def test_values_known_only_at_run_time_pass_validation() -> None:
    """A template cannot be checked before it is rendered; the run checks it then."""
    user = "7f2c1e4a-0000-4000-8000-000000000001"
    definition = flow(
        hitl(
            "h",
            assigneeId="{{ input.reviewer }}",
            escalation=[
                {"afterSeconds": 60, "toUser": user},
                {"afterSeconds": 90, "toUser": "{% if input.vip %}{{ input.boss }}{% endif %}"},
                {"afterSeconds": 120, "toRole": "lead"},
            ],
        ),
        node("w", "wait", {"until": "{{ input.at }}", "timeoutSeconds": "{{ input.t }}"}),
        node("later", "wait", {"until": "2030-01-01T09:00:00+02:00"}),
        edges=[edge("start", "h"), edge("h", "w"), edge("w", "later")],
    )
    assert problems_of(definition) == []


def test_every_problem_is_reported_at_once() -> None:
    definition = flow(
        node("a", "frobnicate"),
        node("b", "api", {}),
        node("c", "end"),
        edges=[edge("start", "b"), edge("b", "ghost")],
    )
    with pytest.raises(DefinitionError) as err:
        parse_definition(definition)
    joined = "\n".join(err.value.problems)
    for expected in (
        "unknown node type",
        "'url' is a required property",
        "names no node",
        "unreachable",
    ):
        assert expected in joined
    assert len(err.value.problems) >= 4


def test_inputs_are_checked_against_the_start_schema() -> None:
    definition = parse_definition(
        {
            "nodes": [
                node(
                    "start",
                    "start",
                    inputSchema={
                        "type": "object",
                        "required": ["order_id"],
                        "properties": {"order_id": {"type": "integer"}},
                    },
                )
            ],
            "edges": [],
        }
    )
    assert input_problems(definition, {"order_id": 3}) == []
    assert input_problems(definition, {"order_id": "3"}) == [
        "inputs.order_id: '3' is not of type 'integer'"
    ]
    assert input_problems(definition, {}) == ["inputs: 'order_id' is a required property"]


def test_a_node_whose_own_fields_are_refused_does_not_drag_its_neighbours_in() -> None:
    """One bad field is one problem: not also dangling edges, unreachable or unknown nodes."""
    definition = {
        "nodes": [
            node("start", "start"),
            node("t", "transform", {"output": 1}, timeoutSeconds=-5),
            node("u", "transform", {"output": "{{ nodes.t.output }}"}),
        ],
        "edges": [edge("start", "t"), edge("t", "u")],
    }
    assert problems_of(definition) == [
        "node 't': data.timeoutSeconds: Input should be greater than 0"
    ]


@pytest.mark.parametrize(
    "when",
    ["{{ false }}{{ false }}", "no: {{ false }}", "{{ a }} and {{ b }}", "{% if x %}y{% endif %}"],
)
def test_a_condition_that_would_render_text_is_refused(when: str) -> None:
    """Text around or between templates renders as a non-empty text, which reads as yes:
    the branch would always be taken. An outside review wrote `{{ false }}{{ false }}`.
    """
    flow = {
        "nodes": [
            node("start", "start"),
            node("c", "condition", {"branches": [{"handle": "y", "when": when}], "default": "n"}),
            node("y", "transform", {"output": 1}),
            node("n", "transform", {"output": 2}),
        ],
        "edges": [edge("start", "c"), edge("c", "y", "y"), edge("c", "n", "n")],
    }
    assert [p for p in problems_of(flow) if "branches[0].when" in p] == [
        "node 'c': config.branches[0].when: must be one `{{ ... }}` expression: text around or "
        "between templates renders as text such as 'FalseFalse', which reads as yes"
    ]
