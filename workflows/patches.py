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

#: An agent whose rows meet a database outage hands them back to the workflow, which
#: writes them once the database answers (an agent's work is never repeated for its row),
#: and an agent that could not begin for the outage is tried again without spending the
#: node's attempts.
ROWS_WAIT_FOR_DATABASE = "rows-wait-for-database"

#: A cancellation that arrives once the run's final row is written (or being written) no
#: longer ends the run as cancelled: the run ends as its row says (completed or failed),
#: so Temporal and the row agree.
ENDS_AS_RECORDED = "ends-as-recorded"

#: A run's argument nested more than MAX_VALUE_DEPTH levels deep is refused at its start:
#: wrapped in an activity's argument it could pass the payload converter's own bound and
#: be refused by the activity on every attempt.
VALUE_DEPTH_BOUND = "value-depth-bound"

#: A decision on a review whose `hitl_open` is under way (its inbox row already written)
#: waits for the opening to land instead of being refused as an unknown task.
DECIDE_WHILE_OPENING = "decide-while-opening"

#: A retry that reuses outputs (`FlowRunInput.retry_of`, `reuse_outputs`) reads the completed
#: node rows of the run it retries (`load_reused_outputs`) and takes those outputs instead of
#: running the nodes again. Asked only by runs carrying `retry_of`, so no other run records
#: its marker; not part of a generation for the same reason.
REUSE_RETRIED_OUTPUTS = "reuse-retried-outputs"

#: The run's flow name is upserted as the `FlowName` search attribute with the others.
FLOW_NAME_ATTRIBUTE = "flow-name-attribute"
#: A run continues as new with the caller's request as its first argument, unchanged, and
#: its checkpoint as a second, and starts a sub-flow with only the fields it sets: the
#: Temporal UI's Input shows each request as it was sent.
CHECKPOINT_APART = "checkpoint-as-second-argument"
#: A `wait` node waiting on an event lists the event's name in the run's `WaitingEvents`
#: search attribute while it waits (one upsert when it starts, one when it stops), so
#: `meta-agent events emit` and `POST /events/NAME` find the runs to wake by a query.
WAITING_EVENTS_ATTRIBUTE = "waiting-events-attribute"

#: A final decision that resumes the run (no other review open, nothing else written since
#: the run said `waiting_hitl`) also sets the run's row to `running` in its own transaction,
#: so no `record_run` follows it (an activity, a server round trip and its events).
DECISION_RESUMES_RUN = "decision-resumes-run"
#: The run's `FlowStatus` goes up in the same upsert as its tenant, flow and version when
#: it starts: one upsert event (and one visibility update) less per run.
STATUS_WITH_IDENTITY = "status-with-identity-attributes"

_FIRST_GENERATION = frozenset(
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
#: Markers that each stand for every change up to theirs, newest first: a run records the
#: newest one when it starts; runs that recorded an older one keep answering by it.
_SECOND_GENERATION = _FIRST_GENERATION | {
    ROWS_WAIT_FOR_DATABASE,
    ENDS_AS_RECORDED,
    VALUE_DEPTH_BOUND,
    DECIDE_WHILE_OPENING,
}
_THIRD_GENERATION = _SECOND_GENERATION | {FLOW_NAME_ATTRIBUTE, CHECKPOINT_APART}
_FOURTH_GENERATION = _THIRD_GENERATION | {WAITING_EVENTS_ATTRIBUTE}
GENERATIONS: tuple[tuple[str, frozenset[str]], ...] = (
    ("flow-run-2026-11-30", _FOURTH_GENERATION | {DECISION_RESUMES_RUN, STATUS_WITH_IDENTITY}),
    ("flow-run-2026-11-29", _FOURTH_GENERATION),
    ("flow-run-2026-11-28", _THIRD_GENERATION),
    ("flow-run-2026-11-27", _SECOND_GENERATION),
    ("flow-run-2026-11-26", _FIRST_GENERATION),
)
#: The marker new runs record.
CURRENT = GENERATIONS[0][0]


def patched(patch_id: str) -> bool:
    """`workflow.patched(patch_id)`, answered by the generation marker a run recorded.

    The SDK remembers a run's first answer to each id: a run that replays without a
    generation's marker in its history keeps answering False to it, and asks the next
    (older) one, then the id itself.
    """
    for marker, subsumed in GENERATIONS:
        if patch_id in subsumed and workflow.patched(marker):
            return True
    return workflow.patched(patch_id)
