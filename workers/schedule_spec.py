"""From a stored flow's schedule to the Temporal Schedule that runs it, or a plain refusal.

Pure: no I/O, so every trigger configuration can be tried (tests/test_schedule_spec.py
does, with hypothesis) and each either maps to a schedule or gives a refusal naming the
flow, never an exception. Whether Temporal accepts a cron expression is Temporal's own
call (`ScheduleSpec.cron_expressions`, judged by the server when the schedule is created
or updated): here a cron is only checked to be one line of text, so the engine never
refuses what Temporal would run nor runs what it refuses.

How the columns and the triggers relate: every `{"type": "schedule", "config": {...}}`
entry of `workflows.triggers` is one Temporal Schedule; `schedule_cron` and
`schedule_timezone` supply a trigger's `cron` and `timezone` when its config has none,
and a flow with no schedule trigger but a `schedule_cron` has one schedule from the
columns alone. The first schedule of a flow has the id `flow-<workflow uuid>`, the n-th
(n >= 2) `flow-<workflow uuid>-<n>`, by position among the flow's schedule triggers.
"""

from __future__ import annotations

import math
import uuid
import zoneinfo
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.converter import PayloadConverter

from persistence.schedule_queries import ScheduledFlow
from workers.client import FLOW_RUN

#: Every schedule the engine makes has an id with this prefix and OWNER in its memo;
#: the sync touches no other schedule of the namespace.
SCHEDULE_ID_PREFIX = "flow-"
OWNER = "meta-agent-worker"
#: The memo key (of the schedule, and of the runs it starts) holding what it was made from.
MEMO_KEY = "meta_agent"
#: How a schedule the sync paused reads in the Temporal UI; the sync unpauses only these,
#: so a pause by someone else (an operator, Temporal's pauseOnFailure) stays.
PAUSED_NOTE_PREFIX = "paused by meta-agent: "
ACTIVE_NOTE_PREFIX = "meta-agent: "

DEFAULT_TIMEZONE = "UTC"
#: How late a missed fire (Temporal or the namespace unavailable) may still start a run.
DEFAULT_CATCHUP = timedelta(seconds=60)
#: Temporal's own floor for the catch-up window, and a year as a ceiling.
MIN_CATCHUP_SECONDS = 10
MAX_CATCHUP_SECONDS = 366 * 24 * 3600
MAX_CRON_CHARS = 255
#: `overlap` of a trigger's config: what a fire does while the previous run still runs.
OVERLAPS: dict[str, ScheduleOverlapPolicy] = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "buffer_all": ScheduleOverlapPolicy.BUFFER_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "terminate_other": ScheduleOverlapPolicy.TERMINATE_OTHER,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}


@dataclass(frozen=True)
class ScheduleConfig:
    """One schedule trigger's settings, checked and with the defaults filled in."""

    cron: str
    timezone: str
    inputs: dict[str, Any]
    overlap: ScheduleOverlapPolicy = ScheduleOverlapPolicy.SKIP
    catchup_window: timedelta = DEFAULT_CATCHUP
    pause_on_failure: bool = False


@dataclass(frozen=True)
class FlowSchedule:
    """One schedule a flow wants: its settings, or why they cannot be one."""

    schedule_id: str
    flow: ScheduledFlow
    #: which entry it comes from: `schedule trigger <n>` or `schedule_cron`
    source: str
    config: ScheduleConfig | None
    #: a refusal naming the flow (None: `config` is set)
    problem: str | None = None

    @property
    def paused_reason(self) -> str | None:
        """Why its Temporal Schedule must not fire now (None: it fires)."""
        return self.problem or self.flow.unavailable


def schedule_id(workflow_id: uuid.UUID, position: int) -> str:
    """The id of a flow's `position`-th schedule (1-based): readable, stable, the flow's own."""
    base = f"{SCHEDULE_ID_PREFIX}{workflow_id}"
    return base if position == 1 else f"{base}-{position}"


def flow_label(flow: ScheduledFlow) -> str:
    """The flow as people name it: its name and id, and its tenant's name."""
    tenant = f", tenant {flow.tenant_name!r}" if flow.tenant_id else ", no tenant"
    return f"flow {flow.name!r} ({flow.workflow_id}{tenant})"


def flow_schedules(flow: ScheduledFlow) -> list[FlowSchedule]:
    """Every schedule the flow's row asks for, in trigger order (empty: none)."""
    triggers = flow.triggers if isinstance(flow.triggers, list) else []
    entries = [t for t in triggers if isinstance(t, dict) and t.get("type") == "schedule"]
    column_cron = _text(flow.schedule_cron)
    column_zone = _text(flow.schedule_timezone)
    sources: list[tuple[str, Any]]
    if entries:
        sources = [(f"schedule trigger {i}", e.get("config")) for i, e in enumerate(entries, 1)]
    elif column_cron is not None:
        sources = [("schedule_cron", {})]
    else:
        return []
    wanted = []
    for position, (source, config) in enumerate(sources, 1):
        read = read_config(config, cron=column_cron, timezone=column_zone)
        sid = schedule_id(flow.workflow_id, position)
        if isinstance(read, str):
            problem = f"{flow_label(flow)}, {source}: {read}"
            wanted.append(FlowSchedule(sid, flow, source, None, problem))
        else:
            wanted.append(FlowSchedule(sid, flow, source, read))
    return wanted


def read_config(
    config: Any, *, cron: str | None = None, timezone: str | None = None
) -> ScheduleConfig | str:
    """A trigger's `config` as a ScheduleConfig, or what is wrong with it (never raises).

    `cron` and `timezone` are the flow's columns, taken when the config has none.
    Keys other than cron, timezone, inputs, overlap, catchupWindowSeconds and
    pauseOnFailure are the platform's own and are left alone.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        return "`config` must be an object"
    chosen_cron = config.get("cron")
    if chosen_cron is None or chosen_cron == "":
        chosen_cron = cron  # the flow's column stands in for a trigger without one
    if chosen_cron is None or (isinstance(chosen_cron, str) and not chosen_cron.strip()):
        return "no `cron`: give the trigger a cron expression (or the flow a schedule_cron)"
    cron_problem = _cron_problem(chosen_cron)
    if cron_problem:
        return cron_problem
    zone = config.get("timezone")
    if zone is None or zone == "":
        zone = timezone or DEFAULT_TIMEZONE
    if not isinstance(zone, str) or not _is_time_zone(zone):
        return f"timezone {zone!r} is not a time zone: give an IANA name such as 'Europe/Paris'"
    inputs = config.get("inputs", {})
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        return "`inputs` must be an object (the run's inputs)"
    overlap = config.get("overlap", "skip")
    key = overlap.strip().lower().replace("-", "_") if isinstance(overlap, str) else None
    if key not in OVERLAPS:
        return f"overlap {overlap!r} is not one of {', '.join(OVERLAPS)}"
    catchup = config.get("catchupWindowSeconds", DEFAULT_CATCHUP.total_seconds())
    if (
        isinstance(catchup, bool)
        or not isinstance(catchup, int | float)
        or not math.isfinite(catchup)
        or not MIN_CATCHUP_SECONDS <= catchup <= MAX_CATCHUP_SECONDS
    ):
        return (
            f"catchupWindowSeconds {catchup!r} must be a number of seconds from "
            f"{MIN_CATCHUP_SECONDS} to {MAX_CATCHUP_SECONDS}"
        )
    pause_on_failure = config.get("pauseOnFailure", False)
    if not isinstance(pause_on_failure, bool):
        return f"pauseOnFailure {pause_on_failure!r} must be true or false"
    return ScheduleConfig(
        cron=chosen_cron.strip(),
        timezone=zone,
        inputs=inputs,
        overlap=OVERLAPS[key],
        catchup_window=timedelta(seconds=catchup),
        pause_on_failure=pause_on_failure,
    )


def _cron_problem(cron: Any) -> str | None:
    """What makes `cron` no cron expression at all; its syntax is Temporal's to judge."""
    if not isinstance(cron, str):
        return f"cron {cron!r} must be text, e.g. '*/5 * * * *'"
    if len(cron) > MAX_CRON_CHARS or "\n" in cron or "\r" in cron:
        return f"cron must be one line of at most {MAX_CRON_CHARS} characters"
    if cron.strip().upper().startswith(("CRON_TZ=", "TZ=")):
        return f"cron {cron!r} names a time zone: put it in `timezone` instead"
    return None


def _is_time_zone(name: str) -> bool:
    if not name or name != name.strip() or "\x00" in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        return False
    return True


def _text(value: str | None) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def plain_payload(value: Any) -> Payload:
    """`value` as a plain JSON payload, never sealed by PAYLOAD_KEYS: memos say only who owns
    a schedule and when it fires, which the Temporal UI and other tools must read as is.
    """
    return PayloadConverter.default.to_payloads([value])[0]


def owner_memo(flow: ScheduledFlow, task_queue: str) -> dict[str, Any]:
    """The schedule's memo: who owns it, and the flow and tenant it runs as (set once, at
    creation; a schedule whose flow changed tenant is made anew).
    """
    return {
        MEMO_KEY: plain_payload(
            {
                "owner": OWNER,
                "task_queue": task_queue,
                "flow_id": str(flow.workflow_id),
                "flow": flow.name,
                "tenant_id": str(flow.tenant_id) if flow.tenant_id else None,
                "tenant": flow.tenant_name,
            }
        )
    }


def action_args(want: FlowSchedule, config: ScheduleConfig) -> dict[str, Any]:
    """The FlowRun argument every fire sends: the flow, its tenant and nothing else.

    Temporal adds the fire's time to the run's search attributes
    (`TemporalScheduledStartTime`); the run puts it in `trigger_metadata.scheduled_time`.
    """
    flow = want.flow
    args: dict[str, Any] = {"workflow_id": str(flow.workflow_id), "inputs": config.inputs}
    if flow.tenant_id:
        args["tenant_id"] = str(flow.tenant_id)
    if flow.workspace_id:
        args["workspace_id"] = str(flow.workspace_id)
    args["trigger_type"] = "schedule"
    args["trigger_metadata"] = {"schedule_id": want.schedule_id}
    return args


def action_record(want: FlowSchedule, config: ScheduleConfig) -> dict[str, Any]:
    """What the schedule was made from, kept in its action's memo (and so on every run it
    starts): Temporal turns a cron into calendars, so this is how the sync knows the cron
    and time zone it set.
    """
    return {
        "owner": OWNER,
        "schedule_id": want.schedule_id,
        "flow": want.flow.name,
        "tenant": want.flow.tenant_name,
        "source": want.source,
        "cron": config.cron,
        "timezone": config.timezone,
    }


def active_note(want: FlowSchedule) -> str:
    """The note of a schedule that fires: which flow it runs."""
    return f"{ACTIVE_NOTE_PREFIX}runs {flow_label(want.flow)}, {want.source}"


def paused_note(reason: str) -> str:
    """The note of a schedule the sync paused, saying why."""
    return f"{PAUSED_NOTE_PREFIX}{reason}"


def build_schedule(want: FlowSchedule, config: ScheduleConfig, task_queue: str) -> Schedule:
    """The Temporal Schedule of `want` (paused, with the reason as its note, if it must not
    fire); every fire starts FlowRun under `<schedule id>-<fire time>`.
    """
    reason = want.paused_reason
    return Schedule(
        action=ScheduleActionStartWorkflow(
            FLOW_RUN,
            action_args(want, config),
            id=want.schedule_id,
            task_queue=task_queue,
            memo={MEMO_KEY: plain_payload(action_record(want, config))},
            static_summary=f"scheduled run of {flow_label(want.flow)}",
        ),
        spec=ScheduleSpec(cron_expressions=[config.cron], time_zone_name=config.timezone),
        policy=SchedulePolicy(
            overlap=config.overlap,
            catchup_window=config.catchup_window,
            pause_on_failure=config.pause_on_failure,
        ),
        state=ScheduleState(
            paused=reason is not None,
            note=paused_note(reason) if reason else active_note(want),
        ),
    )
