"""Compiling templates so that what they repeat is charged to the render's budget.

Jinja's sandbox sees attribute lookups, calls and (some) operators, but not a loop's
iterations, a `~`, a comparison or a slice: those compile to plain Python. This code
generator, the environment's `code_generator_class`, writes them through the budget
instead (template_budget): each `{% for %}` item, macro call, `caller()` or block
rendering charges the steps of the body it runs, computed from the body's nodes when the
template is compiled; `~`, comparison operands and slices charge what they copy or walk.
The generated code computes the same values as Jinja's own; only the charges are added.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, operators, optimizeconst

from flow_language import template_budget
from flow_language.template_budget import Budget

#: Steps a node costs each time its body runs, by kind (measured: a sandboxed lookup, a
#: filter or a test costs a few tenths of a microsecond before its data; see
#: tests/test_template_budget.py). Kinds not listed cost `_NODE_STEPS`.
_STEPS_BY_NODE: dict[type[nodes.Node], int] = {
    nodes.Getattr: 4,
    nodes.Getitem: 4,
    nodes.Call: 12,
    nodes.Filter: 6,
    nodes.Test: 6,
    nodes.Compare: 6,
    nodes.Concat: 6,
    nodes.BinExpr: 6,
    nodes.UnaryExpr: 2,
    nodes.Output: 2,
    nodes.Assign: 2,
    nodes.AssignBlock: 4,
    nodes.NSRef: 4,
    nodes.For: 8,
    nodes.Macro: 8,
    nodes.CallBlock: 8,
    nodes.FilterBlock: 4,
    nodes.Block: 8,
}
_NODE_STEPS = 1
#: Each expression written out costs more than its node: finalize, str() and the write.
_OUTPUT_EXPR_STEPS = 6

#: Steps of taking an item in a `{% for %}`, before its body.
_ITEM_STEPS = 2
#: Steps of an iteration through Jinja's LoopContext (when the body reads `loop`).
_LOOP_CONTEXT_STEPS = 10
#: Steps of each item of a recursive loop: a LoopContext, a generator and a join per call.
_RECURSION_STEPS = 40

#: Budget hooks the generated code calls directly (not through the sandbox's `call`).
_HOOKS = frozenset({"budget_loop", "budget_steps"})


def body_steps(body: list[nodes.Node]) -> int:
    """What one run of `body` costs, before the data-dependent charges of what it calls."""
    steps = 0
    for top in body:
        for node in (top, *top.find_all(nodes.Node)):
            if isinstance(node, nodes.TemplateData):
                steps += 1 + len(node.data) // template_budget.COPY_CHARS
            elif isinstance(node, nodes.Output):
                steps += _STEPS_BY_NODE[nodes.Output] + _OUTPUT_EXPR_STEPS * len(node.nodes)
            else:
                steps += next(
                    (s for kind, s in _STEPS_BY_NODE.items() if isinstance(node, kind)),
                    _NODE_STEPS,
                )
    return steps


def _hook(name: str, *args: nodes.Expr) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name), list(args), [], None, None)


def _charged(body: list[nodes.Node], lineno: int, more: int = 0) -> list[nodes.Node]:
    steps = nodes.Const(body_steps(body) + more)
    charge = nodes.ExprStmt(_hook("budget_steps", steps), lineno=lineno)
    return [charge, *body]


def instrument(template: nodes.Template) -> None:
    """Charge, in place, every body that can run more than once."""
    for loop in list(template.find_all(nodes.For)):
        test = loop.test
        per_item = _ITEM_STEPS + (body_steps([test]) if test is not None else 0)
        if any(name.name == "loop" for name in loop.find_all(nodes.Name)):
            per_item += _LOOP_CONTEXT_STEPS  # Jinja then iterates through a LoopContext
        if loop.recursive:  # `loop(children)` runs the body with iterables never wrapped
            loop.body = _charged(loop.body, loop.lineno, _RECURSION_STEPS)
        else:
            per_item += body_steps(loop.body)
        loop.iter = _hook("budget_loop", cast(nodes.Expr, loop.iter), nodes.Const(per_item))
    for repeated in template.find_all((nodes.Macro, nodes.CallBlock, nodes.Block)):
        assert isinstance(repeated, nodes.Macro | nodes.CallBlock | nodes.Block)
        repeated.body = _charged(repeated.body, repeated.lineno)


class MeteredCodeGenerator(CodeGenerator):
    """Jinja's code generator, writing loops, `~`, comparisons and slices through the
    render's budget.
    """

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        """Instrument the template's bodies (`instrument`) before Jinja writes its code."""
        instrument(node)
        super().visit_Template(node, frame)

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        """Call the budget hooks directly; every other call goes through the sandbox as before."""
        if isinstance(node.node, nodes.EnvironmentAttribute) and node.node.name in _HOOKS:
            self.write(f"environment.{node.node.name}(")
            for i, arg in enumerate(node.args):
                self.write(", " if i else "")
                self.visit(arg, frame)
            self.write(")")
            return
        super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """`~` through `budget_concat`, which measures each operand before making it text."""
        self.write("environment.budget_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    @optimizeconst
    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        """Comparisons with each operand through `budget_weigh`."""
        self.write("(environment.budget_weigh(")
        self.visit(node.expr, frame)
        self.write(")")
        for op in node.ops:
            self.write(f" {operators[op.op]} environment.budget_weigh(")
            self.visit(op.expr, frame)
            self.write(")")
        self.write(")")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        """Slices through `budget_slice`; any other subscript as Jinja writes it."""
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        # Jinja writes slices as plain Python, bypassing the sandbox: charge the copy.
        self.write("environment.budget_slice(")
        self.visit(node.node, frame)
        for part in (node.arg.start, node.arg.stop, node.arg.step):
            self.write(", ")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write(")")


class MeteredEnvironment:
    """The hooks `MeteredCodeGenerator` writes calls to, and the budget of the render in
    progress, for a sandboxed environment.

    The budget is found through the environment, never a module global: Temporal's sandbox
    may load these modules twice (per run, and passed through from the worker), and a
    global reached through two copies would be two budgets. A context variable, per
    environment: workflow tasks and activities (asyncio.to_thread) render in threads of
    their own.
    """

    code_generator_class: type[CodeGenerator] = MeteredCodeGenerator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget: ContextVar[Budget | None] = ContextVar("template_budget", default=None)

    @contextmanager
    def rendering(
        self,
        metered: bool = True,
        limit: int = template_budget.MAX_STEPS,
        random_source: Callable[[], random.Random] | None = None,
    ) -> Iterator[Budget]:
        """The budget of one render (all the templates of one config)."""
        token = self._budget.set(Budget(metered, limit, random_source=random_source))
        try:
            yield cast(Budget, self._budget.get())
        finally:
            self._budget.reset(token)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No budget while compiling: Jinja folds constants then (`{{ 1 }}`, `'a'.upper`), and
        whether a template is compiled or cached must not change what a render is charged.
        """
        token = self._budget.set(None)
        try:
            yield
        finally:
            self._budget.reset(token)

    def current_budget(self) -> Budget | None:
        """The budget of the render in progress, metered or not (ranges are always counted)."""
        return self._budget.get()

    def metering(self) -> Budget | None:
        """The budget to charge: none while compiling, nor in runs older than the budget."""
        budget = self._budget.get()
        return budget if budget is not None and budget.metered else None

    def budget_loop(self, iterable: Any, steps: int) -> Any:
        """A `{% for %}` iterable charging its body's `steps` per item."""
        return template_budget.loop(iterable, steps, self.metering())

    def budget_steps(self, steps: int) -> None:
        """Charge one run of a macro, `caller()` or block body."""
        budget = self.metering()
        if budget is not None:
            budget.charge(steps, "a macro, caller() or block body")

    def budget_concat(self, values: tuple[Any, ...]) -> str:
        """`a ~ b`, measured and bounded."""
        return template_budget.concat(values, self.metering())

    def budget_weigh(self, value: Any) -> Any:
        """A comparison operand, charged for the walk the comparison makes of it."""
        return template_budget.weigh(value, self.metering())

    def budget_slice(self, obj: Any, start: Any, stop: Any, step: Any) -> Any:
        """`obj[start:stop:step]`, charged for the copy it makes of a text, list or tuple."""
        part = slice(start, stop, step)
        budget = self.metering()
        if budget is not None and isinstance(obj, str | list | tuple):
            try:
                size = len(range(*part.indices(len(obj))))
            except TypeError:  # indices that are not numbers: obj[part] says so
                return obj[part]
            copy = size // template_budget.COPY_CHARS if isinstance(obj, str) else size // 4
            budget.charge(1 + copy, "a slice")
        return obj[part]
