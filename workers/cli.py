"""`meta-agent`: the worker's command line.

Each sub-command validates the environment first, so a bad setting stops it
with one clear message instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from workers.logs import configure_logging
from workers.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from workers.worker import ActivitySource

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int | None]]


async def _cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from workers.dev import run_dev

    await run_dev(settings)
    return 0


async def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    return await serve_worker(settings, processes=args.processes, register=not args.no_register)


async def serve_worker(
    settings: Settings,
    *,
    processes: int = 1,
    register: bool = True,
    activities: ActivitySource | None = None,
) -> int:
    """`meta-agent worker`: telemetry, a client that waits for Temporal, then the worker (or
    `processes` of them, supervised) until a signal stops it.

    `activities` replaces `activities_for` in a single process: benchmark (d)'s
    write-back-off worker starts here, so it starts as every real worker does.
    """
    from workers import telemetry
    from workers.signals import stop_event_on_signals
    from workers.temporal_client import connect_patiently, ensure_search_attributes
    from workers.worker import activity_functions, run_worker

    settings.require_database_url()
    cores = os.cpu_count() or 1
    if processes > cores:
        logging.getLogger("meta_agent.worker").warning(
            "%d worker processes on %d cores: beyond one per core they only share the cores",
            processes,
            cores,
        )
    stop = stop_event_on_signals()
    if processes > 1:
        # Each child serves its own endpoints (the supervisor gives each its port).
        telemetry.configure()
    else:
        telemetry.configure(
            metrics_port=settings.metrics_port,
            metrics_host=settings.metrics_host,
            traces_file=settings.traces_file,
        )
    client = await connect_patiently(
        settings.effective_temporal_address(),
        settings.temporal_namespace,
        settings.payload_codec(),
        stop,
    )
    if client is None:
        return 0  # stopped before Temporal answered
    if register:
        added = await ensure_search_attributes(client)
        if added:
            print(f"registered search attributes: {', '.join(added)}")
    if processes > 1:
        from workers.supervisor import supervise

        return await supervise(processes, stop)
    try:
        await run_worker(client, settings, stop, activities or activity_functions)
    finally:
        telemetry.current().shutdown()
    return 0


async def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from persistence.migrate import current_revision, upgrade_async

    url = settings.require_database_url()
    before = await current_revision(url)
    await upgrade_async(url, args.revision)
    after = await current_revision(url)
    if before == after:
        print(f"database already at revision {after}; nothing to do")
    else:
        print(f"database migrated from {before or 'empty'} to revision {after}")
    return 0


def _positive(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The `meta-agent` parser; each sub-command sets the `handler` that `main` runs."""
    parser = argparse.ArgumentParser(
        prog="meta-agent",
        description="Runs React Flow agent workflows as durable Temporal executions.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser(
        "dev",
        help="start Postgres, Temporal (with UI) and the worker locally",
        description="Starts an embedded Postgres (unless DATABASE_URL is set), the Temporal dev "
        "server with its web UI (unless TEMPORAL_ADDRESS is set), migrates the schema and runs "
        "the worker. Ctrl-C stops everything.",
    )
    dev.set_defaults(handler=_cmd_dev)

    worker = sub.add_parser("worker", help="run the worker only (production)")
    worker.add_argument(
        "--no-register",
        action="store_true",
        help="do not register missing search attributes on start",
    )
    worker.add_argument(
        "--processes",
        type=_positive,
        default=1,
        metavar="N",
        help="run N worker processes on this machine (one per core), restarted if one dies",
    )
    worker.set_defaults(handler=_cmd_worker)

    migrate = sub.add_parser("migrate", help="apply database migrations (safe to repeat)")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.set_defaults(handler=_cmd_migrate)

    from workers import (
        cli_codec,
        cli_flows,
        cli_hitl,
        cli_hooks,
        cli_runs,
        cli_schedules,
        cli_secrets,
        cli_traces,
        cli_users,
    )

    cli_codec.add_commands(sub)
    cli_flows.add_commands(sub)
    cli_hitl.add_commands(sub)
    cli_hooks.add_commands(sub)
    cli_runs.add_commands(sub)
    cli_schedules.add_commands(sub)
    cli_secrets.add_commands(sub)
    cli_traces.add_commands(sub)
    cli_users.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """One command, run to its exit code: 2 for a bad setting, 1 for a known error, 130 on Ctrl-C.

    A known error (`known_error`) is printed as one line; anything else keeps its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, os.environ.get("LOG_FORMAT"))
    try:
        settings = load_settings()
        handler: Handler = args.handler
        return asyncio.run(handler(args, settings)) or 0
    except SettingsError as exc:
        print(f"meta-agent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        known = known_error(exc)
        if known is None:
            raise
        print(f"meta-agent: {known}", file=sys.stderr)
        return 1


def known_error(exc: BaseException) -> str | None:
    """Errors whose message is enough for a person (an unreachable Temporal or database, a
    name not found), as one line; None: anything else keeps its traceback.
    """
    from temporalio.service import RPCError, RPCStatusCode

    from persistence.queries import NotFoundError
    from workers.dev import DevStackError
    from workers.embedded_postgres import EmbeddedPostgresError
    from workers.temporal_dev import TemporalDevServerError

    if isinstance(
        exc, NotFoundError | DevStackError | EmbeddedPostgresError | TemporalDevServerError
    ):
        return str(exc)
    if isinstance(exc, OSError) and "Connect call failed" in str(exc):
        return f"cannot reach the database: {exc}"
    if isinstance(exc, RPCError):
        if exc.status == RPCStatusCode.NOT_FOUND:
            return f"not found in Temporal: {exc}"
        if exc.status not in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return f"Temporal refused the request: {exc}"
        return f"cannot reach Temporal: {exc}"
    if "Failed client connect" in str(exc):
        return f"cannot reach Temporal: {exc}"
    return None


def entry_point() -> NoReturn:
    """The `meta-agent` executable: `main()`, then exit without interpreter teardown.

    temporalio's Rust core keeps Tokio threads that can still call into Python
    while the interpreter finalises, and about one short-lived client process in
    sixty then aborts or segfaults after its work is done (temporalio/sdk-python#300;
    measured here: 5 of 300 plain exits, 0 of 300 with this exit). So the output
    is flushed, logging shut down, and the process leaves with `os._exit`.
    Nothing in this package relies on `atexit`.
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        code = _exit_code(exc)
    except BrokenPipeError:
        # The reader left (`meta-agent runs list | head`): what it read is all it wanted.
        code = 0
    except BaseException:
        traceback.print_exc()
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe wants nothing more
            stream.flush()
    os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter would have made of `exc` at exit."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    entry_point()
