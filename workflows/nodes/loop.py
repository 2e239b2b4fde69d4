"""`loop` nodes: a body graph run once per item (up to `maxConcurrency` at a time) or while
a condition holds. A top-level loop keeps its finished iterations across continue-as-new.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio import workflow

from workflows.failures import NodeError, NodeFailed, Suspended
from workflows.nodes.lasting import running_row
from workflows.scheduler import cancel_all

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import Node
    from flow_language.templates import truthy
    from workflows.contract import LoopProgress

if TYPE_CHECKING:
    from workflows.scheduler import Scope


async def run_loop(scope: Scope, node: Node, task_id: str) -> tuple[Any, None]:
    """Run the body over `config.items` (up to `maxConcurrency` at once) or while `config.while`
    holds (at most `maxIterations`); the output is the iterations' results, in order.
    """
    cfg = node.data.config
    if scope.run.records_every_end:  # a row while it runs, like every other lasting node
        running_row(scope, node, task_id, workflow.now())
    body = scope.defn.children(node.id)
    if "items" in cfg:
        items = scope.render(node, cfg["items"], "config.items")
        if not isinstance(items, list):
            raise NodeError(f"config.items gave {type(items).__name__}, not a list")
        limit = scope.render(node, cfg.get("maxConcurrency", 1), "config.maxConcurrency")
        if not isinstance(limit, int) or limit < 1:
            raise NodeError(f"config.maxConcurrency gave {limit!r}, not a positive integer")
        return await _over_items(scope, node, task_id, items, limit, body), None
    results: list[Any] = []
    for index in range(int(cfg["maxIterations"])):
        if not truthy(scope.render(node, cfg["while"], "config.while", {"index": index})):
            break
        await scope.run.until_unpaused()
        results.append(await _iteration(scope, node, task_id, index, None, body))
    return results, None


async def _over_items(
    scope: Scope, node: Node, task_id: str, items: list[Any], limit: int, body: list[Node]
) -> list[Any]:
    run = scope.run
    keep = scope.top  # only top-level loops survive continue-as-new half done
    progress = run.loops.setdefault(task_id, LoopProgress()) if keep else LoopProgress()
    progress.total = len(items)
    todo = [i for i in range(len(items)) if i not in progress.results]
    running: dict[int, asyncio.Task[Any]] = {}
    try:
        while todo or running:
            while todo and len(running) < limit and not (keep and run.draining):
                await run.until_unpaused()
                index = todo.pop(0)
                running[index] = asyncio.create_task(
                    _iteration(scope, node, task_id, index, items[index], body)
                )
            if not running:
                break
            await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
            for index, task in list(running.items()):
                if task.done():
                    del running[index]
                    progress.results[index] = task.result()
            if keep:
                run.check_drain()
            run.maybe_flush()
    except GeneratorExit:  # the worker dropping an evicted run: nothing may be awaited
        raise
    except BaseException:
        await cancel_all(running)
        raise
    if todo:
        raise Suspended()
    run.loops.pop(task_id, None)
    return [progress.results[i] for i in range(len(items))]


async def _iteration(
    scope: Scope, loop: Node, task_id: str, index: int, item: Any, body: list[Node]
) -> Any:
    """One run of the body; its value is its end node's output (or its sinks' outputs)."""
    inner = scope.child(loop.id, f"{task_id}[{index}].", {"item": item, "index": index})
    try:
        await inner.run_all()
    except NodeFailed as failure:
        raise NodeError(f"iteration {index}: {failure}", failure.code, failure.step) from None
    states = inner.states
    ends = [n for n in body if n.type == "end" and states[n.id].status == "completed"]
    sinks = ends or [
        n
        for n in body
        if not [e for e in scope.defn.outgoing.get(n.id, []) if e.target in inner.ids]
    ]
    values = [states[n.id].output for n in sinks if states[n.id].status == "completed"]
    if len(sinks) == 1:
        return values[0] if values else None
    return {n.id: states[n.id].output for n in sinks}
