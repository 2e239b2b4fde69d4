"""The worker process: one Temporal worker polling the flow task queue, one DB engine.

Activities are methods of objects that hold the shared engine and HTTP client,
so a node's activity reuses pooled connections instead of opening its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.database_refusals import DatabaseRefusalInterceptor
from persistence.engine import create_engine, session_factory
from persistence.health import DatabaseHealth
from workers.health_server import watching_health
from workers.reconciler import reconciler_plugins
from workers.sandbox_runner import flow_sandbox_runner
from workers.schedule_sync import schedule_sync_plugins
from workers.settings import Settings

log = logging.getLogger("meta_agent.worker")


def workflow_classes() -> Sequence[type]:
    """Every workflow type this worker runs."""
    from workflows.registry import WORKFLOWS

    return WORKFLOWS


def activity_functions(dependencies: Any) -> Sequence[Callable[..., Any]]:
    """Every activity this worker runs, imported only when a worker is built: they pull in docker,
    openai and the like, which nothing else of the process needs.
    """
    from activities.registry import activities_for

    return activities_for(dependencies)


#: Builds a worker's activities from its `Dependencies` (`activities_for` unless told).
ActivitySource = Callable[[Any], Sequence[Callable[..., Any]]]


def build_worker(
    client: Client,
    settings: Settings,
    dependencies: Any,
    activities: ActivitySource = activity_functions,
) -> Worker:
    """The worker of the flow task queue; while it runs, so do the reconciler and the
    schedule sync.

    The reconciler closes the rows of runs that ended without running workflow code
    (terminated, timed out); `RECONCILE_INTERVAL_SECONDS=0` leaves it out. The schedule
    sync keeps the flows' Temporal Schedules in step with their rows;
    `SCHEDULE_SYNC_INTERVAL_SECONDS=0` leaves it out.
    """
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=list(workflow_classes()),
        workflow_runner=flow_sandbox_runner(),
        activities=list(activities(dependencies)),
        max_concurrent_activities=settings.max_concurrent_activities,
        # Cancellation reaches an activity with a heartbeat's answer: send them often enough
        # that cancelling a run aborts its HTTP calls and containers within a couple of seconds.
        max_heartbeat_throttle_interval=timedelta(seconds=2),
        default_heartbeat_throttle_interval=timedelta(seconds=2),
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        plugins=[
            *reconciler_plugins(client, settings, dependencies.sessions),
            *schedule_sync_plugins(client, settings, dependencies.sessions),
        ],
        # Postgres refusing the data itself fails an activity for good instead of for ever.
        interceptors=[DatabaseRefusalInterceptor(dependencies.health)],
        # The SDK's own check of Temporal's 2 MB payload limit fails an oversized workflow task
        # and retries it for ever. One way a caller can cause that: an update over the limit
        # that the server admitted, which the worker cannot even reject (a rejection carries
        # the request back). Left to the server, such an update is refused and the run goes
        # on. The run's own payloads are kept under the limit by FlowRun's size checks.
        disable_payload_error_limit=True,
    )


async def run_worker(
    client: Client,
    settings: Settings,
    stop: asyncio.Event,
    activities: ActivitySource = activity_functions,
) -> None:
    """Run until `stop` is set, then let in-flight tasks finish and close the pool.

    `activities` is for benchmark (d), whose write-back-off worker is this one with its
    database writes left out; every real worker runs `activities_for`.
    """
    from activities.outbound import OutboundHttp, OutboundPolicy
    from activities.registry import Dependencies
    from activities.secrets import TenantSecrets

    engine = create_engine(settings.require_database_url(), pool_size=settings.db_pool_size)
    sessions = session_factory(engine)
    # Each run reads its own tenant's secrets; the worker's SECRET_* only where allowed.
    secrets = TenantSecrets(
        sessions, settings.secret_keys(), environment_tenants=settings.secrets_environment_tenants
    )
    policy = OutboundPolicy.parse(settings.api_allowed_hosts, settings.api_max_redirects)
    health = DatabaseHealth(outage_limit_seconds=settings.database_outage_limit_seconds)
    deps = Dependencies(
        sessions=sessions, http=OutboundHttp(policy=policy), secrets=secrets, health=health
    )
    await deps.sweep_docker_orphans()
    try:
        worker = build_worker(client, settings, deps, activities)
        # The database is probed from the start: if it is down when the worker starts, it
        # is waited for, not a reason to exit (and be restarted in a loop).
        async with (
            worker,
            watching_health(health, sessions, client, settings.health_port, settings.health_host),
        ):
            log.info(
                "worker polling task queue %r in namespace %r",
                settings.temporal_task_queue,
                client.namespace,
            )
            await stop.wait()
    finally:
        await deps.aclose()
        await engine.dispose()
