"""Every `workflow.patched()` id FlowRun uses, and what it changed.

Each marks a change to the commands a run issues: runs started before it keep
the old commands on replay (their recorded histories, in `tests/histories/`,
must keep replaying), runs started after take the new path. Never rename or
reuse one; add a new id for each new change, and ask for it through `patched` below.

Each id a run takes costs it a marker and a search-attribute upsert (the SDK's
`TemporalChangeVersion`) in its history. So runs started since `CURRENT` record that
one id for every change it subsumes; runs that recorded the ids one by one replay
them one by one.
"""

from __future__ import annotations

from temporalio import workflow

#: Opening a review task also writes the run's new status and the buffered rows, so
#: parking a run costs one activity and no later wake-up.
HITL_OPEN_BOOKKEEPING = "hitl-open-carries-bookkeeping"
#: Template lookups read keys before attributes and fail on absent values (no silent null).
STRICT_TEMPLATES = "strict-template-lookups"
#: A review deadline closes its task at once instead of waiting for decisions in flight:
#: the database orders the two, and a decision not yet stored when the deadline passes loses.
DEADLINE_FIRST = "hitl-deadline-does-not-wait"
#: However a run ends (a bookkeeping failure, a cancellation at any moment), its rows say so.
EVERY_END_RECORDED = "every-end-recorded"
#: Templates rendered in the workflow are charged steps and bounded per workflow task;
#: runs started before render without that budget (what rendered there renders on replay).
TEMPLATE_BUDGET = "template-step-budget"
#: Bookkeeping (write-back, lookups, review rows) runs as local activities: in the worker,
#: inside the workflow task that needs it, recorded as one marker; no activity task, no
#: extra workflow task and no server round trip per write.
LOCAL_BOOKKEEPING = "local-bookkeeping"
#: An agent's activity carries the run's input only when the node reads it (a loop over a
#: large input carried all of it into every iteration's activity).
AGENT_INPUT_ONLY_IF_READ = "agent-input-only-if-read"
#: Bookkeeping is back to regular activities for new runs: with a local activity in flight
#: the server could hand a worker an update too large to be answered (its rejection carries
#: the request), and the run was terminated (BadUpdateWorkflowExecutionMessage). Runs that
#: recorded LOCAL_BOOKKEEPING keep it on replay.
BOOKKEEPING_AS_ACTIVITIES = "bookkeeping-as-activities"
#: An agent's activity also writes the finished rows of nodes evaluated in the workflow
#: (start, condition, transform, ...) buffered when it is scheduled, so a run spends no
#: `record_run` activity (a server round trip and a workflow task) between two agents;
#: nor before a review is opened, whose activity takes every row and the status.
AGENTS_CARRY_ROWS = "agents-carry-rows"
#: A decision's reviewer is checked by the activity that records it, in one transaction:
#: one activity (a server round trip and a workflow task) less between a decision and the
#: next node.
DECISION_IN_ONE_STEP = "decision-in-one-step"

#: Every change above in one marker, for runs started since: each of them is on.
CURRENT = "flow-run-2026-11-26"
_SUBSUMED = frozenset(
    {
        HITL_OPEN_BOOKKEEPING,
        STRICT_TEMPLATES,
        DEADLINE_FIRST,
        EVERY_END_RECORDED,
        TEMPLATE_BUDGET,
        AGENT_INPUT_ONLY_IF_READ,
        BOOKKEEPING_AS_ACTIVITIES,
        AGENTS_CARRY_ROWS,
        DECISION_IN_ONE_STEP,
    }
)


def patched(patch_id: str) -> bool:
    """`workflow.patched(patch_id)`, answered by `CURRENT` in runs that recorded it.

    The SDK remembers a run's first answer to each id: a run that replays without
    `CURRENT` in its history keeps answering False to it, and asks for each id.
    """
    if patch_id in _SUBSUMED and workflow.patched(CURRENT):
        return True
    return workflow.patched(patch_id)
