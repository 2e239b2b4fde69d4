"""`{{ expression }}` templates in config values (CONTRACT section 1, Templates).

Jinja2 expression syntax in the immutable sandbox: no access to Python
internals, no mutation of the scope, no I/O. A string that is exactly one
`{{ ... }}` yields the expression's value with its JSON type; any other string
renders to a string. Rendering is a pure function of the template and the
scope, so the workflow may call it and stay deterministic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import TemplateRuntimeError, UndefinedError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import missing

from workflows import template_budget

#: Names a template may use (CONTRACT: input, nodes, item, index, run, secrets).
SCOPE_NAMES = frozenset({"input", "nodes", "item", "index", "run", "secrets"})

#: Read-only mapping methods a template may call when the mapping has no key of that name.
_MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})
_KEYS_SHOWN = 12

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class TemplateError(ValueError):
    """A template that does not parse or fails to evaluate; the message is for the flow author."""


class MissingValueError(UndefinedError):
    """A template read something that is not there; carries what was read, for the message."""

    def __init__(self, message: str, *, container: Any, key: Any) -> None:
        super().__init__(message)
        self.container = container
        self.key = key


class _Missing(ChainableUndefined):
    """What a lookup of an absent key gives: chains on (`a.b.c` stays missing) so that
    `| default(...)` and `is defined` work, but using it in any other way is an error."""

    __slots__ = ()
    __iter__ = __str__ = __len__ = Undefined._fail_with_undefined_error
    __eq__ = __ne__ = __bool__ = __hash__ = Undefined._fail_with_undefined_error
    __contains__ = Undefined._fail_with_undefined_error

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[TemplateRuntimeError] = UndefinedError,
    ) -> None:
        if exc is UndefinedError:  # an absent value (an unsafe attribute keeps SecurityError)
            exc = partial(MissingValueError, container=obj, key=name)  # type: ignore[assignment]
        super().__init__(hint, obj, name, exc)


class _MissingMethod(_Missing):
    """A method reached as `x.get` where `x` has no key `get` (or `xs.count` of a list):
    calling it works (`x.get('k')`), but as a value it is a missing key, not a method."""

    __slots__ = ("_method",)

    def __init__(self, method: Any, *, obj: Any, name: str) -> None:
        super().__init__(obj=obj, name=name)
        self._method = method

    def __getattr__(self, name: str) -> Any:
        if name in ("unsafe_callable", "alters_data"):  # asked by the sandbox before a call
            raise AttributeError(name)
        return super().__getattr__(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)


def _as_method(value: Any, obj: Any, name: str) -> Any:
    if not isinstance(value, Undefined) and callable(value) and hasattr(value, "__self__"):
        return _MissingMethod(value, obj=obj, name=name)
    return value


class Tolerant(dict[str, Any]):
    """A value the flow's own routing may leave without fields: the `{"error": ...}` output of
    a node that failed and went on (onError continue/route), or a node a condition skipped
    (empty). Downstream nodes were drawn to go on without it, so a field it lacks reads as
    null all the way down (`nodes.tickets.output.json`), where elsewhere it is a mistake.
    """


class _Absent(ChainableUndefined):
    """A field of a `Tolerant` value: null as a value and in text, null all the way down
    (calls included: `.get('k', 1)` of it is null too); anything else done with it is an error
    that says why it is null."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> _Absent:  # type: ignore[override]
        return self

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, _Absent)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(None)

    @property
    def _undefined_message(self) -> str:
        return (
            f"{self._undefined_name!r} is null here (its node was skipped, or failed and went "
            "on); give it a value with `| default(...)`"
        )


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


class _DataFirstEnvironment(ImmutableSandboxedEnvironment):
    """`a.b` reads the key `b` of a mapping before any attribute of the same name, so data
    keyed `items`, `get` or `keys` is read as data; a mapping never falls back to attributes
    for `a['b']`."""

    # Workflow code shares the worker's one event loop: see template_budget.
    intercepted_binops = frozenset(["**", "*", "+", "%"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        template_budget.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:  # str.format / format_map of a text: check its specs first
            template_budget.check_format(value.__self__)
        return wrapped

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            if isinstance(obj, Tolerant):
                return _Absent(obj=obj, name=attribute)
            if attribute not in _MAPPING_METHODS:
                return self.undefined(obj=obj, name=attribute)
        return _as_method(super().getattr(obj, attribute), obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (TypeError, LookupError):
                if isinstance(obj, Tolerant):
                    return _Absent(obj=obj, name=argument)
                return self.undefined(obj=obj, name=argument)
        return _as_method(super().getitem(obj, argument), obj, str(argument))


def _json_text(value: Any) -> Any:
    """How a value reads inside a longer string: as JSON (null, true, ["a"], {"k": 1})."""
    if value is None or isinstance(value, _Absent):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple) or (
        hasattr(value, "__iter__") and not isinstance(value, str | Undefined)
    ):  # lists, and what reads as one: range(3), d.keys(), a filter's generator
        return json.dumps(_plain(value, True), ensure_ascii=False)
    return value


_strict_env = _DataFirstEnvironment(
    undefined=_Missing, autoescape=False, keep_trailing_newline=True
)
_strict_env.finalize = _json_text
template_budget.checked_filters(_strict_env.filters)
_strict_env.globals["range"] = template_budget.budgeted_range
_strict_env.globals["lipsum"] = template_budget.budgeted_lipsum
_strict_env.tests["none"] = lambda value: value is None or isinstance(value, _Absent)
#: Runs started before strict lookups (workflow.patched) keep their first semantics on replay:
#: attributes first, and a missing field is silently null.
_legacy_env = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True
)


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def _whole_expression(text: str) -> str | None:
    match = _WHOLE.match(text)
    if not match:
        return None
    expr = match.group("expr")
    return None if "{{" in expr or "}}" in expr else expr


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str, strict: bool) -> Any:
    if strict:
        return _strict_env.compile_expression(expr, undefined_to_none=False)
    return _legacy_env.compile_expression(expr, undefined_to_none=True)


@lru_cache(maxsize=4096)
def _compiled_template(text: str, strict: bool) -> Any:
    return (_strict_env if strict else _legacy_env).from_string(text)


def _plain(value: Any, strict: bool) -> Any:
    """Jinja results as JSON values: tuples become lists, Markup str, generators lists."""
    if isinstance(value, Undefined):
        if strict and not isinstance(value, _Absent):
            value._fail_with_undefined_error()
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, strict) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, strict) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Generators (`map`, `select` ...) become lists; anything else its text.
    if hasattr(value, "__iter__"):
        return [_plain(v, strict) for v in value]
    return str(value)


def render_string(
    text: str, scope: Mapping[str, Any], *, strict: bool = True, field: str = "value"
) -> Any:
    """Evaluate one template string; errors name `field` (e.g. `config.body.total`)."""
    if not is_template(text):
        return text
    template_budget.start_render()
    try:
        expr = _whole_expression(text)
        if expr is not None:
            return _plain(_compiled_expression(expr, strict)(**scope), strict)
        return _compiled_template(text, strict).render(**scope)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{field}: template syntax error: {exc.message}") from None
    except MissingValueError as exc:
        raise TemplateError(f"{field}: {text.strip()!r}: {_missing_text(text, exc)}") from None
    except UndefinedError as exc:
        raise TemplateError(f"{field}: {text.strip()!r}: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"{field}: not allowed in a template: {exc}") from None
    except Exception as exc:  # evaluation errors: division by zero, bad filter argument ...
        raise TemplateError(
            f"{field}: {text.strip()!r} failed: {type(exc).__name__}: {exc}"
        ) from None


def render(
    value: Any, scope: Mapping[str, Any], *, strict: bool = True, field: str = "config"
) -> Any:
    """Render every string inside `value` (dicts and lists are walked)."""
    if isinstance(value, str):
        return render_string(value, scope, strict=strict, field=field)
    if isinstance(value, dict):
        return {k: render(v, scope, strict=strict, field=f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope, strict=strict, field=f"{field}[{i}]") for i, v in enumerate(value)]
    return value


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
    """What a template reads: top-level names, and which nodes' outputs."""

    names: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)

    def merge(self, other: References) -> None:
        self.names |= other.names
        self.nodes |= other.nodes
        self.secrets |= other.secrets


def _parse(text: str) -> nodes.Template:
    expr = _whole_expression(text)
    source = text if expr is None else "{{" + expr + "}}"
    return _strict_env.parse(source)


@lru_cache(maxsize=4096)
def _string_references(text: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    try:
        tree = _parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error in {text!r}: {exc.message}") from None
    names: set[str] = set()
    buckets: dict[str, set[str]] = {"nodes": set(), "secrets": set()}
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
    return frozenset(names), frozenset(buckets["nodes"]), frozenset(buckets["secrets"])


def references(value: Any) -> References:
    """Static analysis of every template in `value`; raises TemplateError on bad syntax."""
    refs = References()
    if isinstance(value, str):
        if is_template(value):
            names, node_ids, secrets = _string_references(value)
            refs.names |= names
            refs.nodes |= node_ids
            refs.secrets |= secrets
    elif isinstance(value, dict):
        for v in value.values():
            refs.merge(references(v))
    elif isinstance(value, list):
        for v in value:
            refs.merge(references(v))
    return refs
