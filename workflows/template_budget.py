"""Bounds on what one template may compute.

Templates are evaluated in workflow code, which shares the worker's one event loop with
every run: an expression building a number of millions of digits, a gigabyte string or
ten billion loop iterations would freeze them all (and, retried, for ever). Jinja's
sandbox bounds `range` to 100,000 items and nothing else; these bounds refuse the
known ways to ask for more before the work is done, failing the node with the reason.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from jinja2.sandbox import SecurityError, safe_range
from jinja2.utils import generate_lorem_ipsum

#: The largest integer a template may compute, in decimal digits.
MAX_RESULT_DIGITS = 10_000
#: The longest text or list a template may build (more than any node may output).
MAX_RESULT_LENGTH = 4_000_000
#: How many items all the `range()` calls of one template may produce together.
MAX_RANGE_ITEMS = 1_000_000

#: A width or precision of a million or more, or one taken from the arguments (`%*d`,
#: `{:{}}`), in a %-format or a str.format spec.
_WIDTHS = re.compile(r"\d{7,}|%[-#0 +]*\*|\{[^{}]*:[^{}]*\{")
#: Filters whose integer arguments are widths or counts of what they produce.
_SIZING_FILTERS = {"center", "indent", "wordwrap", "truncate", "filesizeformat", "batch", "slice"}

_ranges: list[int] = [0]


def start_render() -> None:
    """A new template evaluation: its own range budget."""
    _ranges[0] = 0


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _digits(value: int) -> float:
    return math.log10(max(abs(value), 2))


def _length(value: Any) -> int:
    """What a value weighs once joined or repeated: text length, or its items' lengths."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(v) for v in value if isinstance(v, str | list | tuple))
    return 0


def _check_length(size: float, what: str) -> None:
    if size > MAX_RESULT_LENGTH:
        raise SecurityError(f"{what} would be {int(size)} long, over {MAX_RESULT_LENGTH}")


def check_format(text: str, what: str = "the format") -> None:
    """Refuse a %-format or str.format text whose widths would build a huge text."""
    if _WIDTHS.search(text):
        raise SecurityError(f"{what}: a width or precision of a million or more, or a variable one")


def budgeted_range(*args: Any) -> Iterable[int]:
    numbers = safe_range(*args)
    _ranges[0] += len(numbers)
    if _ranges[0] > MAX_RANGE_ITEMS:
        raise SecurityError(f"the ranges of one template are over {MAX_RANGE_ITEMS} items")
    return numbers


def budgeted_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n * max > MAX_RESULT_LENGTH:
        raise SecurityError(f"lipsum of {n} paragraphs is over {MAX_RESULT_LENGTH}")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse a `**`, `*`, `+` or `%` whose result would be out of bounds."""
    if operator == "**" and _whole(left) and _whole(right) and right > 0:
        digits = right * _digits(left)
        if digits > MAX_RESULT_DIGITS:
            raise SecurityError(
                f"{left} ** {right} has about {int(digits)} digits, over {MAX_RESULT_DIGITS}"
            )
    elif operator == "*":
        if _whole(left) and _whole(right) and _digits(left) + _digits(right) > MAX_RESULT_DIGITS:
            raise SecurityError(f"a product of over {MAX_RESULT_DIGITS} digits")
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and _whole(times):
                _check_length(_length(seq) * times, "the repetition")
    elif operator == "+" and isinstance(left, str | list | tuple):
        _check_length(_length(left) + _length(right), "the concatenation")
    elif operator == "%" and isinstance(left, str):
        check_format(left)


def checked_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """Wrap, in place, the filters whose result can outgrow their input."""
    for name in (*_SIZING_FILTERS, "format", "join", "replace"):
        if name in filters:
            filters[name] = _checked(name, filters[name])


def _checked(name: str, apply: Callable[..., Any]) -> Callable[..., Any]:
    # A filter marked pass_context / pass_eval_context / pass_environment gets that first.
    skip = 1 if getattr(apply, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(apply)
    def filter_within_budget(*args: Any, **kwargs: Any) -> Any:
        value, rest = args[skip], args[skip + 1 :]
        check_filter(name, value, rest, kwargs)
        return apply(*args, **kwargs)

    return filter_within_budget


def check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a filter call whose result would be out of bounds."""
    numbers = [a for a in (*args, *kwargs.values()) if _whole(a)]
    if name in _SIZING_FILTERS and any(abs(n) > MAX_RESULT_LENGTH for n in numbers):
        raise SecurityError(f"|{name} with a size over {MAX_RESULT_LENGTH}")
    if name == "indent" and isinstance(value, str):
        width = next((n for n in numbers), 4)
        _check_length(len(value) + value.count("\n") * abs(width), "the indented text")
    if name == "format" and isinstance(value, str):
        check_format(value)
    if name == "join" and isinstance(value, list | tuple):
        sep = args[0] if args and isinstance(args[0], str) else ""
        _check_length(_length(value) + len(sep) * len(value), "the joined text")
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        grows = len(new) - len(old)
        if grows > 0:
            _check_length(len(value) + value.count(old or " ") * grows, "the replaced text")
