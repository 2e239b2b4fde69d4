"""`workflow` nodes: another stored flow, run as a child FlowRun of this one."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import CancelledError as TemporalCancelledError
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from workflows import patches
from workflows.failures import NodeError, cancelling, check_payload, error_text, failure_code
from workflows.nodes.lasting import running_row

with workflow.unsafe.imports_passed_through():
    from flow_language import rendered_config
    from flow_language.definition import Node
    from workflows.contract import FLOW_RUN, FlowResult, FlowRunInput
    from workflows.contract import error_codes as codes

if TYPE_CHECKING:
    from workflows.scheduler import Scope


async def run_sub_flow(scope: Scope, node: Node, task_id: str) -> tuple[Any, None]:
    """The child's outputs; the child inherits the tenant, workspace, trigger and tags."""
    run = scope.run
    cfg = scope.render(node, node.data.config, "config")
    if run.records_every_end:
        rendered_config.check_sub_flow(cfg)
    p = run.params
    child = FlowRunInput(
        workflow_id=str(cfg["workflowId"]),
        version=cfg.get("version"),
        inputs=cfg.get("inputs") or {},
        tenant_id=run.tenant_id,
        workspace_id=p.workspace_id,
        triggered_by=p.triggered_by,
        tags=p.tags,
        parent_run_id=run.run_row_id,
        search_attributes=p.search_attributes,
        # Started by what started its parent; a draft run's sub-flows may be drafts too.
        trigger_type=p.trigger_type,
        draft=p.draft,
    )
    if scope.lineage.as_recorded(node):
        # Its inputs are as in the retried run: the child reuses what the earlier child did.
        child.retry_of = f"{p.retry_of}/{task_id}"
    if run.records_every_end:
        check_payload(child, "the sub-flow's start (its inputs)")
    running_row(scope, node, task_id, workflow.now())
    try:
        result = await workflow.execute_child_workflow(
            FLOW_RUN,
            # As a caller sends it (no field at its default), so the child's Input reads well.
            child.model_dump(mode="json", exclude_defaults=True)
            if patches.patched(patches.CHECKPOINT_APART)
            else child,
            id=f"{workflow.info().workflow_id}/{task_id}",
            result_type=FlowResult,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            static_summary=node.label,
        )
    except ChildWorkflowError as exc:
        if isinstance(exc.cause, TemporalCancelledError):
            # Cancelled with this run, or on its own (an operator cancelling the child):
            # only the first is this run's cancellation; the second fails the node.
            if not run.records_every_end or cancelling():
                raise asyncio.CancelledError() from None
            raise NodeError("the sub-flow was cancelled", codes.CANCELLED) from None
        raise NodeError(f"sub-flow failed: {error_text(exc)}", failure_code(exc)) from None
    return result.outputs, None
