"""JSON Schema a flow supplies (review forms, inputSchema, outputSchema, a model's jsonSchema),
checked with every regular expression matched by RE2 and no reference fetched.

jsonschema matches `pattern`, `patternProperties` and the property names they leave to
`additionalProperties` with Python's `re`, which backtracks: a flow author's pattern
such as `^(a+)+$` against forty characters a reviewer types took minutes of CPU in
workflow code, freezing the worker. RE2 matches in time linear in the input and
refuses the constructs that need backtracking (backreferences, lookaround), so such
a pattern is refused when the flow is validated instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import re2
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.validators import extend
from referencing import Registry
from referencing.jsonschema import DRAFT202012

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported by us, not on stderr


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def unusable(schema: dict[str, Any]) -> str | None:
    """Why `schema` (valid against its metaschema) cannot be checked in bounded time, or None.

    A `$ref` that leads nowhere or outside the schema (nothing is fetched); a regular
    expression RE2 cannot match; `unevaluatedProperties` beside `patternProperties`
    (jsonschema matches those names with Python's `re` itself); `$dynamicRef`; and a
    `$ref` that leads back to itself, with which `anyOf` branches multiply at each level
    of the reviewer's nesting.
    """
    objects = list(_objects(schema))
    refs = [o["$ref"] for o in objects if isinstance(o.get("$ref"), str)]
    resolver = Registry().with_resource("", DRAFT202012.create_resource(schema)).resolver("")
    for ref in refs:
        try:
            resolver.lookup(ref)
        except Exception as exc:  # referencing's Unresolvable, PointerToNowhere, ...
            return f"$ref {ref!r} cannot be resolved ({type(exc).__name__})"
    if any("$dynamicRef" in o for o in objects):
        return "$dynamicRef is not supported in a flow's schemas"
    if any("unevaluatedProperties" in o for o in objects) and any(
        "patternProperties" in o for o in objects
    ):
        return "unevaluatedProperties with patternProperties is not supported in a flow's schemas"
    if _recursive(schema, refs):
        return "a $ref that leads back to itself (a recursive schema) is not supported"
    for pattern in _patterns(objects):
        try:
            _compiled(pattern)
        except re2.error as exc:
            return f"pattern {pattern[:80]!r} is not supported (RE2 syntax: {exc})"
    return None


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every object (subschema or keyword value) inside `value`, `value` included."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _objects(child)
    elif isinstance(value, list):
        for child in value:
            yield from _objects(child)


def _local_refs(value: Any) -> list[str]:
    return [
        o["$ref"]
        for o in _objects(value)
        if isinstance(o.get("$ref"), str) and o["$ref"][:1] == "#"
    ]


def _recursive(schema: Any, refs: list[str]) -> bool:
    """Whether following local `$ref`s (`#...`) from the root can reach one twice."""

    def target(ref: str) -> Any:
        node: Any = schema
        for part in ref[1:].lstrip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def reaches(ref: str, seen: frozenset[str]) -> bool:
        if ref in seen:
            return True
        return any(reaches(inner, seen | {ref}) for inner in _local_refs(target(ref)))

    return any(reaches(ref, frozenset()) for ref in refs if ref.startswith("#"))


def _patterns(objects: list[dict[str, Any]]) -> Iterator[str]:
    for o in objects:
        if isinstance(o.get("pattern"), str):
            yield o["pattern"]
        if isinstance(o.get("patternProperties"), dict):
            yield from (k for k in o["patternProperties"] if isinstance(k, str))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and _compiled(pattern).search(instance) is None:
        yield ValidationError(f"{instance[:80]!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if _compiled(pattern).search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = [_compiled(p) for p in schema.get("patternProperties", {})]
    extras = [n for n in instance if n not in named and not any(p.search(n) for p in patterns)]
    if validator.is_type(additional, "object"):
        for name in extras:
            yield from validator.descend(instance[name], additional, path=name)
    elif additional is False and extras:
        yield ValidationError(f"additional properties are not allowed ({', '.join(extras[:5])})")


FormValidator = extend(
    Draft202012Validator,
    validators={
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)


#: Where a `$ref` may lead: nowhere outside its own schema. jsonschema's default registry
#: fetches `http://` and `file://` references, from inside the engine's network and disk, and
#: its errors quote what it found: a flow author's schema could read internal services back.
_LOCAL_ONLY = Registry()


def validator_for(schema: dict[str, Any]) -> Any:
    """The validator of a schema a flow or a registry row supplies: RE2 patterns, local refs
    only. Check the schema with `unusable` first; what it refuses may raise here.
    """
    return FormValidator(schema, registry=_LOCAL_ONLY)
