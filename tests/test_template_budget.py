"""A template has a budget: what it may compute fails its node within a fraction of a second.

Templates run inside workflow code (transform, condition ...: Temporal's deadlock detector
stops a workflow task after 2 s, and the task is then retried for ever) and in activities
(agent configs, on the worker's event loop). `flow_language/template_budget.py` bounds sizes,
steps and output; these tests hold the bounds to account: every kind of runaway template
is refused naming its field and limit, ordinary templates of thousands of items render as
they did, the charge depends on nothing but the template and its data (replays must fail
where the first run did), and end to end a refused template fails its node, not the
workflow task. `pytest -s` prints the seconds each refused template took.
"""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import pytest
from jinja2.utils import _PassArg
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError

from flow_language import template_budget, templates
from flow_language.drawing import edge, node
from flow_language.template_env import strict_env
from flow_language.validation import problems_of
from tests.flows import FlowWorker

#: The issue's bound: a runaway template fails its node within this (asserted generously).
WITHIN_SECONDS = 5.0

BIG = list(range(100_000))
SCOPE: dict[str, Any] = {
    "input": {
        "big": BIG,
        "text": "ab cd, http://x.io/e <b>f</b>\t" * 130_000,
        "other": "ab cd, http://x.io/e <b>f</b>\t" * 129_999 + "z",
        "records": [{"x": i, "y": "abc", "z": [1, 2]} for i in range(50_000)],
        "nested": [[i, [i]] for i in range(3_000)],
        "deep": {"a": {"b": {"c": {"d": 1}}}},
    }
}

#: Runaway templates: each would take seconds to hours, or gigabytes, without its bound.
RUNAWAY = {
    # found by an outside attack: widths, bytes, one whole expression's text
    "format widths": "{% for i in range(200) %}{{ ('{0:>999999}' * 100).format(1)|length }}"
    "{% endfor %}",
    "% widths": "{{ ('%999999s' * 100) % ((1,) * 100) }}",
    "% precisions": "{{ ('%.999999f' * 1000) % ((1.0,) * 1000) }}",
    "|format named widths": "{{ ('%(a)9999s' * 1000) | format(a=1) }}",
    "repeated bytes": "{{ ('x'.encode() * 2000000000) | length }}",
    "bytes zfill": "{{ 'x'.encode().zfill(10**8) | length }}",
    "one expression past the size": "{{ ('x' * 3999990) ~ ('y' * 3999990) }}",
    "nested loops": "{% for i in input.big %}{% for j in input.big %}{% endfor %}{% endfor %}",
    "the issue's nested ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
    ),
    "loop over a text": "{% set t = 'x' * 100000 %}{% for i in t %}{% for j in t %}"
    "{% endfor %}{% endfor %}",
    "huge string": "{{ ('x' * 10**9) | length }}",
    "huge list": "{{ ([[0] * 1000] * 100000) | length }}",
    "~ doubling": "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "~ of a big text in a loop": "{% for i in input.big %}{% set x = input.text ~ '' %}"
    "{% endfor %}",
    "comparing big texts": "{% for i in input.big %}{% if input.text == input.other %}"
    "{% endif %}{% endfor %}",
    "membership in a big list": "{% for i in input.big %}{{ -1 in input.big }}{% endfor %}",
    "sort in a loop": "{% for i in input.big %}{% set x = input.big | sort %}{% endfor %}",
    "selectattr in a loop": "{% for i in input.big %}"
    "{% set x = input.records | selectattr('x', 'equalto', 3) | list %}{% endfor %}",
    "map of a filter": "{% for i in input.big %}{% set x = input.big | map('string') | list %}"
    "{% endfor %}",
    "tojson in a loop": "{% for i in input.big %}{% set x = input.records | tojson %}{% endfor %}",
    "urlize of a big text": "{{ input.text | urlize | length }}",
    "split in a loop": "{% for i in input.big %}{% set x = input.text.split() %}{% endfor %}",
    "slices in a loop": "{% for i in input.big %}{% set x = input.text[1:] %}{% endfor %}",
    "sum of lists": "{{ input.nested | sum(start=[]) | length }}",
    "repeated format field": "{{ ('{0}' * 1000).format(input.text) | length }}",
    "str.ljust": "{{ 'x'.ljust(10**9) | length }}",
    "str.translate": "{{ input.text.translate({97: 'x' * 1000}) | length }}",
    "big integers": "{% set n = 7 ** 11000 %}{% for i in input.big %}{% set x = n // 7 %}"
    "{% endfor %}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "{% endmacro %}{{ f(40) }}",
    "recursive loop": "{% for x in [[[[]] * 40] * 40] * 40 recursive %}{{ loop(x) }}{% endfor %}"
    "{% for i in input.big %}{{ loop.cycle('a', 'b') }}{% endfor %}",
    "output": "{% for i in input.big %}{{ input.text }}{% endfor %}",
    "a block set": "{% for i in input.big %}{% set x %}{{ input.text }}{% endset %}{% endfor %}",
    "shared lists unfolding": "{% set a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] %}"
    "{% set b = [a, a, a, a, a, a, a, a, a, a] %}{% set c = [b, b, b, b, b, b, b, b, b, b] %}"
    "{% set d = [c, c, c, c, c, c, c, c, c, c] %}{% set e = [d, d, d, d, d, d, d, d, d, d] %}"
    "{% set f = [e, e, e, e, e, e, e, e, e, e] %}{% set g = [f, f, f, f, f, f, f, f, f, f] %}"
    "{{ g }}",
    "list growing in a namespace": "{% set ns = namespace(l=[]) %}{% for i in input.big %}"
    "{% set ns.l = ns.l + [i] %}{% endfor %}",
    "a method of a missing key": "{% for i in input.big %}{% for j in input.big %}"
    "{% set x = input.deep.get('a') %}{% endfor %}{% endfor %}",
}

LIMITS = (
    f"template exceeds its budget of {template_budget.MAX_STEPS:,} steps",
    f"template output exceeds {template_budget.MAX_RESULT_LENGTH:,} characters",
    "not allowed in a template",
    "RecursionError",
)


def _budget_of(template: str, scope: dict[str, Any]) -> tuple[int, str]:
    """Steps one render charged, and how it ended."""
    with strict_env.rendering() as budget:
        try:
            result = templates.render(template, scope, field="config.output")
        except templates.TemplateError as exc:
            return budget.steps, str(exc)
    return budget.steps, repr(result)


@pytest.mark.parametrize("name", list(RUNAWAY))
def test_a_runaway_template_fails_naming_its_field_and_limit(name: str) -> None:
    began = time.perf_counter()
    with pytest.raises(templates.TemplateError) as caught:
        templates.render({"output": RUNAWAY[name]}, SCOPE)
    seconds = time.perf_counter() - began
    print(f"{name:30} refused after {seconds:6.3f} s: {str(caught.value)[:90]}")
    message = str(caught.value)
    assert message.startswith("config.output: ")
    assert any(limit in message for limit in LIMITS), message
    assert seconds < WITHIN_SECONDS


ORDINARY = {
    "csv": "{% for r in input.rows %}{{ r.id }},{{ r.name }},{{ r.price }},"
    "{{ r.tags | join('|') }}\n{% endfor %}",
    "conditions": "{% for r in input.rows %}{% if r.ok and r.price > 10 %}{{ r.name | upper }}"
    "{% else %}-{% endif %}{% endfor %}",
    "select and map": "{{ input.rows | selectattr('ok') | map(attribute='name') | list }}",
    "sum": "{{ input.rows | sum(attribute='price') }}",
    "sort": "{{ (input.rows | sort(attribute='price', reverse=true) | first).id }}",
    "whole output": "{{ input.rows }}",
    "json in text": "rows={{ input.rows }}",
    "tojson": "{{ input.rows | tojson }}",
    "namespace total": "{% set ns = namespace(t=0) %}{% for r in input.rows %}"
    "{% set ns.t = ns.t + r.price %}{% endfor %}{{ ns.t }}",
    "groupby": "{% for g in input.rows | groupby('ok') %}{{ g.grouper }}={{ g.list | length }};"
    "{% endfor %}",
    "loop variables": "{% for r in input.rows %}{{ loop.index }}/{{ loop.length }}"
    "{{ loop.cycle(',', ';') }}{% endfor %}",
    "text": "{{ input.rows | map(attribute='name') | join(' ') | title | wordcount }}",
}


@pytest.mark.parametrize("rows", [1_000, 5_000])
@pytest.mark.parametrize("name", list(ORDINARY))
def test_ordinary_templates_of_thousands_of_items_render_as_without_the_budget(
    name: str, rows: int
) -> None:
    scope = {
        "input": {
            "rows": [
                {"id": i, "name": f"item {i}", "price": i * 1.5, "tags": ["a"], "ok": i % 2 == 0}
                for i in range(rows)
            ]
        }
    }
    unmetered = templates.render(ORDINARY[name], scope, metered=False)
    steps, result = _budget_of(ORDINARY[name], scope)
    assert result == repr(unmetered)
    assert steps < template_budget.MAX_STEPS


def test_the_charge_depends_only_on_the_template_and_its_data() -> None:
    """A replay must fail where the first run did: no clock, no cache, no memory address."""
    scope = {"input": {"rows": [{"a": [i, str(i)], "b": {"c": i}} for i in range(2_000)]}}
    template = (
        "{{ 'a' ~ 'b' }}{{ 1 }}{% for r in input.rows %}{{ r.a }}{{ r.b == r.b }}{% endfor %}"
        "{{ input.rows | tojson | length }}{{ [input.rows, input.rows] | string | length }}"
    )
    first = _budget_of(template, scope)
    templates._compiled_template.cache_clear()  # compiled again: constant folding not charged
    assert _budget_of(template, scope) == first
    assert _budget_of(template, scope) == first  # compiled once more: cached
    runaway = RUNAWAY["selectattr in a loop"]
    assert _budget_of(runaway, SCOPE) == _budget_of(runaway, SCOPE)


def test_runs_started_before_the_budget_render_as_they_did() -> None:
    """Without the budget (workflow.patched says the run is older), only the size bounds
    the first version had apply: what rendered then renders on replay.
    """
    template = RUNAWAY["sum of lists"]
    with pytest.raises(templates.TemplateError, match="budget of"):
        templates.render(template, SCOPE)
    assert templates.render(template, SCOPE, metered=False) == 3_000 * 2
    loop = "{% for i in range(1000) %}{% for j in input.big[:2000] %}{% endfor %}{% endfor %}ok"
    with pytest.raises(templates.TemplateError, match="budget of"):
        templates.render(loop, SCOPE)
    assert templates.render(loop, SCOPE, metered=False) == "ok"
    with pytest.raises(templates.TemplateError, match="not allowed in a template"):
        templates.render(RUNAWAY["huge string"], SCOPE, metered=False)


def test_the_templates_of_one_config_share_one_budget() -> None:
    """A node's config is bounded as a whole: two fields of 60% each are not two budgets."""
    half = "{% for i in input.big[:40000] %}{% for j in range(4) %}{% endfor %}{% endfor %}ok"
    assert templates.render(half, SCOPE) == "ok"
    config = {"first": half, "second": half}
    with pytest.raises(templates.TemplateError) as caught:
        templates.render(config, SCOPE)
    assert str(caught.value).startswith("config.second: template exceeds its budget")


def test_renders_in_threads_each_have_their_own_budget() -> None:
    """Activities render in threads (asyncio.to_thread): a runaway render next door neither
    fails nor is helped by an ordinary one.
    """
    light = "{% for i in input.big[:1000] %}{{ i }}{% endfor %}"
    alone = _budget_of(light, SCOPE)
    with ThreadPoolExecutor(max_workers=4) as pool:
        heavy = [pool.submit(_budget_of, RUNAWAY["nested loops"], SCOPE) for _ in range(2)]
        lights = [pool.submit(_budget_of, light, SCOPE) for _ in range(8)]
        assert all(f.result() == alone for f in lights)
        assert all("budget of" in f.result()[1] for f in heavy)


def test_every_filter_and_test_is_charged_and_never_run_while_compiling() -> None:
    marked = {**strict_env.filters, **strict_env.tests}
    unmarked = [
        name
        for name, function in marked.items()
        if getattr(function, "jinja_pass_arg", None) is not _PassArg.context and name != "none"
    ]
    assert unmarked == []


# -- end to end: the node fails, the workflow task does not ------------------------------------

E2E_RUNAWAY = {
    "nested loop": "{% set t = 'x' * 100000 %}{% for i in t %}{% for j in t %}{% endfor %}"
    "{% endfor %}done",
    "huge string": "{{ ('x' * 10**9) | length }}",
    "huge list": "{{ ([[0] * 1000] * 100000) | length }}",
    "~ doubling": RUNAWAY["~ doubling"],
    "format widths": RUNAWAY["format widths"],
}


def _flow(kind: str, template: str, on_error: str = "fail") -> tuple[dict[str, Any], str]:
    """A flow whose node `t` of `kind` evaluates `template`; the field it is in."""
    config: dict[str, Any]
    if kind == "transform":
        config, field = {"output": template}, "config.output"
    elif kind == "condition":
        config = {"branches": [{"handle": "yes", "when": template}], "default": "no"}
        field = "config.branches[0].when"
    else:  # the api node renders its config in the activity
        config, field = {"url": f"http://127.0.0.1:9/{template}", "method": "GET"}, "config.url"
    nodes = [node("start", "start"), node("t", kind, config, onError=on_error)]
    nodes.append(node("done", "end", {"outputs": {"t": "{{ nodes.t.output }}"}}))
    edges = [edge("start", "t"), edge("t", "done", "yes" if kind == "condition" else None)]
    if kind == "condition":
        nodes.append(node("no", "end", {"outputs": {"t": "no"}}))
        edges.append(edge("t", "no", "no"))
    return {"nodes": nodes, "edges": edges}, field


async def _workflow_task_failures(flow_worker: FlowWorker, workflow_id: str) -> list[str]:
    """The failed or timed-out workflow tasks of a run (printing its longest task, for -s)."""
    history = await flow_worker.client.get_workflow_handle(workflow_id).fetch_history()
    started, longest = None, 0.0
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started = event.event_time.ToDatetime()
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and started:
            longest = max(longest, (event.event_time.ToDatetime() - started).total_seconds())
    print(f"{workflow_id}: longest workflow task {longest:.3f} s")
    bad = {EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT}
    return [EventType.Name(e.event_type) for e in history.events if e.event_type in bad]


@pytest.mark.parametrize("kind", ["transform", "condition", "api"])
async def test_a_runaway_template_fails_its_node_not_the_workflow_task(
    flow_worker: FlowWorker, kind: str
) -> None:
    simple = {
        "nodes": [node("start", "start"), node("done", "end", {"outputs": {"n": "{{ 1 + 1 }}"}})],
        "edges": [edge("start", "done")],
    }
    began = time.monotonic()
    # A condition's `when` must be one expression (text reads as yes, so the rest are
    # refused before the run: tests/test_validation.py).
    runaway = {
        name: template
        for name, template in E2E_RUNAWAY.items()
        if kind != "condition" or templates.is_whole_expression(template)
    }
    handles = {
        name: await flow_worker.start(_flow(kind, template)[0], workflow_id=f"{kind}-{uuid4()}")
        for name, template in runaway.items()
    }
    other = await flow_worker.start(simple)

    async def failure(handle: Any) -> tuple[str, float]:
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        return str(caught.value.cause), time.monotonic() - began

    ended = await asyncio.gather(*(failure(h) for h in handles.values()))
    assert (await other.result()).outputs == {"n": 2}
    field = _flow(kind, "")[1]
    for (name, handle), (message, seconds) in zip(handles.items(), ended, strict=True):
        print(f"{kind} {name}: node failed {seconds:.2f} s after the start")
        # an agent's failure carries its type: "node 't' failed: TemplateError: config.url: ..."
        assert re.search(rf"node 't' failed: (TemplateError: )?{re.escape(field)}: ", message)
        assert any(limit in message for limit in LIMITS), (name, message)
        assert seconds < WITHIN_SECONDS, (name, seconds)
        assert await _workflow_task_failures(flow_worker, handle.id) == []
        row = (await flow_worker.task_rows(handle.id))["t"]
        assert row["status"] == "failed"
        assert re.match(rf"(TemplateError: )?{re.escape(field)}: ", row["error"]), row["error"]


@pytest.mark.parametrize("kind", ["transform", "api"])
async def test_a_runaway_template_is_a_node_failure_its_on_error_handles(
    flow_worker: FlowWorker, kind: str
) -> None:
    definition, field = _flow(kind, E2E_RUNAWAY["nested loop"], on_error="continue")
    result, workflow_id = await flow_worker.run(definition)
    error = result.outputs["t"]["error"]
    assert re.match(rf"(TemplateError: )?{re.escape(field)}: template exceeds its budget", error)
    assert await _workflow_task_failures(flow_worker, workflow_id) == []


async def test_runaway_templates_of_nodes_run_together_fail_them_within_one_workflow_task(
    flow_worker: FlowWorker,
) -> None:
    """Nodes that become ready together render in one workflow task: eight runaway
    templates there take about two budgets in all, not eight (the deadlock detector's 2 s).
    Once they are spent, any template left in that task fails too (a downstream end node
    here would): its outputs are plain values.
    """
    runaway = E2E_RUNAWAY["nested loop"]
    ids = [f"t{i}" for i in range(8)]
    definition = {
        "nodes": [
            node("start", "start"),
            *(node(i, "transform", {"output": runaway}, onError="continue") for i in ids),
            node("done", "end", {"outputs": {"finished": True}}),
        ],
        "edges": [edge("start", i) for i in ids] + [edge(i, "done") for i in ids],
    }
    began = time.monotonic()
    result, workflow_id = await flow_worker.run(definition)
    assert time.monotonic() - began < WITHIN_SECONDS
    assert result.outputs == {"finished": True}
    rows = await flow_worker.task_rows(workflow_id)
    errors = [rows[i]["error"] for i in ids]
    assert all(e.startswith("config.output: template exceeds") for e in errors), errors
    assert any("nodes run at the same moment" in e for e in errors), errors
    assert await _workflow_task_failures(flow_worker, workflow_id) == []


def test_a_flow_holding_more_template_code_than_compiles_in_time_is_refused() -> None:
    """Compiling is not counted in steps; ten dense 130 KB templates once wedged a task."""
    dense = "{% if false %}" + "x{{ k }}" * 13000 + "{% endif %}ok"
    flow = {
        "nodes": [
            node("start", "start", label="s"),
            *(
                {
                    "id": f"t{i}",
                    "type": "transform",
                    "data": {"label": "t", "config": {"output": dense}},
                }
                for i in range(10)
            ),
        ],
        "edges": [{"id": f"e{i}", "source": "start", "target": f"t{i}"} for i in range(10)],
    }
    began = time.perf_counter()
    (problem,) = problems_of(flow)
    assert time.perf_counter() - began < 1  # refused before anything is parsed
    assert problem.startswith("node 't0' (t): config.output: the flow's templates hold")
    assert f"over the {templates.MAX_TEMPLATE_CODE:,}" in problem
    ordinary = {**flow, "nodes": flow["nodes"][:2]}
    ordinary["nodes"][1]["data"]["config"]["output"] = "{{ input.x }}" * 1000
    assert problems_of({**ordinary, "edges": flow["edges"][:1]}) == []
