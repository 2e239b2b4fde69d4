"""`wait` nodes: for a duration, until a time, or for an `event` signal (with a timeout)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow

from workflows import patches
from workflows.failures import NodeError
from workflows.nodes.lasting import running_row, sleep_or_drain

with workflow.unsafe.imports_passed_through():
    from flow_language import rendered_config
    from flow_language.definition import ERROR_HANDLE, Node
    from workflows import search_attributes as sa
    from workflows.contract import error_codes as codes

if TYPE_CHECKING:
    from workflows.run_state import RunState
    from workflows.scheduler import NodeResult, Scope


async def run_wait(scope: Scope, node: Node, task_id: str) -> NodeResult:
    """Wait `config.seconds`, until `config.until`, or for an `event`; the deadline is kept across
    continue-as-new, so a continued run does not wait afresh.
    """
    run = scope.run
    cfg = scope.render(node, node.data.config, "config")
    if run.records_every_end:
        rendered_config.check_wait(cfg)
    if "event" in cfg:
        return await _wait_for_event(scope, node, task_id, cfg)
    now = workflow.now()
    if "until" in cfg:
        try:
            deadline = datetime.fromisoformat(str(cfg["until"]))
        except ValueError:
            raise NodeError(
                f"config.until: {cfg['until']!r} is not an ISO 8601 timestamp"
            ) from None
        if deadline.tzinfo is None:
            raise NodeError(f"config.until: {cfg['until']!r} needs a time zone (e.g. Z)")
    else:
        seconds = cfg.get("seconds")
        if not isinstance(seconds, int | float) or seconds < 0:
            raise NodeError(f"config.seconds: {seconds!r} is not a number of seconds")
        deadline = run.wait_deadlines.setdefault(task_id, now + timedelta(seconds=seconds))
    running_row(scope, node, task_id, now)
    while (remaining := (deadline - workflow.now()).total_seconds()) > 0:
        await sleep_or_drain(
            scope, remaining, summary=f"{node.label}: until {deadline.isoformat()}"
        )
    run.wait_deadlines.pop(task_id, None)
    return {"waited_until": deadline.isoformat()}, None


def wait_handles(scope: Scope, node: Node, output: Any) -> list[str | None] | None:
    """A reused wait for an event leaves by `timeout` if it timed out, else as any wait."""
    if not isinstance(output, dict) or "timed_out" not in output:
        return None
    if output["timed_out"] is True:
        return ["timeout"]
    return scope.handles_except(node, "timeout", ERROR_HANDLE)


async def _wait_for_event(
    scope: Scope, node: Node, task_id: str, cfg: dict[str, Any]
) -> NodeResult:
    """The first `event` signal of that name (kept if it came earlier), or the timeout:
    leaves by `timeout` if the node has that handle, else fails.
    """
    run = scope.run
    now = workflow.now()
    name = str(cfg["event"])
    deadline = None
    if cfg.get("timeoutSeconds") is not None:
        deadline = run.wait_deadlines.setdefault(
            task_id, now + timedelta(seconds=float(cfg["timeoutSeconds"]))
        )
    running_row(scope, node, task_id, now)
    listed = False  # whether the run's WaitingEvents names this wait's event
    try:
        while True:
            message = run.take_event(name)
            if message is not None:
                run.wait_deadlines.pop(task_id, None)
                handles = scope.handles_except(node, "timeout", ERROR_HANDLE)
                return {"event": name, "payload": message.payload, "timed_out": False}, handles
            remaining = None if deadline is None else (deadline - workflow.now()).total_seconds()
            if remaining is not None and remaining <= 0:
                run.wait_deadlines.pop(task_id, None)
                if "timeout" in scope.defn.out_handles(node.id):
                    return {"event": name, "payload": None, "timed_out": True}, ["timeout"]
                raise NodeError(
                    f"no {name!r} event within {cfg['timeoutSeconds']} seconds", codes.TIMEOUT
                )
            if not listed:  # only a wait that does wait is listed (an event already here: none)
                _list_waiting(run, name, True)
                listed = True
            await sleep_or_drain(
                scope,
                remaining,
                wake=lambda: any(m.name == name for m in run.events),
                summary=f"{node.label}: no {name!r} event by then",
            )
    finally:
        if listed:  # however the wait ends: its event, a timeout, a cancellation, a drain
            _list_waiting(run, name, False)


def _list_waiting(run: RunState, name: str, waiting: bool) -> None:
    """A wait starts (or stops) waiting on `name`: in runs since `WAITING_EVENTS_ATTRIBUTE`,
    the `WaitingEvents` search attribute lists the names waited on, upserted only when that
    set changes (two waits on one name: one upsert), so emitters find the run by a query.
    """
    if not (run.params.search_attributes and patches.patched(patches.WAITING_EVENTS_ATTRIBUTE)):
        return
    before = set(run.waiting_events)
    count = run.waiting_events.get(name, 0) + (1 if waiting else -1)
    if count > 0:
        run.waiting_events[name] = count
    else:
        run.waiting_events.pop(name, None)
    if set(run.waiting_events) == before:
        return
    names = sorted(sa.keyword(n) or "" for n in run.waiting_events)
    workflow.upsert_search_attributes(
        [sa.WAITING_EVENTS.value_set(names) if names else sa.WAITING_EVENTS.value_unset()]
    )
