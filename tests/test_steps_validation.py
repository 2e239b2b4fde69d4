"""Validation of steps/connections documents: every problem at once, each naming its step,
connection or trigger; and `variables`, which both formats may carry.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_language.drawing import edge, node
from flow_language.validation import DefinitionError, parse_definition, problems_of
from tests.test_cli import meta_agent


def test_an_invalid_document_reports_every_problem_by_step_at_once() -> None:
    document = {
        "workflowId": "broken",
        "name": "broken",
        "steps": [
            {"id": "fetch", "type": "webhook", "config": {"method": "GET"}},
            {"id": "fetch", "type": "wait", "config": {"seconds": 1}},
            {"id": "beam", "type": "teleport", "config": {}},
            {"id": "think", "type": "agent", "config": {"agentType": "oracle"}},
            {"id": "guess", "type": "agent", "config": {"prompt": "hi"}},
            {
                "id": "call",
                "type": "webhook",
                "config": {"url": "http://x.test"},
                "errorHandling": {"strategy": "again", "maxRetries": 2},
            },
            {
                "id": "nap",
                "type": "wait",
                "config": {"seconds": 1},
                "errorHandling": {"strategy": "retry", "retryDelay": 100},
            },
            {
                "id": "post",
                "type": "webhook",
                "config": {"url": "http://x.test"},
                "errorHandling": {"strategy": "retry", "maxRetries": 500, "delay": 1},
            },
            {"id": "ping", "type": "transform", "config": {"output": "{{ nodes.pong.output }}"}},
            {"id": "pong", "type": "transform", "config": {"output": "{{ variables.nope }}"}},
            {"id": "pick", "type": "condition", "config": {}},
            {"id": "each", "type": "loop", "config": {"items": [1], "body": ["ghost"]}},
        ],
        "connections": [
            {"from": "fetch", "to": "missing"},
            {"from": "ping", "to": "pong"},
            {"from": "pong", "to": "ping"},
            {"from": "call", "to": "post", "condition": {"when": "{{ true }}"}},
            {"from": "fetch", "to": "pick"},
            {"from": "pick", "to": "call"},
            {"from": "pick", "to": "nap"},
            {"from": "fetch", "to": "pick"},
        ],
        "triggers": [{"type": "schedule", "config": {}}, {"type": "cron"}],
        "variables": {"limit": 1},
    }
    problems = problems_of(document)
    expected = [
        "step 'fetch': duplicate step id (steps[0] and steps[1])",
        "connections[0] (fetch → missing): to: 'missing' names no step",
        "connections[3] (call → post): a `condition` needs a condition step as its source, "
        "and 'call' is of type 'webhook'; put a condition step between them",
        "connections[7] (fetch → pick): repeats connections[4]; write one connection (for a "
        "condition, join the two tests with `or`)",
        "step 'beam': type: unknown step type 'teleport'",
        "step 'think': config.agentType: unknown agent type 'oracle'",
        "step 'guess': config.agentType: missing; an agent step names its agent",
        "step 'call': errorHandling.strategy: 'again' is none of retry, skip, fail",
        "step 'nap': errorHandling: only steps that call out (agents other than workflow, "
        "webhooks) are retried",
        "step 'post': errorHandling.delay: unknown key",
        "step 'post': errorHandling.maxRetries: must be a whole number from 0 to 99",
        "step 'pick': a condition step needs an outgoing connection with a `condition`",
        "step 'pick': 2 connections without a `condition` (connections[5], connections[6])",
        "triggers[1]: type: 'cron' is none of schedule, webhook, event, manual",
        "triggers[1]: config: must be a JSON object",
        "step 'each': config.body: 'ghost' names no step",
        "step 'fetch': config: 'url' is a required property",
        "cycle in the top level through steps 'ping', 'pong'; repeat work with a loop step instead",
        "step 'ping': unreachable: every connection into it comes from a cycle",
        "step 'pong': config: refers to variables.nope, which the flow does not define "
        "(its variables: 'limit')",
    ]
    for wanted in expected:
        assert any(p.startswith(wanted) for p in problems), (wanted, problems)
    assert len(problems) == len(expected) + 1, problems  # and 'pong' unreachable too
    with pytest.raises(DefinitionError) as refused:
        parse_definition(document)
    assert refused.value.problems == problems
    assert str(refused.value).startswith(f"invalid flow definition ({len(problems)} problems)")


def test_a_document_with_both_formats_or_no_steps_is_refused_plainly() -> None:
    assert problems_of({"steps": [], "connections": []}) == ["`steps` must be a non-empty list"]
    both = {"steps": [{"id": "a", "type": "wait", "config": {}}], "nodes": [], "edges": []}
    assert problems_of(both) == [
        "the definition has both `steps` and `nodes`: write it either as steps and "
        "connections or as React Flow nodes and edges, not both"
    ]
    assert problems_of([1, 2]) == [
        "the definition must be a JSON object with `nodes` and `edges` (React Flow) or with "
        "`steps` and `connections`"
    ]


def test_connection_conditions_are_checked() -> None:
    def problems(condition: Any) -> list[str]:
        return problems_of(
            {
                "steps": [
                    {"id": "c", "type": "condition", "config": {}},
                    {"id": "t", "type": "transform", "config": {"output": 1}},
                ],
                "connections": [{"from": "c", "to": "t", "condition": condition}],
            }
        )

    assert problems({"when": "{{ input.ok }}"}) == []
    assert problems({"when": False}) == []
    assert problems({"expression": "input.n > 2"}) == []
    assert problems({"when": "input.ok"}) == [
        "connections[0] (c → t): condition.when: 'input.ok' is plain text, which is always "
        "true; write it as a template (`{{ ... }}`) or use `expression`"
    ]
    assert problems({"when": "{{ x }}", "expression": "y"})[0].startswith(
        "connections[0] (c → t): condition: must be an object with one of `when`"
    )
    assert problems({"expression": "input.n >"}) == [
        "step 'c': config: template syntax error in '{{ input.n > }}': unexpected 'end of print "
        "statement'"
    ]
    assert problems({"expression": "", "label": 1}) == [
        "connections[0] (c → t): condition.label: unknown key (use `when` or `expression`)",
        "connections[0] (c → t): condition.expression: must be a non-empty expression",
    ]


def test_loop_bodies_are_checked_by_step() -> None:
    document = {
        "steps": [
            {"id": "outer", "type": "loop", "config": {"items": [1], "body": ["inner", "x"]}},
            {"id": "inner", "type": "loop", "config": {"items": [1], "body": ["x", "inner"]}},
            {"id": "x", "type": "transform", "config": {"output": "{{ item }}"}},
            {"id": "late", "type": "transform", "config": {"output": "{{ item }}"}},
            {"id": "odd", "type": "loop", "config": {"items": [1], "body": "x"}},
        ],
        "connections": [{"from": "outer", "to": "x"}, {"from": "outer", "to": "late"}],
    }
    assert problems_of(document) == [
        "step 'inner': config.body: 'x' is already in the body of 'outer'; a step belongs to "
        "one loop",
        "step 'inner': config.body: a loop cannot contain itself",
        "step 'odd': config.body: must be a list of step ids",
        "connections[0]: connects steps in different loop bodies ('outer' in the top level, "
        "'x' in outer)",
        "step 'late': config: 'item' exists only inside a loop body",
    ]


def test_variables_in_a_react_flow_definition_are_known_to_validation() -> None:
    def flow(output: Any, variables: Any = None) -> dict[str, Any]:
        definition: dict[str, Any] = {
            "nodes": [node("start", "start"), node("t", "transform", {"output": output})],
            "edges": [edge("start", "t")],
        }
        if variables is not None:
            definition["variables"] = variables
        return definition

    assert problems_of(flow("{{ variables.a }} {{ variables['b c'] }}", {"a": 1, "b c": 2})) == []
    assert problems_of(flow("{{ variables.b }}", {"a": 1})) == [
        "node 't': config: refers to variables.b, which the flow does not define "
        "(its variables: 'a')"
    ]
    assert problems_of(flow("{{ variables }}")) == [
        "node 't': config: reads `variables`, but the flow defines none"
    ]
    assert problems_of(flow(1, [1])) == [
        "`variables` must be a JSON object (its values are read as variables.<name>)"
    ]
    assert problems_of(flow("{{ varz.a }}", {"a": 1})) == [
        "node 't': config: unknown name 'varz' in a template (use input, nodes, item, index, "
        "run, secrets or variables)"
    ]


def test_flows_validate_reads_a_steps_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "steps": [
                    {"id": "hook", "type": "webhook", "config": {"method": "GET"}},
                    {"id": "think", "type": "agent", "config": {"agentType": "oracle"}},
                ],
                "connections": [{"from": "hook", "to": "nowhere"}],
            }
        )
    )
    out = meta_agent("flows", "validate", str(bad))
    assert out.returncode == 1
    assert "3 problem(s)" in out.stdout
    assert "connections[0] (hook → nowhere): to: 'nowhere' names no step" in out.stdout
    assert "step 'think': config.agentType: unknown agent type 'oracle'" in out.stdout
    assert "step 'hook': config: 'url' is a required property" in out.stdout


# -- whatever the document, every problem names its place ------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_GOOD = {
    "steps": [
        {
            "id": "a",
            "type": "webhook",
            "config": {"url": "http://x.test"},
            "errorHandling": {"strategy": "retry", "maxRetries": 1, "retryDelay": 10},
        },
        {"id": "b", "type": "condition", "config": {}},
        {"id": "c", "type": "loop", "config": {"items": [1, 2], "body": ["d"]}},
        {"id": "d", "type": "agent", "config": {"agentType": "llm", "prompt": "{{ item }}"}},
        {"id": "e", "type": "parallel", "config": {}},
    ],
    "connections": [
        {"from": "a", "to": "b"},
        {"from": "b", "to": "c", "condition": {"expression": "input.go"}},
        {"from": "b", "to": "e"},
    ],
    "triggers": [{"type": "manual", "config": {}}],
    "variables": {"v": 1},
}
_PLACES = (
    "step ",
    "steps[",
    "connections[",
    "triggers[",
    "`steps`",
    "`connections`",
    "variables",
    "`variables`",
    "triggers",
    "cycle in ",
    "inputSchema",
    "workflowId",
    "name",
    "description",
    "version",
    "the definition",
)


@st.composite
def _damaged(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(_GOOD)
    for _ in range(draw(st.integers(1, 4))):
        part = draw(st.sampled_from(["steps", "connections", "triggers", "top"]))
        if part == "top":
            document[draw(st.sampled_from([*document, "name", "version"]))] = draw(_JSON)
            continue
        items = document.get(part)
        if not isinstance(items, list) or not items:
            continue
        item = items[draw(st.integers(0, len(items) - 1))]
        if isinstance(item, dict):
            key = draw(st.sampled_from([*item, "config", "errorHandling", "condition", "to"]))
            item[key] = draw(_JSON | st.sampled_from(["a", "b", "c", "d", "e", "condition"]))
    return document


@settings(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(document=_damaged())
def test_every_problem_of_a_damaged_document_names_its_place(document: dict[str, Any]) -> None:
    assert problems_of(copy.deepcopy(_GOOD)) == []
    problems = problems_of(copy.deepcopy(document))
    for problem in problems:
        assert problem.startswith(_PLACES), problem
        assert not problem.startswith(("node ", "edge ")), problem
    if not problems:
        parse_definition(copy.deepcopy(document))
        return
    with pytest.raises(DefinitionError) as refused:
        parse_definition(copy.deepcopy(document))
    assert refused.value.problems == problems


def test_a_bad_name_inputs_or_setting_does_not_hide_the_config_problems() -> None:
    step = {
        "id": "a",
        "name": 3,
        "inputs": "x",
        "type": "webhook",
        "config": {"method": "GET", "timeoutSeconds": -1},
    }
    assert problems_of({"steps": [step]}) == [
        "step 'a': name: must be a non-empty text",
        "step 'a': inputs: must be a list of texts",
        "step 'a': config.timeoutSeconds: must be a number of seconds over 0",
        "step 'a': config: 'url' is a required property",
    ]


def test_settings_problems_name_where_the_document_writes_them() -> None:
    document = {
        "inputSchema": {"type": "nope"},
        "steps": [
            {
                "id": "a",
                "name": "A",
                "type": "webhook",
                "config": {"url": "http://x.test", "inputSchema": {"type": 3}},
            }
        ],
    }
    assert problems_of(document) == [
        "inputSchema: not a valid JSON Schema: 'nope' is not valid under any of the given schemas",
        "step 'a' (A): config.inputSchema: not a valid JSON Schema: 3 is not valid under any of "
        "the given schemas",
    ]


def test_an_expression_that_closes_its_own_braces_is_refused() -> None:
    """`false }}{{ false` would become `{{ false }}{{ false }}`: text, which reads as yes."""
    steps = {
        "steps": [
            {"id": "c", "type": "condition", "config": {}},
            {"id": "a", "type": "transform", "config": {"output": 1}},
            {"id": "b", "type": "transform", "config": {"output": 2}},
        ],
        "connections": [
            {"from": "c", "to": "a", "condition": {"expression": "false }}{{ false"}},
            {"from": "c", "to": "b"},
        ],
    }
    assert problems_of(steps) == [
        "connections[0] (c → a): condition.expression: must be one expression"
    ]


def test_every_bad_field_of_error_handling_is_named() -> None:
    steps = {
        "steps": [
            {
                "id": "a",
                "type": "webhook",
                "config": {"url": "http://example.test/"},
                "errorHandling": {"strategy": "explode", "maxRetries": -1, "retryDelay": "soon"},
            }
        ],
        "connections": [],
    }
    assert problems_of(steps) == [
        "step 'a': errorHandling.strategy: 'explode' is none of retry, skip, fail",
        "step 'a': errorHandling.maxRetries: must be a whole number from 0 to 99",
        "step 'a': errorHandling.retryDelay: must be a whole number of milliseconds "
        "from 1 to 86400000",
    ]
