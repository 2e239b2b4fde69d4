"""From a flow's schedule (triggers and columns) to a Temporal Schedule: total and plain.

Any trigger configuration maps to a schedule or to a refusal naming the flow, never to an
exception; the columns stand in for a trigger's missing cron and time zone; ids are the
flow's, by position.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from persistence.schedule_queries import ScheduledFlow
from workers.client import FLOW_RUN
from workers.schedule_spec import (
    OVERLAPS,
    ScheduleConfig,
    build_schedule,
    flow_schedules,
    read_config,
)

_CI = settings(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)

_FLOW_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
_TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def _flow(
    triggers: Any = (), cron: str | None = None, timezone: str | None = "UTC", **fields: Any
) -> ScheduledFlow:
    values: dict[str, Any] = {
        "workflow_id": _FLOW_ID,
        "name": "nightly",
        "tenant_id": _TENANT,
        "tenant_name": "Acme",
        "workspace_id": None,
        "triggers": list(triggers) if isinstance(triggers, tuple) else triggers,
        "schedule_cron": cron,
        "schedule_timezone": timezone,
        "unavailable": None,
    }
    values.update(fields)
    return ScheduledFlow(**values)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
#: Values a config's known keys may hold: plausible ones and anything at all.
_known = {
    "cron": st.sampled_from(
        ["* * * * *", "0 8 * * 1-5", "@daily", "", " ", "CRON_TZ=UTC 0 * * * *"]
    )
    | _json,
    "timezone": st.sampled_from(["UTC", "Europe/Paris", "Mars/Olympus", "", "../etc", "utc"])
    | _json,
    "inputs": st.dictionaries(st.text(max_size=5), _json, max_size=2) | _json,
    "overlap": st.sampled_from([*OVERLAPS, "Buffer-One", "sometimes"]) | _json,
    "catchupWindowSeconds": st.sampled_from([60, 9, 10, 3.5, 1e12, float("nan"), True]) | _json,
    "pauseOnFailure": st.booleans() | _json,
}
_configs = st.fixed_dictionaries({}, optional=_known) | _json


@_CI
@given(
    config=_configs, cron=st.none() | st.text(max_size=12), zone=st.none() | st.text(max_size=12)
)
def test_any_config_maps_to_a_schedule_or_a_plain_refusal(
    config: Any, cron: str | None, zone: str | None
) -> None:
    read = read_config(config, cron=cron, timezone=zone)
    if isinstance(read, str):
        assert read
        assert "\n" not in read
        return
    assert isinstance(read, ScheduleConfig)
    flow = _flow([{"type": "schedule", "config": config}], cron=cron, timezone=zone)
    [want] = flow_schedules(flow)
    assert want.problem is None
    assert want.config == read
    schedule = build_schedule(want, read, "queue")
    assert schedule.spec.cron_expressions == [read.cron]
    assert schedule.spec.time_zone_name == read.timezone
    assert schedule.policy.catchup_window is not None
    assert schedule.policy.catchup_window >= timedelta(seconds=10)


@_CI
@given(triggers=_json)
def test_any_triggers_column_gives_schedules_or_refusals_naming_the_flow(triggers: Any) -> None:
    for want in flow_schedules(_flow(triggers, cron="*/5 * * * *")):
        assert want.schedule_id.startswith(f"flow-{_FLOW_ID}")
        if want.config is None:
            assert want.problem is not None
            assert "flow 'nightly'" in want.problem
            assert str(_FLOW_ID) in want.problem


def test_defaults_and_the_action_a_fire_starts() -> None:
    flow = _flow([{"type": "schedule", "config": {"cron": "0 8 * * *", "inputs": {"n": 1}}}])
    [want] = flow_schedules(flow)
    assert want.config == ScheduleConfig(cron="0 8 * * *", timezone="UTC", inputs={"n": 1})
    assert want.config.overlap == ScheduleOverlapPolicy.SKIP
    assert want.config.catchup_window == timedelta(seconds=60)
    schedule = build_schedule(want, want.config, "flows")
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.id, action.task_queue) == (FLOW_RUN, want.schedule_id, "flows")
    assert action.args == [
        {
            "workflow_id": str(_FLOW_ID),
            "inputs": {"n": 1},
            "tenant_id": str(_TENANT),
            "trigger_type": "schedule",
            "trigger_metadata": {"schedule_id": f"flow-{_FLOW_ID}"},
        }
    ]
    assert not schedule.state.paused
    assert "flow 'nightly'" in (schedule.state.note or "")


def test_the_columns_stand_in_for_what_a_trigger_leaves_out() -> None:
    only_columns = flow_schedules(_flow(cron="*/10 * * * *", timezone="Asia/Tokyo"))
    assert [(w.source, w.config and (w.config.cron, w.config.timezone)) for w in only_columns] == [
        ("schedule_cron", ("*/10 * * * *", "Asia/Tokyo"))
    ]
    # A trigger's own settings win; what it leaves out comes from the columns.
    [own, bare] = flow_schedules(
        _flow(
            [
                {"type": "webhook", "config": {}},
                {"type": "schedule", "config": {"cron": "0 9 * * *", "timezone": "Europe/Paris"}},
                {"type": "schedule"},
            ],
            cron="*/10 * * * *",
            timezone="Asia/Tokyo",
        )
    )
    assert own.schedule_id == f"flow-{_FLOW_ID}"
    assert own.source == "schedule trigger 1"
    assert own.config
    assert (own.config.cron, own.config.timezone) == ("0 9 * * *", "Europe/Paris")
    assert bare.schedule_id == f"flow-{_FLOW_ID}-2"
    assert bare.config
    assert (bare.config.cron, bare.config.timezone) == (
        "*/10 * * * *",
        "Asia/Tokyo",
    )
    assert flow_schedules(_flow([{"type": "manual"}])) == []


def test_refusals_say_what_to_do() -> None:
    def problem(config: Any) -> str:
        [want] = flow_schedules(_flow([{"type": "schedule", "config": config}]))
        assert want.problem is not None
        assert want.paused_reason == want.problem
        return want.problem

    assert problem({"cron": "* * * * *", "timezone": "Mars/Olympus"}).endswith(
        "schedule trigger 1: timezone 'Mars/Olympus' is not a time zone: give an IANA name "
        "such as 'Europe/Paris'"
    )
    assert "no `cron`" in problem({})
    assert "put it in `timezone`" in problem({"cron": "CRON_TZ=Asia/Tokyo 0 * * * *"})
    assert "overlap 'sometimes' is not one of skip, buffer_one" in problem(
        {"cron": "@daily", "overlap": "sometimes"}
    )
    assert "catchupWindowSeconds 5 must be" in problem(
        {"cron": "@daily", "catchupWindowSeconds": 5}
    )
    assert "`inputs` must be an object" in problem({"cron": "@daily", "inputs": [1]})


def test_every_overlap_policy_and_the_other_settings_are_read() -> None:
    for name, policy in OVERLAPS.items():
        read = read_config({"cron": "@hourly", "overlap": name.upper()})
        assert isinstance(read, ScheduleConfig)
        assert read.overlap == policy
    read = read_config(
        {"cron": "@hourly", "catchupWindowSeconds": 300, "pauseOnFailure": True, "label": "x"}
    )
    assert isinstance(read, ScheduleConfig)
    assert read.catchup_window == timedelta(minutes=5)
    assert read.pause_on_failure


def test_a_flow_that_may_not_run_wants_its_schedule_paused_with_why() -> None:
    why = "flow 'nightly' is paused: resume it before running it"
    [want] = flow_schedules(_flow(cron="* * * * *", unavailable=why))
    assert want.config is not None
    assert want.paused_reason == why
    schedule = build_schedule(want, want.config, "q")
    assert schedule.state.paused
    assert schedule.state.note == f"paused by meta-agent: {why}"
