"""The node runners, one module per family, and the table the scheduler dispatches through."""

from __future__ import annotations

from temporalio import workflow

from workflows.nodes.agent import a2a_handles, run_a2a, run_agent
from workflows.nodes.basic import (
    condition_handles,
    run_condition,
    run_end,
    run_start,
    run_transform,
)
from workflows.nodes.hitl import review_handles, run_hitl
from workflows.nodes.loop import run_loop
from workflows.nodes.sub_flow import run_sub_flow
from workflows.nodes.wait import run_wait, wait_handles
from workflows.scheduler import NodeRunner

with workflow.unsafe.imports_passed_through():
    from flow_language.definition import ACTIVITY_AGENT_TYPES

#: Every node type of the flow language, and how it runs.
RUNNERS: dict[str, NodeRunner] = {
    "start": NodeRunner(run_start, instant=True),
    "end": NodeRunner(run_end, instant=True),
    "transform": NodeRunner(run_transform, instant=True),
    "condition": NodeRunner(run_condition, instant=True, reused_handles=condition_handles),
    "wait": NodeRunner(run_wait, reused_handles=wait_handles),
    "loop": NodeRunner(run_loop),
    "workflow": NodeRunner(run_sub_flow),
    "hitl": NodeRunner(run_hitl, takes_bookkeeping=True, reused_handles=review_handles),
    **{kind: NodeRunner(run_agent, writes_own_row=True) for kind in ACTIVITY_AGENT_TYPES},
    "a2a": NodeRunner(run_a2a, writes_own_row=True, reused_handles=a2a_handles),
}
