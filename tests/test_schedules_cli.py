"""`meta-agent schedules sync|list`, the worker's own periodic sync, and a real cron minute.

The CLI prints what a sync did (a problem plainly, naming the flow, and exit 1); the worker
syncs by itself every SCHEDULE_SYNC_INTERVAL_SECONDS and a problem does not stop it; and
one test waits for Temporal to fire a schedule on its own.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from tests.schedule_support import (
    YEARLY,
    Scheduling,
    eventually,
    run_row,
    schedule_trigger,
)
from tests.test_cli import _env, ameta_agent
from workers.schedule_sync import schedule_sync_plugins
from workers.settings import Settings
from workers.worker import build_worker


async def test_schedules_sync_and_list_print_what_they_did_and_what_there_is(
    sched: Scheduling, database_url: str, temporal_env: WorkflowEnvironment
) -> None:
    env = _env(database_url, temporal_env, sched.worker.task_queue)
    good = await sched.flow([schedule_trigger(cron=YEARLY, timezone="Europe/Paris")])
    zone = await sched.flow([schedule_trigger(cron=YEARLY, timezone="Mars/Olympus")])
    cron = await sched.flow(schedule_cron="*/0 * * * *")
    out = await ameta_agent("schedules", "sync", "--tenant", sched.tenant_name, env=env)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"created   flow-{good}  flow 'sched-")
    assert lines[0].endswith("cron '0 0 1 1 *' in Europe/Paris")
    [bad_zone] = [line for line in lines if zone in line]
    assert bad_zone.startswith("problem   flow 'sched-")
    assert bad_zone.endswith(
        f"({zone}, tenant {sched.tenant_name!r}), schedule trigger 1: timezone "
        "'Mars/Olympus' is not a time zone: give an IANA name such as 'Europe/Paris'"
    )
    [bad_cron] = [line for line in lines if cron in line]
    assert ", schedule_cron: Temporal refuses cron '*/0 * * * *' in time zone 'UTC'" in bad_cron
    assert lines[-1] == "0 schedule(s) already in sync"
    assert out.stderr == ""

    await sched.listed(f"flow-{good}")
    listed = await ameta_agent("schedules", "list", "--tenant", sched.tenant_name, env=env)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == [
        "SCHEDULE",
        "FLOW",
        "TENANT",
        "CRON",
        "TIME",
        "ZONE",
        "NEXT",
        "RUN",
        "STATE",
    ]
    assert row.startswith(f"flow-{good}  sched-")
    assert sched.tenant_name in row
    assert "0 0 1 1 *  Europe/Paris" in row
    assert row.endswith("active")
    assert "-12-31T23:00:00Z" in row  # the first of January at midnight, Paris time

    await sched.set(good, is_paused=True)
    out = await ameta_agent("schedules", "sync", "--tenant", sched.tenant_name, env=env)
    assert f"paused    flow-{good}  flow 'sched-" in out.stdout
    listed = await ameta_agent("schedules", "list", "--tenant", sched.tenant_name, env=env)
    assert listed.stdout.splitlines()[1].endswith(
        f"paused (paused by meta-agent: flow {await sched.name(good)!r} is paused: resume it "
        "before running it)"
    )
    other = await ameta_agent("schedules", "list", "--tenant", str(uuid.uuid4()), env=env)
    assert other.returncode == 1
    assert "no tenant" in other.stderr


async def test_the_worker_syncs_schedules_by_itself_and_a_problem_does_not_stop_it(
    sched: Scheduling, temporal_env: WorkflowEnvironment
) -> None:
    off = Settings(schedule_sync_interval_seconds=0)
    assert schedule_sync_plugins(sched.client, off, sched.sessions) == []
    bad = await sched.flow(schedule_cron="not a cron")
    flow_id = await sched.flow([schedule_trigger(cron=YEARLY)])
    sid = f"flow-{flow_id}"
    queue = f"sync-{uuid.uuid4().hex[:8]}"
    settings = Settings(temporal_task_queue=queue, schedule_sync_interval_seconds=1)
    deps = Dependencies(sessions=sched.sessions)
    try:
        async with build_worker(temporal_env.client, settings, deps):

            async def made() -> bool:
                described = await sched.describe(sid)
                return described is not None and not described.schedule.state.paused

            await eventually(made, what=f"the worker to create {sid}")
            await sched.set(flow_id, is_paused=True)

            async def paused() -> bool:
                described = await sched.describe(sid)
                return described is not None and described.schedule.state.paused

            await eventually(paused, what=f"the worker to pause {sid}")
            assert await sched.describe(f"flow-{bad}") is None
    finally:
        await deps.aclose()


@pytest.mark.slow
async def test_a_schedule_fires_by_itself_at_the_next_minute(sched: Scheduling) -> None:
    flow_id = await sched.flow([schedule_trigger(cron="* * * * *", inputs={"n": 5})])
    sid = f"flow-{flow_id}"
    await sched.sync()
    [workflow_id] = (await sched.started_by(sid, 1, within=75))[:1]
    row = await run_row(sched.worker, workflow_id)
    assert row["status"] == "completed", row["error"]
    assert row["trigger_type"] == "schedule"
    fired = datetime.fromisoformat(row["trigger_metadata"]["scheduled_time"])
    assert fired.second == 0  # on the minute, as the cron says
    assert timedelta(0) <= row["started_at"] - fired < timedelta(seconds=30)
    await sched.set(flow_id, triggers=[])  # no second fire while the test ends
    await sched.listed(sid)
    assert list((await sched.sync()).deleted) == [sid]
