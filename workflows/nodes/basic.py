"""Nodes evaluated in the workflow at once: start, end, transform and condition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import Node
    from flow_language.templates import truthy

if TYPE_CHECKING:
    from workflows.scheduler import Scope


async def run_start(scope: Scope, node: Node, task_id: str) -> tuple[Any, None]:
    """The run's inputs."""
    return scope.run.params.inputs, None


async def run_end(scope: Scope, node: Node, task_id: str) -> tuple[Any, None]:
    """`config.outputs`, rendered: what the run (or a loop iteration) returns."""
    return scope.render(node, node.data.config.get("outputs", {}), "config.outputs"), None


async def run_transform(scope: Scope, node: Node, task_id: str) -> tuple[Any, None]:
    """The rendered `config.output`, as the node's output."""
    return scope.render(node, node.data.config.get("output"), "config.output"), None


async def run_condition(scope: Scope, node: Node, task_id: str) -> tuple[Any, list[str | None]]:
    """The first branch whose `when` is true, else `default`; leaves by that handle only."""
    cfg = node.data.config
    for i, branch in enumerate(cfg.get("branches", [])):
        if truthy(scope.render(node, branch["when"], f"config.branches[{i}].when")):
            return {"handle": branch["handle"]}, [branch["handle"], None]
    default = cfg.get("default")
    return {"handle": default}, [default, None]


def condition_handles(scope: Scope, node: Node, output: Any) -> list[str | None]:
    """A reused condition leaves by the branch it recorded, so a retry routes as before."""
    handle = output.get("handle") if isinstance(output, dict) else None
    if not isinstance(handle, str | None) or not isinstance(output, dict) or "handle" not in output:
        raise ValueError(f"no branch handle in {output!r:.100}")
    return [handle, None]
