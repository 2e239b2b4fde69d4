"""`{{ expression }}` templates in config values (CONTRACT section 1, Templates).

Jinja2 expression syntax in the immutable sandbox: no access to Python
internals, no mutation of the scope, no I/O. A string that is exactly one
`{{ ... }}` yields the expression's value with its JSON type; any other string
renders to a string. Rendering is a pure function of the template and the
scope, so the workflow may call it and stay deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

#: Names a template may use (CONTRACT: input, nodes, item, index, run, secrets).
SCOPE_NAMES = frozenset({"input", "nodes", "item", "index", "run", "secrets"})

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)

_env = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined,  # a missing field is null, not an error deep in a chain
    autoescape=False,
    keep_trailing_newline=True,
)


class TemplateError(ValueError):
    """A template that does not parse or fails to evaluate; the message is for the flow author."""


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def _whole_expression(text: str) -> str | None:
    match = _WHOLE.match(text)
    if not match:
        return None
    expr = match.group("expr")
    return None if "{{" in expr or "}}" in expr else expr


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str) -> Any:
    return _env.compile_expression(expr, undefined_to_none=True)


@lru_cache(maxsize=4096)
def _compiled_template(text: str) -> Any:
    return _env.from_string(text)


def _plain(value: Any) -> Any:
    """Jinja results as JSON values: undefined becomes null, tuples lists, Markup str."""
    if isinstance(value, Undefined):
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Generators (`map`, `select` ...) become lists; anything else its text.
    if hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return str(value)


def render_string(text: str, scope: Mapping[str, Any]) -> Any:
    if not is_template(text):
        return text
    try:
        expr = _whole_expression(text)
        if expr is not None:
            return _plain(_compiled_expression(expr)(**scope))
        return _compiled_template(text).render(**scope)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"not allowed in a template: {exc}") from None
    except Exception as exc:  # evaluation errors: division by zero, bad filter argument ...
        raise TemplateError(f"template {text!r} failed: {type(exc).__name__}: {exc}") from None


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every string inside `value` (dicts and lists are walked)."""
    if isinstance(value, str):
        return render_string(value, scope)
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    return value


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
    return _env.parse(source)


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
