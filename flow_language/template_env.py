"""The sandboxed Jinja environment templates run in, and what their values are.

Data-first lookups (`a.items` is the key `items`), absent values that say what was read,
values a flow routed around (`Tolerant`) that read as null, JSON text for lists in text;
and, wired in from template_budget, template_calls and template_steps, the bounds on
what a template may compute. Kept apart from templates.py, which renders with it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from functools import partial
from typing import Any, cast

from jinja2 import ChainableUndefined, Environment
from jinja2.exceptions import TemplateRuntimeError, UndefinedError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing, pass_context, pass_environment

from flow_language import template_bounds, template_budget, template_calls
from flow_language.template_steps import MeteredEnvironment

#: Plain values a result needs no walk for.
PYTHON_VALUES = frozenset({str, int, float, bool, type(None)})

#: Read-only mapping methods a template may call when the mapping has no key of that name.
_MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})
#: Steps of `x.get(...)` on a mapping without a key `get` before the call (measured).
_MISSING_METHOD_STEPS = 140
#: Steps of reading an attribute of something else than a mapping (measured).
_ATTRIBUTE_STEPS = 36


class MissingValueError(UndefinedError):
    """A template read something that is not there; carries what was read, for the message."""

    def __init__(self, message: str, *, container: Any, key: Any) -> None:
        super().__init__(message)
        self.container = container
        self.key = key


class _Missing(ChainableUndefined):
    """What a lookup of an absent key gives: chains on (`a.b.c` stays missing) so that
    `| default(...)` and `is defined` work, but using it in any other way is an error.
    """

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
    calling it works (`x.get('k')`), but as a value it is a missing key, not a method.
    """

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
    that says why it is null.
    """

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


class _DataFirstEnvironment(MeteredEnvironment, ImmutableSandboxedEnvironment):
    """`a.b` reads the key `b` of a mapping before any attribute of the same name, so data
    keyed `items`, `get` or `keys` is read as data; a mapping never falls back to attributes
    for `a['b']`. What a template computes is bounded and charged: see template_budget.
    """

    intercepted_binops = frozenset(["**", "*", "+", "%", "//"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        template_bounds.check_binop(operator, left, right, self.metering())
        return super().call_binop(context, operator, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = self.metering()
        if isinstance(obj, _MissingMethod):  # the lookup that made it took microseconds
            template_calls.check_call(obj._method, args, kwargs, budget, _MISSING_METHOD_STEPS)
        else:
            template_calls.check_call(obj, args, kwargs, budget)
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__  # str.format / format_map of a text: check its specs first
        template_bounds.check_format(text)

        def format_within_budget(*args: Any, **kwargs: Any) -> Any:
            values = [*args, *kwargs.values()]
            if value.__name__ == "format_map" and args and isinstance(args[0], Mapping):
                values = list(args[0].values())
            template_bounds.check_format_args(text, values, self.metering())
            return wrapped(*args, **kwargs)

        return format_within_budget

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict or isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            if isinstance(obj, Tolerant):
                return _Absent(obj=obj, name=attribute)
            if attribute not in _MAPPING_METHODS:
                return self.undefined(obj=obj, name=attribute)
        # The sandbox's checks of an attribute (`loop.index`, `ns.x`, `s.upper`) run in
        # Python, isinstance after isinstance: microseconds in Temporal's sandbox.
        budget = self.metering()
        if budget is not None:
            budget.charge(_ATTRIBUTE_STEPS, "an attribute")
        return _as_method(super().getattr(obj, attribute), obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is dict or isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (TypeError, LookupError):
                if isinstance(obj, Tolerant):
                    return _Absent(obj=obj, name=argument)
                return self.undefined(obj=obj, name=argument)
        return _as_method(super().getitem(obj, argument), obj, str(argument))


@pass_context
def _json_text(context: Context, value: Any) -> Any:
    """How a value reads inside a longer string: as JSON (null, true, ["a"], {"k": 1}).
    Takes the context to find the budget, which also keeps Jinja from calling it while
    compiling.
    """
    budget = context.environment.metering()  # type: ignore[attr-defined]
    kind = type(value)  # by identity first: isinstance is a Python call in the sandbox
    if kind is str or kind is int or kind is float:
        template_budget.charge_output(value, budget)
        return value
    if kind is dict or kind is list:
        template_budget.charge_output(value, budget)
        return json.dumps(plain(value, True), ensure_ascii=False)
    if value is None or isinstance(value, _Absent):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    template_budget.charge_output(value, budget)
    if isinstance(value, Mapping | list | tuple) or (
        hasattr(value, "__iter__") and not isinstance(value, str | Undefined)
    ):  # lists, and what reads as one: range(3), d.keys(), a filter's generator
        return json.dumps(plain(value, True), ensure_ascii=False)
    return value


#: for renders outside workflow code (activities, validation)
_process_random = random.Random()


@pass_environment
def _replayable_random(environment: Environment, seq: Any) -> Any:
    """Jinja's `random` draws from the process's generator, which a replay does not repeat;
    in workflow code this one draws from the run's own (seeded in its history).
    """
    items = list(seq)
    if not items:
        return environment.undefined("No random item, sequence was empty.")
    budget = cast(MeteredEnvironment, environment).current_budget()
    source = budget.random_source if budget is not None else None
    generator = source() if source is not None else _process_random
    return generator.choice(items)


strict_env = _DataFirstEnvironment(undefined=_Missing, autoescape=False, keep_trailing_newline=True)
strict_env.finalize = _json_text
strict_env.filters["random"] = _replayable_random
template_calls.metered_filters(strict_env.filters)
template_calls.metered_tests(strict_env.tests)
strict_env.globals["range"] = pass_context(
    lambda context, *args: template_bounds.budgeted_range(
        context.environment.current_budget(), *args
    )
)
strict_env.globals["lipsum"] = pass_context(
    lambda context, *args, **kwargs: template_bounds.budgeted_lipsum(
        context.environment.current_budget(), *args, **kwargs
    )
)
strict_env.tests["none"] = lambda value: value is None or isinstance(value, _Absent)
#: Runs started before strict lookups (workflow.patched) keep their first semantics on replay:
#: attributes first, and a missing field is silently null.
legacy_env = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True
)


def plain(value: Any, strict: bool) -> Any:
    """Jinja results as JSON values: tuples become lists, Markup str, generators lists."""
    kind = type(value)  # plain JSON first, by identity: isinstance is slow in the sandbox
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        return {str(k): plain(v, strict) for k, v in value.items()}
    if kind is list:
        return [plain(v, strict) for v in value]
    if isinstance(value, Undefined):
        if strict and not isinstance(value, _Absent):
            value._fail_with_undefined_error()
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v, strict) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, strict) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Generators (`map`, `select` ...) become lists; anything else its text.
    if hasattr(value, "__iter__"):
        return [plain(v, strict) for v in value]
    return str(value)
