"""`meta-agent dev`: the whole stack on one machine with nothing configured.

Starts what is not configured (embedded Postgres unless DATABASE_URL is set,
the Temporal dev server with its UI unless TEMPORAL_ADDRESS is set), migrates,
runs the worker, and on Ctrl-C stops everything it started, in reverse order.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from temporalio.client import Client

from persistence.engine import create_engine, session_factory, sync_url
from persistence.migrate import upgrade_async
from workers import telemetry
from workers.asgi import serving
from workers.demo_people import DEMO_TENANT, seed_demo_people
from workers.embedded_postgres import EmbeddedPostgres
from workers.examples import import_examples, start_sample_runs
from workers.sample_service import start_sample_service
from workers.settings import Settings, read_dev_state
from workers.signals import stop_event_on_signals
from workers.temporal_client import connect, ensure_search_attributes
from workers.temporal_dev import TemporalDevServer
from workers.trace_file import TRACES_FILE_NAME
from workers.worker import run_worker

if TYPE_CHECKING:
    from workers.payload_codec import EncryptionCodec

log = logging.getLogger("meta_agent.dev")
DEV_DATABASE = "meta_agent"


class DevStackError(RuntimeError):
    """The dev stack cannot start; the message says what to do (e.g. another one runs here)."""


def _refuse_second_stack(state_file: Path) -> None:
    state = read_dev_state(state_file)
    if not state:
        return
    pid = state.get("pid")
    if isinstance(pid, int) and _alive(pid):
        raise DevStackError(
            f"a dev stack is already running from {state_file.parent} (pid {pid}); "
            "stop it first or set META_AGENT_HOME to another folder"
        )
    state_file.unlink(missing_ok=True)  # left by a stack that was killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_secrets_key(path: Path) -> None:
    """The dev stack's SECRETS_KEYS, made once and kept, so stored secrets survive restarts.

    The worker and the CLI read it while the stack runs (Settings.secret_keys).
    """
    from persistence.secret_keys import SecretKeys

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        out.write(SecretKeys.generate_entry("dev") + "\n")
    log.info("generated the dev stack's secrets key in %s", path)


async def run_dev(settings: Settings) -> None:
    """The stack `meta-agent dev` runs until Ctrl-C; one per META_AGENT_HOME.

    Its state file there tells the other commands (and the CLI's settings) where its
    database, Temporal and secrets key are, and is removed when it stops.
    """
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    state_file = settings.dev_state_file
    _refuse_second_stack(state_file)
    if settings.secrets_keys is None:
        _ensure_secrets_key(settings.dev_secrets_key_file)
    stop = stop_event_on_signals()
    # Traces go to a file of the stack's own, drawn by `meta-agent traces RUN` (no server);
    # OTEL_* variables add an OTLP or console exporter as for any worker.
    traces_file = settings.traces_file or str(home / TRACES_FILE_NAME)
    telemetry.configure(
        metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host,
        traces_file=traces_file,
    )

    with ExitStack() as started:
        database_url = settings.database_url
        if not database_url:
            pg = EmbeddedPostgres(home / "pgdata", port=settings.dev_postgres_port)
            print(f"starting embedded Postgres on 127.0.0.1:{pg.port} (data in {pg.data_dir}) ...")
            pg.start()
            started.callback(pg.stop)
            pg.create_database(DEV_DATABASE)
            database_url = pg.url(DEV_DATABASE)

        ui_url = None
        codec = settings.payload_codec()
        # With PAYLOAD_KEYS, the UI decodes through a codec server of the stack's own.
        codec_url = f"http://localhost:{settings.dev_codec_port}" if codec else None
        address = settings.temporal_address
        if not address:
            temporal = TemporalDevServer(
                home,
                port=settings.dev_temporal_port,
                ui_port=settings.dev_temporal_ui_port,
                namespace=settings.temporal_namespace,
                ui_codec_endpoint=codec_url,
            )
            print(f"starting Temporal dev server on {temporal.address} ...")
            temporal.start()
            started.callback(temporal.stop)
            address, ui_url = temporal.address, temporal.ui_url

        await upgrade_async(database_url)
        client = await connect(address, settings.temporal_namespace, codec)
        await ensure_search_attributes(client)

        state_file.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "database_url": database_url,
                    "temporal_address": address,
                    "ui_url": ui_url,
                    "task_queue": settings.temporal_task_queue,
                    "traces_file": traces_file,
                }
            )
        )
        started.callback(state_file.unlink, missing_ok=True)

        sample_lines, allowed = "", settings.api_allowed_hosts
        if settings.dev_examples:
            sample_lines, sample_host = await _examples(
                client, settings, database_url, started, ui_url
            )
            # The example flows call the sample API on loopback: exactly that port is let
            # through, so flows still cannot reach Postgres, Temporal or its UI.
            allowed = ",".join(h for h in (allowed, sample_host) if h)
        worker_settings = settings.model_copy(
            update={
                "database_url": database_url,
                "temporal_address": address,
                "api_allowed_hosts": allowed,
            }
        )
        postgres = sync_url(database_url).render_as_string(hide_password=True)
        try:
            async with (
                _codec_server(codec, settings.dev_codec_port, ui_url),
                _api(worker_settings, client) as api_url,
            ):
                print(
                    "\nmeta-agent dev stack is up\n"
                    f"  Postgres     {postgres}\n"
                    f"  Temporal     {address} (namespace {settings.temporal_namespace})\n"
                    f"  Temporal UI  {ui_url or '(not started here)'}\n"
                    f"{f'  codec server {codec_url} (PAYLOAD_KEYS)' + chr(10) if codec_url else ''}"
                    f"  task queue   {settings.temporal_task_queue}\n"
                    f"  hooks API    {api_url} (POST /hooks/ID, POST /events/NAME, GET /runs/ID)\n"
                    f"  traces       meta-agent traces <run id>   (spans in {traces_file})\n"
                    f"{_metrics_line(settings)}"
                    f"{_schedules_line(settings)}"
                    f"{sample_lines}"
                    "Press Ctrl-C to stop everything.\n",
                    flush=True,
                )
                await run_worker(client, worker_settings, stop)
        finally:
            telemetry.current().shutdown()
        print("stopping ...", flush=True)


def _schedules_line(settings: Settings) -> str:
    """The banner's word on scheduled flows: the stack's worker syncs them like any worker."""
    every = settings.schedule_sync_interval_seconds
    if every <= 0:
        return "  schedules    not synced (SCHEDULE_SYNC_INTERVAL_SECONDS=0)\n"
    return f"  schedules    flows' crons synced every {every:g}s   (meta-agent schedules list)\n"


@asynccontextmanager
async def _api(settings: Settings, client: Client) -> AsyncIterator[str]:
    """The webhook and event API (API_HOST:API_PORT) beside the worker; yields its URL."""
    from workers.api.serve import serving_api

    engine = create_engine(settings.require_database_url(), pool_size=2)
    try:
        async with serving_api(settings, client, session_factory(engine)) as url:
            yield url
    finally:
        await engine.dispose()


def _metrics_line(settings: Settings) -> str:
    if settings.metrics_port is None:
        return ""
    return f"  metrics      http://{settings.metrics_host}:{settings.metrics_port}/metrics\n"


@asynccontextmanager
async def _codec_server(
    codec: EncryptionCodec | None, port: int, ui_url: str | None
) -> AsyncIterator[None]:
    """The stack's codec server while the block runs, for the UI's origin (none: no codec)."""
    if codec is None:
        yield
        return
    from workers.codec_server import codec_app

    origins = [ui_url or "http://localhost:8233"]
    async with serving(codec_app(codec, origins), "127.0.0.1", port):
        yield


async def _examples(
    client: Client, settings: Settings, database_url: str, started: ExitStack, ui_url: str | None
) -> tuple[str, str]:
    """Import the examples, seed the demo tenant and its reviewers, serve the examples' HTTP
    peer, start sample runs.

    Returns the banner lines and the sample API's host:port.
    """
    server, api_base = start_sample_service(settings.dev_sample_port)
    started.callback(server.shutdown)
    engine = create_engine(database_url, pool_size=1)
    try:
        sessions = session_factory(engine)
        await import_examples(sessions)
        demo = await seed_demo_people(sessions)
        run_ids = await start_sample_runs(client, settings.temporal_task_queue, sessions, api_base)
    finally:
        await engine.dispose()
    lines = [f"  sample API   {api_base} (the example flows call it)", *demo.banner_lines()]
    lines.append("  sample runs")
    for run_id in run_ids:
        where = (
            f"{ui_url}/namespaces/{settings.temporal_namespace}/workflows/{run_id}"
            if ui_url
            else run_id
        )
        lines.append(f"    {where}")
    lines.append(
        "  try: meta-agent run tour-of-nodes --wait --input "
        f'\'{{"api_base": "{api_base}", "order_id": 7}}\''
    )
    lines.append(
        f"  a review: meta-agent run order-approval --tenant {DEMO_TENANT} --wait --input "
        f'\'{{"api_base": "{api_base}", "order_id": 7}}\''
    )
    return "\n".join(lines) + "\n", urlsplit(api_base).netloc
