"""The first bounds on a template's values: integers, repetitions, formats and ranges.

Each is checked before the value is built (`template_budget` explains why a
render must end quickly whatever its data): an arithmetic result of too many
digits, a repeated or concatenated text or list past the longest allowed, a
format whose widths would make a huge text, more range items than a template
may walk. Arithmetic is charged to the render's budget by the size of its operands.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from jinja2.sandbox import SecurityError, safe_range
from jinja2.utils import generate_lorem_ipsum

from flow_language.template_budget import (
    CALL_STEPS,
    COPY_CHARS,
    MAX_RANGE_ITEMS,
    MAX_RESULT_DIGITS,
    MAX_RESULT_LENGTH,
    Budget,
    check_text,
    text_size,
)

#: A width or precision of a million or more, or one taken from the arguments (`%*d`,
#: `{:{}}`), in a %-format or a str.format spec.
_WIDTHS = re.compile(r"\d{7,}|%[-#0 +]*\*|\{[^{}]*:[^{}]*\{")


def is_whole(value: Any) -> bool:
    """An integer, not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def _digits(value: int) -> float:
    return math.log10(max(abs(value), 2))


def joined_length(value: Any) -> int:
    """What a value weighs once joined or repeated: text length, or its items' lengths."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(v) for v in value if _sequence(v))
    return 0


#: Types that are never texts or lists, checked by identity before isinstance.
_SCALARS = {int, float, bool, type(None), dict}


def _sequence(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is list or kind is tuple:
        return True
    return kind not in _SCALARS and isinstance(value, str | bytes | bytearray | list | tuple)


def check_format(text: str | bytes | bytearray, what: str = "the format") -> None:
    """Refuse a %-format or str.format text whose widths would build a huge text."""
    if not isinstance(text, str):
        text = bytes(text).decode("latin-1")
    if _WIDTHS.search(text):
        raise SecurityError(f"{what}: a width or precision of a million or more, or a variable one")


def check_format_args(
    text: str | bytes | bytearray, args: Iterable[Any], budget: Budget | None
) -> None:
    """Refuse a format whose fields, each filled with the largest argument, would be huge
    (`('{0}' * 1000).format(big)`).
    """
    if budget is None:
        return
    if not isinstance(text, str):  # bytes: the same sizes, read as text
        text = bytes(text).decode("latin-1")
    largest = max((text_size(a, budget) for a in args), default=0)
    fields = text.count("{") + text.count("%")
    # each field is as wide as its width or precision at least: 100 fields of width
    # 999,999 make a text of 100 million characters however small the arguments
    widths = format_widths(text)
    budget.charge(CALL_STEPS + (len(text) + widths) // COPY_CHARS + fields, "a format")
    check_text(len(text) + fields * largest + widths, "the formatted text")


_FIELD_WIDTHS = re.compile(
    r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?|\{[^{}]*?:[^{}\d.]*(\d*)(?:\.(\d*))?"
)


def format_widths(text: str | bytes | bytearray) -> int:
    """The widths and precisions of a format's fields, summed (the least text they make)."""
    if not isinstance(text, str):
        text = bytes(text).decode("latin-1")
    total = 0
    for match in _FIELD_WIDTHS.finditer(text):
        total += max((int(n) for n in match.groups() if n), default=0)
    return total


def budgeted_range(budget: Budget | None, *args: Any) -> Iterable[int]:
    """`range()`: Jinja bounds each to 100,000 items, this all of one template's together
    (counted in runs started before the budget too, as they always were).
    """
    numbers = safe_range(*args)
    if budget is not None:
        budget.ranges += len(numbers)
        if budget.ranges > MAX_RANGE_ITEMS:
            raise SecurityError(f"the ranges of one template are over {MAX_RANGE_ITEMS} items")
    return numbers


def budgeted_lipsum(
    budget: Budget | None, n: int = 5, html: bool = True, min: int = 20, max: int = 100
) -> str:
    """`lipsum()`: bounded by the longest result allowed, and charged for the text it makes."""
    if n * max > MAX_RESULT_LENGTH:
        raise SecurityError(f"lipsum of {n} paragraphs is over {MAX_RESULT_LENGTH}")
    if budget is not None and budget.metered:
        budget.charge(n * max // 4, "lipsum")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


#: Operand types of plain arithmetic, checked by identity: in Temporal's sandbox every
#: isinstance() is a Python call, and arithmetic is most of what templates do.
_NUMBERS = {(int, int), (int, float), (float, int), (float, float)}


def check_binop(operator: str, left: Any, right: Any, budget: Budget | None) -> None:
    """Refuse a `**`, `*`, `+` or `%` whose result would be out of bounds; charge any
    arithmetic by the size of its operands.
    """
    kinds = (type(left), type(right))
    if kinds in _NUMBERS and (operator not in ("**", "*") or kinds != (int, int)):
        if budget is not None:
            steps = _binop_steps(operator, left, right) if kinds == (int, int) else 1
            budget.charge(steps, f"a {operator}")
        return
    if operator == "**" and is_whole(left) and is_whole(right) and right > 0:
        digits = right * _digits(left)
        if digits > MAX_RESULT_DIGITS:
            raise SecurityError(
                f"{left} ** {right} has about {int(digits)} digits, over {MAX_RESULT_DIGITS}"
            )
    elif operator == "*":
        whole = is_whole(left) and is_whole(right)
        if whole and _digits(left) + _digits(right) > MAX_RESULT_DIGITS:
            raise SecurityError(f"a product of over {MAX_RESULT_DIGITS} digits")
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | bytearray | list | tuple) and is_whole(times):
                check_text(joined_length(seq) * times, "the repetition")
    elif operator == "+" and isinstance(left, str | bytes | bytearray | list | tuple):
        check_text(joined_length(left) + joined_length(right), "the concatenation")
    elif operator == "%" and isinstance(left, str | bytes | bytearray):
        check_format(left)
        check_format_args(left, right if isinstance(right, tuple) else (right,), budget)
    if budget is not None:
        budget.charge(_binop_steps(operator, left, right), f"a {operator}")


def _binop_steps(operator: str, left: Any, right: Any) -> int:
    """What building the result costs: its length for texts and lists (a copy, and the
    scan of `joined_length`), the product of the operands' machine words for big integers.
    """
    if is_whole(left) and is_whole(right):
        words_left, words_right = left.bit_length() // 64 + 1, right.bit_length() // 64 + 1
        if operator == "**" and right > 0:
            words_right = min(left.bit_length() * right, MAX_RESULT_DIGITS * 4) // 64 + 1
        return words_left + words_right + words_left * words_right // 16
    if operator == "*":
        seq, times = (left, right) if is_whole(right) else (right, left)
        if isinstance(seq, str | list | tuple) and is_whole(times):
            size = len(seq) * max(times, 0)
            return 1 + (size // COPY_CHARS if isinstance(seq, str) else 2 * size)
    if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, type(left)):
        size = len(left) + len(right)
        return 1 + (size // COPY_CHARS if isinstance(left, str) else 2 * size)
    return 1
