"""Template semantics: JSON types, data-first lookups, absent values, the sandbox.

Rendering is a pure function, so these run without Temporal; the flow tests
check the same rules through FlowRun and the agent activities.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flow_language import templates

#: Names a React Flow builder (or a person) picks that are also methods of Python dicts.
DICT_METHOD_NAMES = ["get", "items", "keys", "values", "update", "pop", "copy", "setdefault"]

FETCH = {"output": {"status": 200, "headers": {}, "json": {"total": 12, "lines": [1, 2]}}}


@pytest.mark.parametrize(
    ("template", "scope", "expected"),
    [
        ("{{ input.n * 2 }}", {"input": {"n": 21}}, 42),
        ("{{ input.xs }}", {"input": {"xs": [1, {"a": None}]}}, [1, {"a": None}]),
        ("total: {{ input.n }}", {"input": {"n": 3}}, "total: 3"),
        (
            "{{ input.xs | map(attribute='p') | sum }}",
            {"input": {"xs": [{"p": 1}, {"p": 2.5}]}},
            3.5,
        ),
        ("{{ 1 }} and {{ 2 }}", {}, "1 and 2"),
        ("{{ input.n is none }}", {"input": {"n": None}}, True),
    ],
)
def test_templates_keep_json_types_for_whole_expressions(
    template: str, scope: dict[str, Any], expected: Any
) -> None:
    assert templates.render(template, scope) == expected


@pytest.mark.parametrize("name", DICT_METHOD_NAMES)
def test_a_key_named_like_a_dict_method_reads_the_data(name: str) -> None:
    scope = {"input": {name: [1, 2, 3]}, "nodes": {name: {"output": {"json": {"total": 7}}}}}
    assert templates.render(f"{{{{ input.{name} }}}}", scope) == [1, 2, 3]
    assert templates.render(f"{{{{ input['{name}'] | length }}}}", scope) == 3
    assert templates.render(f"{{{{ nodes.{name}.output.json.total }}}}", scope) == 7
    assert templates.render(f"{{% for x in input.{name} %}}{{{{ x }}}}{{% endfor %}}", scope) == (
        "123"
    )


@given(
    key=st.sampled_from(DICT_METHOD_NAMES)
    | st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=8,
    ),
)
def test_any_key_reads_back_its_value(key: str, value: Any) -> None:
    """Whatever the key is called, `input.<key>` and `input['<key>']` give the stored value."""
    scope = {"input": {key: value}}
    assert templates.render(f"{{{{ input.{key} }}}}", scope) == value
    assert templates.render(f"{{{{ input[{key!r}] }}}}", scope) == value


@pytest.mark.parametrize(
    ("template", "says"),
    [
        (
            "{{ nodes.fetch.output.jsn.total }}",
            "`nodes.fetch.output` has no key 'jsn'; it has 'status', 'headers', 'json'",
        ),
        ("total: {{ nodes.fetch.output.json.totl }}", "has no key 'totl'; it has 'total', 'lines'"),
        ("{{ input.ordr_id }}", "`input` has no key 'ordr_id'; it has 'order_id'"),
        ("{{ nodes.fetch.output.json.lines[5] }}", "has no item 5; it has 2 items"),
        ("{{ nodes.fetch.output.json.total.value }}", "is a number, not an object with key"),
        ("{{ input.ordr_id + 1 }}", "has no key 'ordr_id'"),
        ("{% for x in input.itms %}{{ x }}{% endfor %}", "has no key 'itms'"),
        ("{{ [input.ordr_id] }}", "has no key 'ordr_id'"),
        ("{{ input.ordr_id or 3 }}", "has no key 'ordr_id'"),
        ("{{ nodes.other.output }}", "no output of node 'other' here"),
    ],
)
def test_a_reference_to_nothing_is_an_error_naming_field_expression_and_keys(
    template: str, says: str
) -> None:
    scope = {"input": {"order_id": 7}, "nodes": {"fetch": FETCH}}
    with pytest.raises(templates.TemplateError) as caught:
        templates.render({"body": {"total": template}}, scope)
    message = str(caught.value)
    assert message.startswith("config.body.total: ")
    assert template.strip() in message
    assert says in message


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ nodes.fetch.output.jsn | default('none') }}", "none"),
        ("{{ nodes.fetch.output.jsn.total | default(0) }}", 0),
        ("{{ input.missing is defined }}", False),
        ("{{ input.order_id is defined }}", True),
        ("{{ input.get('missing') }}", None),
        ("{{ input.get('missing', 5) }}", 5),
        ("{{ input.get('order_id') }}", 7),
        ("{{ input.keys() | list }}", ["order_id"]),
        ("{% if input.missing is defined %}y{% else %}n{% endif %}", "n"),
    ],
)
def test_expected_absence_is_written_explicitly_and_works(template: str, expected: Any) -> None:
    assert templates.render(template, {"input": {"order_id": 7}, "nodes": {"fetch": FETCH}}) == (
        expected
    )


def test_what_the_flow_routed_around_reads_as_null() -> None:
    """A skipped node, and fields of a node that failed and went on, are absent by design."""
    scope = {
        "nodes": {
            "skipped": templates.Tolerant(),
            "failed": {"output": templates.Tolerant({"error": "HTTP 400"})},
        }
    }
    assert templates.render("{{ nodes.skipped.output }}", scope) is None
    assert templates.render("{{ nodes.skipped.output.json.total }}", scope) is None
    assert templates.render("{{ nodes.skipped.output is defined }}", scope) is False
    assert templates.render("{{ nodes.failed.output.json }}", scope) is None
    assert templates.render("{{ nodes.failed.output.error }}", scope) == "HTTP 400"
    # ... and the marks survive a trip through JSON to an activity
    plain = {"nodes": {"skipped": {}, "failed": {"output": {"error": "HTTP 400"}}}}
    marked = templates.mark_tolerant(plain, templates.tolerant_nodes(scope))
    assert templates.render("{{ nodes.skipped.output.json }}", marked) is None
    assert templates.render("{{ nodes.failed.output.json }}", marked) is None


def test_runs_started_before_strict_lookups_keep_their_semantics() -> None:
    """Histories in flight replay with the old rules (workflow.patched picks them)."""
    assert templates.render("{{ input.nothing.here }}", {"input": {}}, strict=False) is None
    assert templates.render("{{ input['items'] }}", {"input": {"items": 1}}, strict=False) == 1


@pytest.mark.parametrize(
    "template",
    [
        "{{ input.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ input.items.__globals__ }}",
        "{{ input.xs.append(1) }}",
        "{{ input.update({'a': 1}) }}",
        "{{ input.pop('xs') }}",
    ],
)
def test_templates_cannot_reach_python_internals_or_mutate(template: str) -> None:
    """The sandbox either refuses or yields nothing; it never hands out an internal object."""
    scope: dict[str, Any] = {"input": {"xs": []}}
    try:
        result = templates.render(template, scope)
    except templates.TemplateError:
        assert scope == {"input": {"xs": []}}
        return
    assert result in (None, "")


def test_values_inside_a_longer_string_are_written_as_json() -> None:
    scope = {"input": {"n": None, "b": True, "l": [1, "a"], "d": {"k": "v"}}}
    text = "n={{ input.n }} b={{ input.b }} l={{ input.l }} d={{ input.d }}"
    assert templates.render(text, scope) == 'n=null b=true l=[1, "a"] d={"k": "v"}'


def test_an_absent_value_acts_as_null_and_says_why_when_used_otherwise() -> None:
    scope = {"nodes": {"big": templates.Tolerant()}}
    assert templates.render("{{ nodes.big.output.get('x', 4) }}", scope) is None
    assert templates.render("{{ nodes.big.output is none }}", scope) is True
    assert templates.render("{{ nodes.big.output == none }}", scope) is True
    assert templates.render("a{{ nodes.big.output }}b", scope) == "anullb"
    assert templates.render("{{ nodes.big.output.total | default(0) > 5 }}", scope) is False
    with pytest.raises(templates.TemplateError, match=r"is null here .* default"):
        templates.render("{{ nodes.big.output.total > 5 }}", scope)


def test_what_reads_as_a_list_is_written_as_json_in_text() -> None:
    scope = {"input": {"d": {"k": 1}}}
    assert (
        templates.render("r={{ range(3) }} k={{ input.d.keys() }}", scope) == 'r=[0, 1, 2] k=["k"]'
    )


@pytest.mark.parametrize(
    "expression",
    [
        "{{ 9 ** (9 ** 8) }}",
        "{% set ns = namespace(x=9**4000) %}{% for i in range(30) %}"
        "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}",
        "{{ 'a' * 10**9 }}",
        "{{ (['a' * 4000000] * 500) | join | length }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '%*d' % (10**9, 1) }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{{ '{:>{}}'.format(1, 10**9) }}",
        "{{ '%1000000000s' | format('x') }}",
        "{{ 'x' | center(1000000000) }}",
        "{{ 'x\ny' | indent(1000000000) }}",
        "{{ ('\n' * 3000000) | indent(100) }}",
        "{{ lipsum(n=1000000) | length }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
    ],
)
def test_a_template_that_would_freeze_the_worker_is_refused_before_the_work(
    expression: str,
) -> None:
    """Workflow code shares the worker's event loop: each of these took seconds to minutes
    and gigabytes before it was bounded.
    """
    with pytest.raises(templates.TemplateError, match="not allowed in a template"):
        templates.render(expression, {}, strict=True, field="config.output")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{{ 2 ** 100 }}", 2**100),
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{{ [1, 2] + [3] }}", [1, 2, 3]),
        ("{{ '%5.2f' % 3.14159 }}", " 3.14"),
        ("{{ '{}-{}'.format(1, 2) }}", "1-2"),
        ("{{ 'x' | center(5) }}", "  x  "),
        ("{{ range(3) | join(',') }}", "0,1,2"),
        ("{{ 'a,b' | replace(',', ';') }}", "a;b"),
    ],
)
def test_ordinary_arithmetic_and_text_stay_as_they_were(expression: str, expected: Any) -> None:
    assert templates.render(expression, {}, strict=True, field="f") == expected
