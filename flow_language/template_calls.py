"""What filters, tests and method calls cost, and the sizes they may build.

Each is charged to the render's budget (template_budget) by what it goes through: a
filter calling back into the template for each item (`map`, `select`, `sort` ...) costs
more per item than `join`, and a text filter costs by the character. The steps per item
were calibrated against the runaway templates of tests/test_template_budget.py, inside
Temporal's workflow sandbox and out: a step stands for about 0.1 µs of the slowest input of
its kind. Filters whose result can
outgrow their input are refused, before the work, when it would be out of bounds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from types import BuiltinFunctionType
from typing import Any

from jinja2.runtime import Context, Undefined
from jinja2.sandbox import SecurityError
from jinja2.utils import _PassArg, pass_context

from flow_language.template_bounds import check_format, check_format_args, is_whole, joined_length
from flow_language.template_budget import (
    CALL_STEPS,
    COPY_CHARS,
    MAX_RESULT_LENGTH,
    Budget,
    check_text,
    consumed,
    text_size,
    walk_steps,
)

#: Filters whose integer arguments are widths or counts of what they produce.
_SIZING_FILTERS = {"center", "indent", "wordwrap", "truncate", "filesizeformat", "batch", "slice"}

#: Filters with size bounds of their own (check_filter).
_CHECKED = _SIZING_FILTERS | {"indent", "format", "join", "replace", "string", "tojson", "pprint"}

#: Filters that go through their input item by item (a text: by character): steps per item.
_WALKING: dict[str, int] = {
    "sort": 24,
    "dictsort": 16,
    "groupby": 40,
    "select": 20,
    "reject": 20,
    "selectattr": 20,
    "rejectattr": 20,
    "map": 24,
    "unique": 4,
    "min": 20,
    "max": 20,
    "sum": 2,
    "batch": 2,
    "slice": 2,
    "join": 6,
    "list": 1,
    "reverse": 1,
    "items": 1,
}
#: Walking filters that also compare, print or hash each item to the bottom.
_COMPARED = {"join", "sort", "unique", "min", "max"}
_CONTAINERS = {list, tuple, dict}
#: Filters that print or encode nested values to the bottom: steps per item met.
_DEEP: dict[str, int] = {"tojson": 2, "string": 6, "pprint": 20, "xmlattr": 2, "urlencode": 2}
#: Text filters working per word in Python or by regular expression: steps per character.
_WORDY: dict[str, int] = {"urlize": 8, "wordwrap": 3, "title": 2, "striptags": 1, "wordcount": 1}
#: Filters that look at their input once, whatever its size.
_CONSTANT = {"length", "count", "first", "last", "default", "d", "attr", "abs", "round", "safe"}
#: Characters other text filters (`upper`, `replace`, `indent` ...) go through per step.
_SCAN_CHARS = 16

#: Tests comparing their value with their argument: both are walked.
_COMPARING = {"==", "eq", "equalto", "!=", "ne", "<", "lt", "lessthan", "<=", "le"}
_COMPARING |= {">", "gt", "greaterthan", ">=", "ge", "in"}

#: Steps of calling something written in Python: a macro, `caller()`, a recursive `loop()`.
_FRAME_STEPS = 14

#: str methods that build one object per few characters, and those padding to a width.
_SPLITTING = {"split", "rsplit", "splitlines"}
_PADDING = {"center", "ljust", "rjust", "zfill"}


# -- filters and tests ----------------------------------------------------------------------


def metered_filters(filters: MutableMapping[str, Any]) -> None:
    """Wrap, in place, every filter: its size bounds, then its charge."""
    for name, apply in list(filters.items()):
        check = check_filter if name in _CHECKED else None
        filters[name] = _metered(name, apply, _filter_steps, check, f"|{name}")


def metered_tests(tests: MutableMapping[str, Any]) -> None:
    """Wrap, in place, every test with its charge."""
    for name, apply in list(tests.items()):
        tests[name] = _metered(name, apply, _test_steps, None, f"the test {name!r}")


def _metered(
    name: str,
    apply: Callable[..., Any],
    steps: Callable[[str, Any, tuple[Any, ...], dict[str, Any], Budget], tuple[int, Any]],
    check: Callable[[str, Any, tuple[Any, ...], dict[str, Any], Budget | None], None] | None,
    what: str,
) -> Callable[..., Any]:
    """`apply`, taking the template context (so Jinja never runs it while compiling, where
    no budget is open) and passing on what `apply` itself asks for.
    """
    passes = _PassArg.from_obj(apply)

    @pass_context
    @functools.wraps(apply)
    def within_budget(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = context.environment.metering()  # type: ignore[attr-defined]
        if check is not None:
            check(name, value, args, kwargs, budget)
        if budget is not None:
            cost, value = steps(name, value, args, kwargs, budget)
            budget.charge(cost, what)
        if passes is None:
            return apply(value, *args, **kwargs)
        if passes is _PassArg.context:
            return apply(context, value, *args, **kwargs)
        if passes is _PassArg.eval_context:
            return apply(context.eval_ctx, value, *args, **kwargs)
        return apply(context.environment, value, *args, **kwargs)

    return within_budget


def _filter_steps(
    name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget
) -> tuple[int, Any]:
    """The steps of a filter call, and its input (a lazy one charged as it is consumed)."""
    if name in _CONSTANT:
        return CALL_STEPS, value
    kind = type(value)
    if kind is not str and kind not in _CONTAINERS and isinstance(value, Undefined):
        return CALL_STEPS, value
    if name in _DEEP:
        return CALL_STEPS + walk_steps(value, budget, _DEEP[name]), value
    if name in _WALKING:
        per_item = _WALKING[name]
        if name == "map" and "attribute" in kwargs:
            per_item = 8  # no filter called per item
        items = _items(value)
        if items is None:
            if isinstance(value, Iterable):
                return CALL_STEPS, consumed(value, per_item, f"|{name}", budget)
            return CALL_STEPS, value
        if name == "sum" and isinstance(kwargs.get("start", args[1:2] or 0), str | list | tuple):
            items *= max(items, 1)  # sum(start=[]) adds up lists: each + copies
        if name in _COMPARED and kind is not str:
            return CALL_STEPS + per_item * items + walk_steps(value, budget), value
        return CALL_STEPS + per_item * items, value
    if kind is str:
        if name in _WORDY:
            return CALL_STEPS + len(value) * _WORDY[name], value
        return CALL_STEPS + len(value) // _SCAN_CHARS, value
    return CALL_STEPS + walk_steps(value, budget), value  # made a text first


def _items(value: Any) -> int | None:
    """How many items iterating `value` gives, if known without iterating."""
    if type(value) in _CONTAINERS or type(value) is str:
        return len(value)
    if not isinstance(value, Undefined) and hasattr(value, "__len__"):  # range, dict views
        try:
            return len(value)
        except TypeError:
            return None
    return None


def _test_steps(
    name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget
) -> tuple[int, Any]:
    if name in _COMPARING:
        return CALL_STEPS + sum(walk_steps(v, budget) for v in (value, *args)), value
    if type(value) is str and name in ("lower", "upper"):
        return CALL_STEPS + len(value) // _SCAN_CHARS, value
    return CALL_STEPS, value


def check_filter(
    name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget | None
) -> None:
    """Refuse a filter call whose result would be out of bounds."""
    numbers = [a for a in (*args, *kwargs.values()) if is_whole(a)]
    if name in _SIZING_FILTERS and any(abs(n) > MAX_RESULT_LENGTH for n in numbers):
        raise SecurityError(f"|{name} with a size over {MAX_RESULT_LENGTH}")
    if name == "indent" and isinstance(value, str):
        width = next((n for n in numbers), 4)
        check_text(len(value) + value.count("\n") * abs(width), "the indented text")
    if name == "format" and isinstance(value, str):
        check_format(value)
        check_format_args(value, (*args, *kwargs.values()), budget)
    if name == "join" and isinstance(value, list | tuple):
        sep = args[0] if args and isinstance(args[0], str) else ""
        check_text(joined_length(value) + len(sep) * len(value), "the joined text")
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        _check_replace(value, str(args[0]), str(args[1]))
    if budget is not None and name in ("string", "tojson", "pprint", "join"):
        check_text(text_size(value, budget), f"the text of |{name}")


def _check_replace(text: str, old: str, new: str) -> None:
    grows = len(new) - len(old)
    if grows > 0:
        check_text(len(text) + text.count(old or " ") * grows, "the replaced text")


# -- calls ----------------------------------------------------------------------------------


def check_call(
    target: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    budget: Budget | None,
    extra: int = 0,
) -> None:
    """Charge a call from a template (a method of a value, a macro, `namespace(...)`), and
    refuse a str method whose result would be out of bounds. `extra`: steps of what the
    caller did to make the call.
    """
    if budget is None:
        return
    receiver = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    if isinstance(receiver, str | bytes | bytearray) and not isinstance(target, type):
        _check_str_method(receiver, name, args, budget)
        return
    steps = CALL_STEPS + extra + sum(_shallow(a) for a in (*args, *kwargs.values()))
    if not isinstance(target, BuiltinFunctionType | type):  # a macro, caller(), loop(...)
        steps += _FRAME_STEPS
    if isinstance(receiver, list | tuple) and name in ("count", "index"):
        steps += walk_steps(receiver, budget)
    elif isinstance(receiver, Mapping | list | tuple) and name == "copy":
        steps += len(receiver)
    budget.charge(steps, f"a call of {name or 'a macro'}")


def _shallow(value: Any) -> int:
    if isinstance(value, str):
        return len(value) // COPY_CHARS
    return _items(value) or 0


def _check_str_method(
    receiver: str | bytes | bytearray, name: str, args: tuple[Any, ...], budget: Budget
) -> None:
    # bytes have the same methods and sizes: read them as text to measure
    text = receiver if isinstance(receiver, str) else bytes(receiver).decode("latin-1")
    numbers = [a for a in args if is_whole(a)]
    steps = CALL_STEPS + len(text) // (4 if name in _SPLITTING else _SCAN_CHARS)
    if name in _PADDING and numbers:
        check_text(numbers[0], f"str.{name}")
        steps += numbers[0] // COPY_CHARS
    elif name == "expandtabs":
        check_text(len(text) + text.count("\t") * (numbers[0] if numbers else 8), "the text")
    elif name == "replace" and len(args) >= 2:
        _check_replace(text, str(args[0]), str(args[1]))
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        check_text(len(text) * longest, "the translated text")
    if name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple):
            check_text(joined_length(items) + len(text) * len(items), "the joined text")
        steps += walk_steps(items, budget) if _items(items) is not None else 0
    else:
        steps += sum(text_size(a, budget) // COPY_CHARS for a in args)
    budget.charge(steps, f"str.{name}")
