"""A retry's lineage: which nodes of one scope may take the retried run's recorded outputs.

A retry that reuses outputs (`FlowRunInput.retry_of`) takes a node's output from
the retried run only when the node ended `completed` there and everything it reads,
and whether it runs at all, is as it was there: every node before it reused its
recorded output, or was skipped by routing that was itself as recorded. A node
computed afresh (it failed, was cancelled or never ran; it failed and went on with
`onError: continue` or `route`) may return something else this time, so every node
after it runs again too. A loop body's iterations reuse their own rows
(`loop[2].node`) only while the loop reads what it read in the retried run.
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import FlowDefinition, Node
    from workflows.contract import NODE_ENDED, NodeState, ReusedTask


class Lineage:
    """One scope's view of the retried run (None `reused`: this run reuses nothing)."""

    def __init__(
        self,
        reused: Mapping[str, ReusedTask] | None,
        defn: FlowDefinition,
        states: Mapping[str, NodeState],
        ids: set[str],
        *,
        tainted: bool = False,
    ) -> None:
        self.reused = reused
        self._defn = defn
        self._states = states
        self._ids = ids
        #: what the scope reads from outside may differ from the retried run's
        self._tainted = tainted
        #: ended nodes' answers, which never change
        self._clean: dict[str, bool] = {}

    def as_recorded(self, node: Node) -> bool:
        """Whether what `node` reads, and whether it runs, is as in the retried run."""
        if self.reused is None or self._tainted:
            return False
        for edge in self._defn.incoming.get(node.id, []):
            source = edge.source
            if source not in self._ids:
                continue
            if source not in self._clean:
                state = self._states[source]
                if state.status not in NODE_ENDED:
                    return False
                self._clean[source] = state.reused or (
                    state.status == "skipped" and self.as_recorded(self._defn.by_id[source])
                )
            if not self._clean[source]:
                return False
        return True

    def recorded(self, node: Node, task_id: str) -> ReusedTask | None:
        """The retried run's completed execution of `task_id`, if this run may take it."""
        found = self.reused.get(task_id) if self.reused is not None else None
        if found is None or found.node_type != node.type or not self.as_recorded(node):
            return None
        return found
