"""What a node's templates see in the scope it runs in: the run's inputs, the outputs of
the nodes that ended before it, `run`, and a loop iteration's own names.

A mixin of `scheduler.Scope`, kept apart because it changes with the template language's
rules, not with the scheduling.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows.run_state import RunState

with workflow.unsafe.imports_passed_through():
    from flow_language import templates
    from flow_language.definition import FlowDefinition, Node
    from workflows.contract import NodeState


class TemplateScope:
    """The template-facing half of a scope (the scheduler sets these attributes)."""

    run: RunState
    defn: FlowDefinition
    local: dict[str, Any]
    outer: dict[str, Any]
    states: dict[str, NodeState]

    def scope_vars(self) -> dict[str, Any]:
        """What templates read here: the run's inputs, the outputs of nodes that ended (a failure
        routed to its error handle too; a skipped node's as null in strict runs), `run`, the
        flow's `variables`, and the loop's own names.
        """
        nodes = dict(self.outer)
        for node_id, state in self.states.items():
            # A failure routed to the error handle is visible too: its output is {"error": ...}.
            if state.status == "completed" or (state.status == "failed" and state.handles):
                output = state.output
                if state.error is not None and isinstance(output, dict):
                    output = templates.Tolerant(output)
                nodes[node_id] = {"output": output}
            elif state.status == "skipped" and self.run.strict_templates:
                # Absent by the flow's own routing: its output reads as null.
                nodes[node_id] = templates.Tolerant()
        scope = {"input": self.run.params.inputs, "nodes": nodes, "run": self.run.run_scope()}
        if self.defn.variables:
            # Only when the flow has some: the scope of every other run stays as it was,
            # and so do the activity arguments built from it.
            scope["variables"] = self.defn.variables
        return {**scope, **self.local}

    def render(
        self, node: Node, value: Any, field: str, extra: dict[str, Any] | None = None
    ) -> Any:
        """Render one config value of `node` (named by `field` in errors), with `extra` names
        besides the scope's.
        """
        scope = self.scope_vars()
        if extra:
            scope.update(extra)
        return templates.render(
            value, scope, strict=self.run.strict_templates, field=field, host=self.run.render_host
        )

    def handles_except(self, node: Node, *excluded: str | None) -> list[str | None]:
        """The node's outgoing handles, without `excluded`."""
        return [h for h in self.defn.out_handles(node.id) if h not in excluded]
