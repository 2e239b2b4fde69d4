"""`{{ expression }}` templates in config values (CONTRACT section 1, Templates).

Jinja2 expression syntax in the immutable sandbox: no access to Python
internals, no mutation of the scope, no I/O. A string that is exactly one
`{{ ... }}` yields the expression's value with its JSON type; any other string
renders to a string. Rendering is a pure function of the template and the
scope, so the workflow may call it and stay deterministic; and it is bounded
(template_budget): a template that would compute too much fails, at the same
step on every replay, well before Temporal's deadlock detector would stop the
workflow task.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import SecurityError
from jinja2.utils import missing

from flow_language import template_budget
from flow_language.template_env import (
    PYTHON_VALUES,
    MissingValueError,
    Tolerant,
    legacy_env,
    plain,
    strict_env,
)

#: Names a template may use (CONTRACT: input, nodes, item, index, run, secrets; and the
#: flow's own constants, `variables`, which live under that one name and so shadow none).
SCOPE_NAMES = frozenset({"input", "nodes", "item", "index", "run", "secrets", "variables"})

_KEYS_SHOWN = 12


@dataclass
class TaskSteps:
    """Steps the renders of one workflow task took so far. Nodes that become ready together
    render in one task, bounded as a whole (template_budget.MAX_TASK_STEPS).
    """

    spent: int = 0


class RenderHost(Protocol):
    """What a render needs from the workflow it runs in; activities and validation render
    without one (metered, no task budget, the process's random generator).
    """

    def metered(self) -> bool:
        """Whether steps are counted (False in runs started before they were)."""
        ...

    def task_steps(self) -> TaskSteps:
        """The counter shared by the renders of the current workflow task."""
        ...

    def random(self) -> random.Random:
        """The run's own generator, seeded in its history."""
        ...


_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class TemplateError(ValueError):
    """A template that does not parse or fails to evaluate; the message is for the flow author."""


def mark_tolerant(scope: Mapping[str, Any], node_ids: Iterable[str]) -> dict[str, Any]:
    """`scope` with `node_ids` made Tolerant again after a trip through JSON (activities)."""
    marked = dict(scope)
    nodes_ = dict(scope.get("nodes") or {})
    for node_id in node_ids:
        entry = nodes_.get(node_id)
        output = entry.get("output") if isinstance(entry, dict) else None
        nodes_[node_id] = {"output": Tolerant(output)} if isinstance(output, dict) else Tolerant()
    marked["nodes"] = nodes_
    return marked


def tolerant_nodes(scope: Mapping[str, Any]) -> list[str]:
    """The nodes of `scope` that are Tolerant (skipped, or failed and went on)."""
    return sorted(
        node_id
        for node_id, entry in (scope.get("nodes") or {}).items()
        if isinstance(entry, Tolerant)
        or (isinstance(entry, Mapping) and isinstance(entry.get("output"), Tolerant))
    )


#: Characters inside `{{ }}` / `{% %}` a flow may hold in all. Compiling costs about 12 µs a
#: character (not the literal text around them), more in Temporal's sandbox; it happens in
#: a workflow task, which the deadlock detector allows 2 s, and is not counted in steps.
MAX_TEMPLATE_CODE = 40_000
_TAGS = re.compile(r"\{\{.*?(?:\}\}|$)|\{%.*?(?:%\}|$)", re.DOTALL)


def template_code(value: Any, field: str = "config") -> Iterator[tuple[str, int]]:
    """Each templated string in `value` with how many characters of template code it holds."""
    if isinstance(value, str):
        if is_template(value):
            yield field, sum(len(m) for m in _TAGS.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from template_code(item, f"{field}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from template_code(item, f"{field}[{i}]")


def is_template(value: str) -> bool:
    """Whether a text is rendered as a template at all: plain text is taken as it is."""
    return "{{" in value or "{%" in value


def is_whole_expression(text: str) -> bool:
    """Whether `text` is exactly one `{{ expression }}`, which yields the expression's value
    (a yes or no for a condition) rather than a rendered text.
    """
    return _whole_expression(text) is not None


def _whole_expression(text: str) -> str | None:
    match = _WHOLE.match(text)
    if not match:
        return None
    expr = match.group("expr")
    return None if "{{" in expr or "}}" in expr else expr


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str, strict: bool) -> Any:
    if strict:
        return strict_env.compile_expression(expr, undefined_to_none=False)
    return legacy_env.compile_expression(expr, undefined_to_none=True)


@lru_cache(maxsize=4096)
def _compiled_template(text: str, strict: bool) -> Any:
    return (strict_env if strict else legacy_env).from_string(text)


def render(
    value: Any,
    scope: Mapping[str, Any],
    *,
    strict: bool = True,
    field: str = "config",
    metered: bool | None = None,
    host: RenderHost | None = None,
) -> Any:
    """Render every string inside `value` (dicts and lists are walked); errors name the
    field (e.g. `config.body.total`). All the templates of `value` share one budget of work
    (template_budget): a node's config is bounded as a whole.

    `metered`: whether steps are counted; by default yes, except in a run started before
    they were (see `RenderHost`).
    """
    if strict_env.current_budget() is not None or not has_template(value):
        return _render(value, scope, strict, field)
    if metered is None:
        metered = host.metered() if host is not None else True
    steps = host.task_steps() if host is not None and metered else None
    spent = steps.spent if steps is not None else 0
    limit = min(template_budget.MAX_STEPS, template_budget.MAX_TASK_STEPS - spent)
    with strict_env.rendering(metered, limit, host.random if host is not None else None) as budget:
        try:
            return _render(value, scope, strict, field)
        finally:
            if steps is not None:
                steps.spent = spent + budget.steps


def render_string(
    text: str,
    scope: Mapping[str, Any],
    *,
    strict: bool = True,
    field: str = "value",
    metered: bool | None = None,
    host: RenderHost | None = None,
) -> Any:
    """Evaluate one template string (see `render`)."""
    return render(text, scope, strict=strict, field=field, metered=metered, host=host)


def has_template(value: Any) -> bool:
    """Whether any string inside `value` is a template (else rendering returns it as it is)."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    return isinstance(value, list) and any(has_template(v) for v in value)


def _render(value: Any, scope: Mapping[str, Any], strict: bool, field: str) -> Any:
    if isinstance(value, str):
        return _render_string(value, scope, strict, field) if is_template(value) else value
    if isinstance(value, dict):
        return {k: _render(v, scope, strict, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, scope, strict, f"{field}[{i}]") for i, v in enumerate(value)]
    return value


def _render_string(text: str, scope: Mapping[str, Any], strict: bool, field: str) -> Any:
    try:
        expr = _whole_expression(text)
        with strict_env.paused():  # the compile cache must not change what is charged
            compiled = (
                _compiled_expression(expr, strict)
                if expr is not None
                else _compiled_template(text, strict)
            )
        budget = strict_env.current_budget()
        if budget is not None:
            budget.ranges = 0  # ranges are bounded per template, as they always were
        if expr is not None:
            result = compiled(**scope)
            if budget is not None and isinstance(result, str | bytes | bytearray):
                template_budget.check_text(len(result), "the rendered text")
            return _plain_within_budget(result, strict)
        return template_budget.joined_output(compiled.generate(**scope), strict_env.metering())
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{field}: template syntax error: {exc.message}") from None
    except MissingValueError as exc:
        raise TemplateError(f"{field}: {text.strip()!r}: {_missing_text(text, exc)}") from None
    except UndefinedError as exc:
        raise TemplateError(f"{field}: {text.strip()!r}: {exc.message}") from None
    except SecurityError as exc:
        if getattr(exc, "exceeds_budget", False):  # template_budget.BudgetExceeded
            raise TemplateError(f"{field}: {exc}") from None
        raise TemplateError(f"{field}: not allowed in a template: {exc}") from None
    except Exception as exc:  # evaluation errors: division by zero, bad filter argument ...
        raise TemplateError(
            f"{field}: {text.strip()!r} failed: {type(exc).__name__}: {exc}"
        ) from None


def _plain_within_budget(value: Any, strict: bool) -> Any:
    """`plain` walks the whole result in Python: a few steps an item."""
    budget = strict_env.metering()
    if budget is not None and type(value) not in PYTHON_VALUES:
        steps = template_budget.walk_steps(value, budget, template_budget.PYTHON_WALK_STEPS)
        budget.charge(steps, "the result")
    return plain(value, strict)


# -- messages for absent values -------------------------------------------------------------------


def _missing_text(text: str, exc: MissingValueError) -> str:
    """Says what was read, where, and what is there instead, in the author's terms."""
    container, key = exc.container, exc.key
    if container is missing:  # an unknown top-level name
        return f"{key!r} is not defined here"
    where = _path_to(text, key)
    shown = f"`{where}`" if where else "the value"
    if isinstance(container, Mapping):
        if where == "nodes":
            return (
                f"no output of node {key!r} here (it was skipped, failed, or is not upstream); "
                f"outputs here: {_names(container)}"
            )
        return f"{shown} has no key {key!r}; it has {_names(container)}"
    if isinstance(container, list | tuple):
        if isinstance(key, int):
            count = f"{len(container)} item" + ("" if len(container) == 1 else "s")
            return f"{shown} has no item {key}; it has {count}"
        return f"{shown} is a list of {len(container)} items, not an object with key {key!r}"
    if container is None:
        return f"{shown} is null, so it has no key {key!r}"
    kind = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(container), type(container).__name__
    )
    return f"{shown} is {kind}, not an object with key {key!r}"


def _names(mapping: Mapping[Any, Any]) -> str:
    keys = [repr(str(k)) for k in list(mapping)[:_KEYS_SHOWN]]
    if not keys:
        return "no keys (it is empty)"
    more = f" and {len(mapping) - _KEYS_SHOWN} more" if len(mapping) > _KEYS_SHOWN else ""
    return ", ".join(keys) + more


def _path_to(text: str, key: Any) -> str | None:
    """The source of the expression a missing `key` was read from, e.g. `nodes.fetch.output`."""
    try:
        tree = _parse(text)
    except TemplateSyntaxError:
        return None
    for lookup in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(lookup, nodes.Getattr) and lookup.attr == key:
            return _source(lookup.node)
        if (
            isinstance(lookup, nodes.Getitem)
            and isinstance(lookup.arg, nodes.Const)
            and lookup.arg.value == key
        ):
            return _source(lookup.node)
    return None


def _source(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        inner = _source(node.node)
        return f"{inner}.{node.attr}" if inner else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner = _source(node.node)
        return f"{inner}[{node.arg.value!r}]" if inner else None
    return None


@dataclass
class References:
    """What a template reads: top-level names, and which nodes' outputs, secrets, variables."""

    names: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    variables: set[str] = field(default_factory=set)

    def merge(self, other: References) -> None:
        """Add what another template reads (a config's templates add up to the config's)."""
        self.names |= other.names
        self.nodes |= other.nodes
        self.secrets |= other.secrets
        self.variables |= other.variables


def _parse(text: str) -> nodes.Template:
    expr = _whole_expression(text)
    source = text if expr is None else "{{" + expr + "}}"
    return strict_env.parse(source)


@lru_cache(maxsize=4096)
def _string_references(text: str) -> tuple[frozenset[str], ...]:
    try:
        tree = _parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error in {text!r}: {exc.message}") from None
    names: set[str] = set()
    buckets: dict[str, set[str]] = {"nodes": set(), "secrets": set(), "variables": set()}
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in assigned:
            names.add(name.name)
    for getattr_ in tree.find_all(nodes.Getattr):
        if isinstance(getattr_.node, nodes.Name) and getattr_.node.name in buckets:
            buckets[getattr_.node.name].add(getattr_.attr)
    for getitem in tree.find_all(nodes.Getitem):
        if (
            isinstance(getitem.node, nodes.Name)
            and getitem.node.name in buckets
            and isinstance(getitem.arg, nodes.Const)
        ):
            buckets[getitem.node.name].add(str(getitem.arg.value))
    return frozenset(names), *(frozenset(b) for b in buckets.values())


def references(value: Any) -> References:
    """Static analysis of every template in `value`; raises TemplateError on bad syntax."""
    refs = References()
    if isinstance(value, str):
        if is_template(value):
            refs.merge(References(*map(set, _string_references(value))))
    elif isinstance(value, dict):
        for v in value.values():
            refs.merge(references(v))
    elif isinstance(value, list):
        for v in value:
            refs.merge(references(v))
    return refs


def truthy(value: Any) -> bool:
    """How a condition's or a loop's `while` value reads as a yes or no: the texts
    "", "false", "0", "no", "none" and "null" (any case) are no, like a false value.
    """
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)
