"""Scheduled flows as Temporal Schedules, on the real server and database.

A flow's schedule trigger becomes a Schedule that starts FlowRun as the flow's tenant and
records `trigger_type` schedule with the fire time; the sync follows the flow's row (its
cron, time zone, inputs and policies; paused, archived, inactive; the trigger removed) and
never touches a schedule that is not the engine's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.testing import WorkflowEnvironment

from persistence.secret_keys import SecretKeys
from tests.schedule_support import (
    YEARLY,
    Scheduling,
    run_row,
    schedule_trigger,
)
from workers.client import FLOW_RUN
from workers.payload_codec import EncryptionCodec
from workers.schedule_spec import plain_payload
from workers.schedule_sync import ScheduleSync
from workers.temporal_client import connect


async def test_a_flow_with_a_cron_every_minute_gets_a_schedule_whose_runs_record_it(
    sched: Scheduling,
) -> None:
    flow_id = await sched.flow(
        [
            schedule_trigger(
                cron="* * * * *",
                timezone="Europe/Paris",
                inputs={"n": 21},
                overlap="buffer_one",
                catchupWindowSeconds=120,
            )
        ]
    )
    sid = f"flow-{flow_id}"
    report = await sched.sync()
    assert list(report.created) == [sid], report.lines()
    assert not report.problems, report.lines()
    assert "cron '* * * * *' in Europe/Paris" in report.created[sid]

    described = await sched.describe(sid)
    assert described is not None
    spec = described.schedule.spec
    # Temporal keeps a cron as the calendar it means.
    assert spec.time_zone_name == "Europe/Paris"
    [calendar] = spec.calendars
    assert calendar.minute == (ScheduleRange(0, 59),)
    assert calendar.hour == (ScheduleRange(0, 23),)
    policy = described.schedule.policy
    assert policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE
    assert policy.catchup_window == timedelta(seconds=120)
    assert not policy.pause_on_failure
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.id, action.task_queue) == (
        FLOW_RUN,
        sid,
        sched.worker.task_queue,
    )
    [args] = await sched.client.data_converter.decode(list(action.args))
    assert args == {
        "workflow_id": flow_id,
        "inputs": {"n": 21},
        "tenant_id": str(sched.tenant_id),
        "trigger_type": "schedule",
        "trigger_metadata": {"schedule_id": sid},
    }
    memo = (await described.memo())["meta_agent"]
    assert memo["owner"] == "meta-agent-worker"
    assert memo["tenant_id"] == str(sched.tenant_id)
    assert not described.schedule.state.paused
    assert "flow 'sched-" in (described.schedule.state.note or "")
    assert described.info.next_action_times[0] - datetime.now(UTC) <= timedelta(seconds=61)

    [first, second] = (await sched.fire(sid, count=2))[-2:]
    assert first != second
    assert first.startswith(f"{sid}-")
    for workflow_id in (first, second):
        row = await run_row(sched.worker, workflow_id)
        assert row["status"] == "completed", row["error"]
        assert row["trigger_type"] == "schedule"
        assert row["tenant_id"] == sched.tenant_id  # runs as the flow's tenant
        assert row["inputs"] == {"n": 21}
        assert row["trigger_metadata"]["schedule_id"] == sid
        fired = datetime.fromisoformat(row["trigger_metadata"]["scheduled_time"])
        assert abs(fired - row["started_at"]) < timedelta(seconds=30)
    result = await sched.client.get_workflow_handle(first).result()
    assert result["outputs"] == {"doubled": 42}

    again = await sched.sync()
    assert again.unchanged == [sid], again.lines()
    assert not again.changed, again.lines()


async def test_pausing_the_flow_pauses_its_schedule_and_resuming_unpauses_it(
    sched: Scheduling,
) -> None:
    flow_id = await sched.flow([schedule_trigger(cron=YEARLY)])
    sid = f"flow-{flow_id}"
    await sched.sync()

    await sched.set(flow_id, is_paused=True)
    report = await sched.sync()
    assert report.paused == {
        sid: f"flow {await sched.name(flow_id)!r} is paused: resume it before running it"
    }
    described = await sched.describe(sid)
    assert described
    assert described.schedule.state.paused
    assert described.schedule.state.note == f"paused by meta-agent: {report.paused[sid]}"
    # Fired anyway (an operator's trigger): whatever Temporal starts, the run refuses.
    for workflow_id in await sched.fire(sid):
        row = await run_row(sched.worker, workflow_id)
        assert (row["status"], row["error_code"]) == ("failed", "flow_unavailable")
    assert (await sched.sync()).unchanged == [sid]  # already paused, with that note

    await sched.set(flow_id, is_paused=False)
    report = await sched.sync()
    assert list(report.unpaused) == [sid], report.lines()
    described = await sched.describe(sid)
    assert described
    assert not described.schedule.state.paused

    for columns, word in (({"status": "archived"}, "archived"), ({"is_active": False}, "inactive")):
        await sched.set(flow_id, **columns)
        report = await sched.sync()
        assert list(report.paused) == [sid]
        assert f"is {word}:" in report.paused[sid]
        await sched.set(flow_id, status="published", is_active=True)
        assert list((await sched.sync()).unpaused) == [sid]


async def test_a_fire_before_the_sync_sees_the_flow_paused_is_refused_by_the_run(
    sched: Scheduling,
) -> None:
    flow_id = await sched.flow([schedule_trigger(cron=YEARLY, inputs={"n": 1})])
    sid = f"flow-{flow_id}"
    await sched.sync()
    await sched.set(flow_id, is_paused=True)  # no sync since: the schedule still fires
    [workflow_id] = await sched.fire(sid)
    row = await run_row(sched.worker, workflow_id)
    assert (row["status"], row["error_code"]) == ("failed", "flow_unavailable")
    assert "is paused: resume it before running it" in row["error"]
    assert row["trigger_type"] == "schedule"
    assert row["trigger_metadata"]["schedule_id"] == sid
    assert await sched.worker.task_rows(workflow_id) == {}  # no node ran


async def test_changes_to_the_schedule_update_it_and_removing_the_trigger_deletes_it(
    sched: Scheduling,
) -> None:
    flow_id = await sched.flow([schedule_trigger(cron=YEARLY, inputs={"n": 1})])
    sid = f"flow-{flow_id}"
    await sched.sync()
    changed = schedule_trigger(
        cron="30 6 * * 1-5",
        timezone="America/New_York",
        inputs={"n": 2},
        overlap="allow_all",
        catchupWindowSeconds=600,
        pauseOnFailure=True,
    )
    await sched.set(flow_id, triggers=[changed, schedule_trigger(cron="0 12 * * *")])
    report = await sched.sync()
    assert report.updated == {
        sid: ["inputs", "cron", "timezone", "overlap", "catchup window", "pause on failure"]
    }, report.lines()
    assert list(report.created) == [f"{sid}-2"]
    described = await sched.describe(sid)
    assert described is not None
    assert described.schedule.spec.time_zone_name == "America/New_York"
    [calendar] = described.schedule.spec.calendars
    assert (calendar.hour, calendar.minute) == ((ScheduleRange(6),), (ScheduleRange(30),))
    assert calendar.day_of_week == (ScheduleRange(1, 5),)
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.ALLOW_ALL
    assert described.schedule.policy.pause_on_failure
    assert (await sched.sync()).unchanged == [sid, f"{sid}-2"]

    # The second trigger removed: its schedule goes; the flow's row deleted: all go.
    await sched.listed(f"{sid}-2")
    await sched.set(flow_id, triggers=[changed])
    report = await sched.sync()
    assert list(report.deleted) == [f"{sid}-2"], report.lines()
    assert await sched.describe(f"{sid}-2") is None
    column_only = await sched.flow(schedule_cron=YEARLY)
    await sched.sync()
    await sched.listed(sid)
    await sched.listed(f"flow-{column_only}")
    await sched.set(flow_id, triggers=[])
    await sched.set(column_only, schedule_cron=None)
    report = await sched.sync()
    assert sorted(report.deleted) == sorted([sid, f"flow-{column_only}"]), report.lines()
    assert await sched.describe(sid) is None


async def test_a_flow_deleted_loses_its_schedule(sched: Scheduling) -> None:
    flow_id = await sched.flow(schedule_cron=YEARLY, schedule_timezone="Asia/Tokyo")
    sid = f"flow-{flow_id}"
    report = await sched.sync()
    assert "in Asia/Tokyo" in report.created[sid]
    await sched.listed(sid)
    async with sched.sessions() as s, s.begin():
        await s.execute(text("DELETE FROM workflows WHERE id = :i"), {"i": flow_id})
    report = await sched.sync()
    assert list(report.deleted) == [sid]
    assert "no longer has this schedule" in report.deleted[sid]


async def test_schedules_that_are_not_the_engines_are_left_alone(sched: Scheduling) -> None:
    flow_id = await sched.flow([schedule_trigger(cron=YEARLY)])
    spec = ScheduleSpec(cron_expressions=[YEARLY])
    action = ScheduleActionStartWorkflow(
        "SomethingElse", {"x": 1}, id="other", task_queue=sched.worker.task_queue
    )
    memoless, elsewhere = f"flow-{uuid.uuid4()}", f"flow-{uuid.uuid4()}"
    foreign = {
        # Under the flow's own id: the sync must not take it over.
        f"flow-{flow_id}": None,
        # Looks like ours but has no memo.
        memoless: None,
        # The engine's, but of another deployment (task queue) of the same tenant.
        elsewhere: {
            "meta_agent": plain_payload(
                {
                    "owner": "meta-agent-worker",
                    "task_queue": "elsewhere",
                    "tenant_id": str(sched.tenant_id),
                }
            )
        },
        f"nightly-report-{uuid.uuid4().hex[:6]}": None,
    }
    for sid, memo in foreign.items():
        await sched.client.create_schedule(
            sid, Schedule(action=action, spec=spec, state=ScheduleState(note="theirs")), memo=memo
        )
    try:
        for sid in foreign:
            await sched.listed(sid)
        report = await sched.sync()
        assert not report.changed, report.lines()
        [problem] = report.problems
        assert f"the schedule flow-{flow_id} in the namespace is not this engine's" in problem
        for sid in foreign:
            described = await sched.describe(sid)
            assert described is not None
            assert described.schedule.state.note == "theirs"
            assert isinstance(described.schedule.action, ScheduleActionStartWorkflow)
            assert described.schedule.action.workflow == "SomethingElse"
    finally:
        for sid in foreign:
            await sched.client.get_schedule_handle(sid).delete()


async def test_a_cron_temporal_refuses_is_a_problem_and_pauses_the_schedule(
    sched: Scheduling,
) -> None:
    flow_id = await sched.flow([schedule_trigger(cron=YEARLY)])
    sid = f"flow-{flow_id}"
    refused = await sched.flow([schedule_trigger(cron="61 * * * *")])
    report = await sched.sync()
    assert list(report.created) == [sid]
    name = await sched.name(refused)
    assert report.problems == [
        f"flow {name!r} ({refused}, tenant {sched.tenant_name!r}), schedule trigger 1: "
        "Temporal refuses cron '61 * * * *' in time zone 'UTC': Minute is not in range [0-59]"
    ]
    assert await sched.describe(f"flow-{refused}") is None

    # A schedule whose cron turns bad keeps its old settings, paused with the problem.
    await sched.set(flow_id, triggers=[schedule_trigger(cron="0 0 * * * * * *")])
    report = await sched.sync()
    assert "CronString does not have 5-7 fields" in report.problems[0]
    described = await sched.describe(sid)
    assert described
    assert described.schedule.state.paused
    assert "does not have 5-7 fields" in (described.schedule.state.note or "")
    await sched.set(flow_id, triggers=[schedule_trigger(cron=YEARLY, timezone="Mars/Olympus")])
    report = await sched.sync()
    assert "timezone 'Mars/Olympus' is not a time zone" in report.problems[0]
    await sched.set(flow_id, triggers=[schedule_trigger(cron=YEARLY)])
    report = await sched.sync()
    assert list(report.unpaused) == [sid], report.lines()


async def test_a_flow_archived_before_its_first_sync_gets_its_schedule_paused(
    sched: Scheduling,
) -> None:
    flow_id = await sched.flow([schedule_trigger(cron=YEARLY)], status="archived")
    sid = f"flow-{flow_id}"
    report = await sched.sync()
    why = f"flow {await sched.name(flow_id)!r} is archived: restore it before running it"
    assert report.created[sid].endswith(f"(paused: {why})"), report.lines()
    described = await sched.describe(sid)
    assert described is not None
    assert described.schedule.state.paused
    assert described.schedule.state.note == f"paused by meta-agent: {why}"
    assert (await sched.sync()).unchanged == [sid]


async def test_with_sealed_payloads_the_arguments_are_sealed_and_the_memos_plain(
    sched: Scheduling, temporal_env: WorkflowEnvironment
) -> None:
    keys = SecretKeys.generate_entry("sched")
    sealed = await connect(
        temporal_env.client.service_client.config.target_host,
        "default",
        EncryptionCodec(SecretKeys.parse(keys)),
    )
    flow_id = await sched.flow([schedule_trigger(cron=YEARLY, inputs={"card": "4111-marker"})])
    sid = f"flow-{flow_id}"
    sync = ScheduleSync(
        sealed, sched.sessions, task_queue=sched.worker.task_queue, tenant_id=sched.tenant_id
    )
    first = await sync.sync()
    assert first is not None
    assert list(first.created) == [sid]
    described = await sched.describe(sid)  # read without the keys
    assert described is not None
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    [payload] = action.args
    assert isinstance(payload, Payload)
    assert b"4111-marker" not in payload.data  # the inputs are sealed
    assert (await described.memo())["meta_agent"]["flow_id"] == flow_id  # the memo is not
    # Sealing is not deterministic: the sync compares what the payloads say.
    again = await sync.sync()
    assert again is not None
    assert again.unchanged == [sid], again.lines()
