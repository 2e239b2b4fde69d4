"""The SDK's workflow sandbox, minus its re-entry for every payload's serialization context.

Around each workflow activation the SDK encodes and decodes every payload in three passes
each way, and for each payload it asks the workflow instance which serialization context
applies (the activity's, a child's, the workflow's). A sandboxed instance answers by
compiling and executing a code string inside the sandbox with its import hooks applied:
under load that was 16-19 % of a FlowRun worker's CPU (py-spy, benchmark scenario (a)),
more than running the workflow code itself, and a FlowRun activity command carries three
payloads (its argument, its summary, its trace header) where a bare one carries one.

The answer is a lookup in the instance's pending commands: it imports nothing, runs no
workflow code and changes no state, so the sandbox protects nothing by being entered for
it. This runner reads it from the sandboxed instance directly; workflow code itself still
runs only inside the sandbox, with every restriction. The SDK's own route is kept whenever
the instance does not look as expected (another SDK version), and
`tests/test_sandbox_runner.py` checks both routes answer alike on real runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox import _runner as sandbox_internals

if TYPE_CHECKING:
    from temporalio.converter import SerializationContext
    from temporalio.converter._extstore import StorageDriverStoreContext
    from temporalio.worker._command_aware_visitor import CommandInfo
    from temporalio.worker._workflow_instance import WorkflowInstance, WorkflowInstanceDetails

#: Pure, deterministic libraries the workflow uses: loaded once, not re-imported per run
#: (Jinja2 imports parts of itself lazily, which the sandbox would otherwise warn about).
PASSTHROUGH_MODULES = ("jinja2", "markupsafe", "pydantic", "pydantic_core", "re2")

#: Where the SDK keeps the sandboxed instance in the sandbox's namespace.
_IN_SANDBOX = "__temporal_in_sandbox"


class _DirectContextInstance(sandbox_internals._Instance):
    """A sandboxed workflow instance whose context lookups skip the sandbox re-entry."""

    def _direct(self, lookup: str) -> Callable[[CommandInfo | None], Any] | None:
        """The sandboxed instance's own `lookup` method, or None if it has none."""
        return getattr(self.globals_and_locals.get(_IN_SANDBOX), lookup, None)

    def get_serialization_context(
        self, command_info: CommandInfo | None
    ) -> SerializationContext | None:
        """The context the SDK's own route computes, read without entering the sandbox."""
        direct = self._direct("get_serialization_context")
        if direct is None:
            return super().get_serialization_context(command_info)
        context: SerializationContext | None = direct(command_info)
        return context

    def get_external_store_context(
        self, command_info: CommandInfo | None
    ) -> StorageDriverStoreContext:
        """The external-storage target, read the same way."""
        direct = self._direct("get_external_store_context")
        if direct is None:
            return super().get_external_store_context(command_info)
        context: StorageDriverStoreContext = direct(command_info)
        return context


@dataclass(frozen=True)
class FlowSandboxRunner(SandboxedWorkflowRunner):
    """`SandboxedWorkflowRunner` whose instances answer context lookups directly."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        """A sandboxed instance, as the SDK's, with the direct lookups."""
        return _DirectContextInstance(det, self.runner_class, self.restrictions)


def flow_sandbox_runner() -> FlowSandboxRunner:
    """The runner every worker and replayer of the product uses."""
    return FlowSandboxRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )
