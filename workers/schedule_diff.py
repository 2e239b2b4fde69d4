"""What one schedule sync did, and how an engine's schedule differs from what its flow wants.

Kept apart from the sync's steps (`workers/schedule_sync.py`): reading a described
Temporal Schedule back into the terms of a flow's trigger is the part that knows how
Temporal stores a schedule (a cron turned into calendars, arguments and memos as
payloads), and the report is what `meta-agent schedules sync` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from temporalio.api.common.v1 import Payload
from temporalio.client import ScheduleActionStartWorkflow, ScheduleDescription
from temporalio.converter import DataConverter
from temporalio.service import RPCError

from workers.client import FLOW_RUN
from workers.schedule_spec import (
    MEMO_KEY,
    OWNER,
    FlowSchedule,
    ScheduleConfig,
    action_args,
    action_record,
    flow_label,
)


@dataclass
class SyncReport:
    """What one sync did, schedule by schedule, for the CLI and the worker's log."""

    created: dict[str, str] = field(default_factory=dict)
    updated: dict[str, list[str]] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)
    unpaused: dict[str, str] = field(default_factory=dict)
    deleted: dict[str, str] = field(default_factory=dict)
    #: paused by someone else (an operator, Temporal's pauseOnFailure): left paused
    held: dict[str, str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per change and problem, then a count of the schedules left as they were."""
        out = [f"created   {sid}  {what}" for sid, what in self.created.items()]
        out += [f"updated   {sid}  {', '.join(what)}" for sid, what in self.updated.items()]
        out += [f"paused    {sid}  {why}" for sid, why in self.paused.items()]
        out += [f"unpaused  {sid}  {what}" for sid, what in self.unpaused.items()]
        out += [f"deleted   {sid}  {what}" for sid, what in self.deleted.items()]
        out += [
            f"held      {sid}  paused by someone else: {note}" for sid, note in self.held.items()
        ]
        out += [f"problem   {problem}" for problem in self.problems]
        out.append(f"{len(self.unchanged)} schedule(s) already in sync")
        return out

    @property
    def changed(self) -> bool:
        """Whether the sync changed any schedule."""
        return any((self.created, self.updated, self.paused, self.unpaused, self.deleted))


@dataclass(frozen=True)
class OwnedSchedule:
    """One of the engine's schedules as Temporal describes it, for `schedules list`."""

    schedule_id: str
    record: dict[str, Any]
    paused: bool
    note: str | None
    next_times: Sequence[Any]


#: How a field of the action's record is named in the sync's report.
_LABELS = {"flow": "flow name", "tenant": "tenant name"}


async def differences(
    converter: DataConverter,
    want: FlowSchedule,
    config: ScheduleConfig,
    described: ScheduleDescription,
    task_queue: str,
) -> list[str]:
    """What of the schedule differs from what the flow wants (empty: nothing)."""
    changes: list[str] = []
    schedule = described.schedule
    action = schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow):
        return ["action"]
    if (action.workflow, action.task_queue, action.id) != (
        FLOW_RUN,
        task_queue,
        want.schedule_id,
    ):
        changes.append("action")
    args = await converter.decode([a for a in action.args if isinstance(a, Payload)])
    expected = action_args(want, config)
    sent = args[0] if len(args) == 1 and isinstance(args[0], dict) else {}
    if sent.get("inputs") != expected["inputs"]:
        changes.append("inputs")
    if {k: v for k, v in sent.items() if k != "inputs"} != {
        k: v for k, v in expected.items() if k != "inputs"
    }:
        changes.append("arguments")
    kept = await made_from(converter, described)
    for key, value in action_record(want, config).items():
        if kept.get(key) != value:
            changes.append(_LABELS.get(key, key.replace("_", " ")))
    if schedule.spec.time_zone_name != config.timezone and "timezone" not in changes:
        changes.append("timezone")
    policy = schedule.policy
    if policy.overlap != config.overlap:
        changes.append("overlap")
    if policy.catchup_window != config.catchup_window:
        changes.append("catchup window")
    if policy.pause_on_failure != config.pause_on_failure:
        changes.append("pause on failure")
    return changes


async def made_from(converter: DataConverter, described: ScheduleDescription) -> dict[str, Any]:
    """What the schedule was made from, as its action's memo records it (empty: nothing)."""
    action = described.schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow):
        return {}
    kept = (action.memo or {}).get(MEMO_KEY)
    if not isinstance(kept, Payload):
        return {}
    record = (await converter.decode([kept]))[0]
    return record if isinstance(record, dict) else {}


def owned_by(record: Any, task_queue: str) -> TypeGuard[dict[str, Any]]:
    """Whether a schedule's memo record is this engine's, for this task queue."""
    return (
        isinstance(record, dict)
        and record.get("owner") == OWNER
        and record.get("task_queue") == task_queue
    )


def refused(want: FlowSchedule, config: ScheduleConfig, exc: RPCError) -> str:
    """Temporal's refusal of a schedule, in words naming the flow."""
    detail = exc.message.removeprefix("Invalid schedule spec: ")
    return (
        f"{flow_label(want.flow)}, {want.source}: Temporal refuses cron {config.cron!r} "
        f"in time zone {config.timezone!r}: {detail}"
    )
