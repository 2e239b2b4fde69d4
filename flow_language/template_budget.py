"""Bounds on what one template may compute.

Templates are evaluated in workflow code, which shares the worker's one event loop with
every run, and which Temporal's deadlock detector stops after 2 s (the task is then retried
for ever, the run wedged without an error); agent configs are rendered in activities, on
the worker everyone's runs share. So a render must end, one way or the other, in a fraction
of a second whatever the template and its data.

Two kinds of bound, both pure functions of the template and its scope (no clocks), so that
a replay fails or succeeds exactly where the first execution did:

- sizes: an integer of more than 10,000 digits, a text or list past 4 million, a format
  width of a million, a render's output past 4 million characters is refused before it is
  built;
- steps: each render has a budget of work (`MAX_STEPS`, about a tenth of a microsecond
  each): every loop iteration costs the steps of its body, and every filter, call,
  comparison or concatenation the items and characters it goes through.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2.runtime import Undefined
from jinja2.sandbox import SecurityError
from jinja2.utils import Namespace

#: The largest integer a template may compute, in decimal digits.
MAX_RESULT_DIGITS = 10_000
#: The longest text or list a template may build (more than any node may output).
MAX_RESULT_LENGTH = 4_000_000
#: How many items all the `range()` calls of one template may produce together.
MAX_RANGE_ITEMS = 1_000_000
#: The work one render may do. A step is about 0.1 µs of the worst work it stands for, so
#: the most expensive template fails within about half a second (tests/test_template_budget).
MAX_STEPS = 3_000_000
#: The work all the renders of one workflow task may do together: nodes that become ready
#: at the same moment run in one task, which Temporal's deadlock detector stops at 2 s.
MAX_TASK_STEPS = 2 * MAX_STEPS

#: Characters that cost one step when a C loop copies, compares or encodes them.
COPY_CHARS = 32
#: Steps of one filter, test or call, before the items it goes through.
CALL_STEPS = 4
#: Steps per item of measuring a list or mapping (a Python loop), once per render.
MEASURE_STEPS = 5
#: Steps per item of a walk in Python (`_plain` making a result JSON, with json.dumps).
PYTHON_WALK_STEPS = 10


class BudgetExceeded(SecurityError):
    """A render went past its steps or its output size: the message says which and where.

    Recognised by `exceeds_budget`, not by class: Temporal's sandbox may load this module
    twice (once per run, and once passed through), and the two classes differ.
    """

    exceeds_budget = True


@dataclass
class Budget:
    """The work of one render so far. `metered` is False for runs started before the budget
    (workflow.patched): they keep the size bounds they had, and nothing else.
    """

    metered: bool
    #: Below MAX_STEPS when other renders of the same workflow task took the rest.
    limit: int = MAX_STEPS
    steps: int = 0
    ranges: int = 0
    #: id -> (value, items, chars) of containers measured; keeping the value keeps its id
    #: unique for the render, so the memo is deterministic.
    sizes: dict[int, tuple[Any, int, int]] = field(default_factory=dict)
    #: Where `| random` draws from: the run's own generator in workflow code (None: the
    #: process's), so a replay draws the same.
    random_source: Callable[[], random.Random] | None = None

    def charge(self, steps: int, what: str) -> None:
        """Count `steps` more against the limit; past it the render stops, naming `what`."""
        self.steps += steps
        if self.steps > self.limit:
            raise BudgetExceeded(self._exceeded(what))

    def remaining(self) -> int:
        """The steps still allowed (negative once the limit is passed)."""
        return self.limit - self.steps

    def _exceeded(self, what: str) -> str:
        steps = (
            "(loop iterations, and the items and characters filters, calls and comparisons "
            f"go through); the last was {what}"
        )
        if self.limit >= MAX_STEPS:
            return f"template exceeds its budget of {MAX_STEPS:,} steps {steps}"
        return (
            f"template exceeds the {max(self.limit, 0):,} steps left of the "
            f"{MAX_TASK_STEPS:,} the templates of nodes run at the same moment may take "
            f"together (one workflow task) {steps}"
        )


# -- sizes ----------------------------------------------------------------------------------


def measure(value: Any, budget: Budget) -> tuple[int, int]:
    """(items, chars): how many values a walk of `value` meets (json.dumps, ==, str), and
    about how long its text is. Shared parts count each time a walk reaches them, but are
    measured once; measuring is charged by the values it goes through, and stops once past
    what the budget has left (whoever asked will then be refused).
    """
    kind = type(value)
    if kind is str:
        return 1, len(value) + 2
    if kind is int:
        return 1, value.bit_length() * 3 // 10 + 2
    if kind is dict or kind is list or kind is tuple:  # by identity: see _NUMBERS
        return _measure_container(value, budget)
    if value is None or kind is bool or kind is float or isinstance(value, Undefined):
        return 1, 24
    if isinstance(value, str | bytes | bytearray):
        return 1, len(value) + 2
    if isinstance(value, int):
        return 1, value.bit_length() * 3 // 10 + 2
    if isinstance(value, range):
        width = len(str(max(abs(value.start), abs(value.stop)))) + 2
        return len(value) + 1, len(value) * width
    if isinstance(value, Namespace):  # mutable: never memoised
        return _measure_items(value._Namespace__attrs, budget)
    if not isinstance(value, Mapping | list | tuple | set | frozenset):
        return 1, 24  # generators are charged as they are consumed
    return _measure_container(value, budget)


def _measure_container(value: Any, budget: Budget) -> tuple[int, int]:
    known = budget.sizes.get(id(value))
    if known is not None:
        return known[1], known[2]
    items, chars = _measure_items(value, budget)
    budget.sizes[id(value)] = (value, items, chars)
    return items, chars


def _measure_items(values: Any, budget: Budget) -> tuple[int, int]:
    kind = type(values)
    mapping = kind is dict or (
        kind is not list and kind is not tuple and isinstance(values, Mapping)
    )
    per_item = MEASURE_STEPS * (2 if mapping else 1)
    budget.charge(MEASURE_STEPS * 2 + len(values) * per_item, "measuring a value")
    items, chars, limit = 1 + len(values), 2 + 2 * len(values), budget.remaining()
    for part in (values, values.values()) if mapping else (values,):
        for value in part:
            kind = type(value)
            if kind is str:
                chars += len(value) + 2
            elif kind is int:
                chars += value.bit_length() * 3 // 10 + 2
            elif kind is float or kind is bool or value is None:
                chars += 24
            else:
                more_items, more_chars = measure(value, budget)
                items, chars = items + more_items - 1, chars + more_chars
                if items > limit:
                    return items, chars  # over what is left: whatever asked is refused
    return items, chars


def walk_steps(value: Any, budget: Budget, per_item: int = 1) -> int:
    """Steps of a walk of `value`: `per_item` for each item it meets (1: a C loop such as
    == or json.dumps), and its characters by `COPY_CHARS`.
    """
    items, chars = measure(value, budget)
    return items * per_item + chars // COPY_CHARS


def weigh(value: Any, budget: Budget | None) -> Any:
    """Charge a comparison operand (`==`, `in`, `<`): it is walked item by item."""
    kind = type(value)
    if kind is int or kind is bool or kind is float or value is None:
        return value  # the node's own steps cover it
    if budget is not None:
        if kind is str:
            budget.charge(1 + len(value) // COPY_CHARS, "a comparison")
        else:
            budget.charge(walk_steps(value, budget), "a comparison")
    return value


def text_size(value: Any, budget: Budget) -> int:
    """About how long `str(value)` is, without building it."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    return measure(value, budget)[1]


def check_text(size: float, what: str) -> None:
    """Refuse a text `what` before it is built when it would be over the longest result allowed."""
    if size > MAX_RESULT_LENGTH:
        raise SecurityError(f"{what} would be {int(size)} long, over {MAX_RESULT_LENGTH}")


def concat(values: tuple[Any, ...], budget: Budget | None) -> str:
    """`a ~ b ~ c`: each measured before it is turned into text, the result bounded."""
    if budget is None:
        return "".join(map(str, values))
    size = steps = 0
    for value in values:
        if type(value) is str:
            size += len(value)
        else:
            items, chars = measure(value, budget)
            size, steps = size + chars, steps + items
    check_text(size, "the ~ concatenation")
    budget.charge(steps + size // COPY_CHARS, "a ~ concatenation")
    return "".join(map(str, values))


def loop(iterable: Any, steps: int, budget: Budget | None) -> Any:
    """A `{% for %}` iterable that charges `steps` (its body's) for each item it gives."""
    if budget is None:
        return iterable
    return _metered(iterable, steps, budget)


def _metered(iterable: Any, steps: int, budget: Budget) -> Iterator[Any]:
    for item in iterable:
        budget.charge(steps, "a for loop")
        yield item


def consumed(iterable: Iterable[Any], steps: int, what: str, budget: Budget) -> Iterator[Any]:
    """A lazy input (a filter's generator) charged by the item as it is consumed."""
    for item in iterable:
        budget.charge(steps, what)
        yield item


def charge_output(value: Any, budget: Budget | None) -> None:
    """An expression written out (`{{ x }}` in a text): a copy of its text, or for a
    list or mapping a walk to JSON.
    """
    if budget is not None:
        budget.charge(walk_steps(value, budget, PYTHON_WALK_STEPS), "an output")


def joined_output(chunks: Iterable[str], budget: Budget | None) -> str:
    """A render's text, refused once past `MAX_RESULT_LENGTH` rather than built whole."""
    if budget is None:
        return "".join(chunks)
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RESULT_LENGTH:
            raise BudgetExceeded(f"template output exceeds {MAX_RESULT_LENGTH:,} characters")
        parts.append(chunk)
    return "".join(parts)
