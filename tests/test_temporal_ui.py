"""What the Temporal UI shows of a run, read through the same APIs the UI reads.

The summary and details the run was started with, its current details (the
`__temporal_workflow_metadata` query the UI sends), the labels of its activities
and timers in the event history, its `FlowName` search attribute, and its input
as the caller sent it.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType

from flow_language.drawing import edge, node
from flow_language.review_rules import HitlTaskState
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import People, decide, fetched_then_reviewed, open_task, wait_for
from tests.http_peer import HttpPeer, Reply
from workers.client import send_event, start_run
from workers.client.starting import original_request
from workers.json_converter import DATA_CONVERTER
from workflows import search_attributes
from workflows.contract import FlowRunInput
from workflows.run_details import FlowIdentity, describe


async def _current_details(handle: Any) -> str:
    metadata = await handle.query("__temporal_workflow_metadata")
    return str(metadata.current_details)


async def test_a_parked_run_reads_as_its_flow_in_the_temporal_ui(
    flow_worker: FlowWorker, people: People, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/orders/5", Reply(200, {"id": 5}))
    definition = fetched_then_reviewed(f"{http_peer.base}/orders/5", "Fetch order", "Cool down")
    name = f"ui-flow-{uuid.uuid4().hex[:6]}"
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=name, definition=definition, tenant_id=uuid.UUID(people.tenant)
        )
    params = FlowRunInput(
        workflow_id=str(stored.workflow_id),
        inputs={"what": "order 5"},
        tenant_id=people.tenant,
        triggered_by=people.outsider,
    )
    run_id = f"ui-{uuid.uuid4().hex[:10]}"
    handle = await start_run(
        flow_worker.client, flow_worker.task_queue, params, run_id=run_id, flow_name=name
    )
    flow_worker.started.append(handle.id)
    (task,) = await open_task(handle)

    # The static summary and details name the flow; the current details what it waits for.
    description = await handle.describe()
    assert await description.static_summary() == name
    details = await description.static_details()
    assert details is not None
    assert people.tenant in details
    assert people.outsider in details
    current = await wait_for(lambda: _text_with(handle, "meta-agent hitl decide"), seconds=10)
    plain = current.replace("\\", "")  # Markdown escapes of untrusted text
    assert f"**{name}** v{stored.version}" in plain
    assert "waiting for review **Review order 5**" in plain
    assert "role `finance`" in current
    assert f"meta-agent hitl decide {task['id']} --approve" in current

    # Found by the flow's name.
    async def listed() -> list[str]:
        query = f'FlowName = "{name}"'
        return [w.id async for w in flow_worker.client.list_workflows(query)]

    assert await wait_for(listed) == [run_id]  # visibility lags a little behind the run

    await decide(handle, task["id"], {"approved": True}, people.finance)
    await handle.result()
    assert "status **completed**" in await _current_details(handle)

    history = await handle.fetch_history()
    events = list(history.events)
    summaries = {
        DATA_CONVERTER.payload_converter.from_payload(e.user_metadata.summary, str)
        for e in events
        if e.HasField("user_metadata") and e.user_metadata.HasField("summary")
    }
    assert "Fetch order" in summaries
    assert any(s.startswith("Cool down: until") for s in summaries)
    # The input is what the caller sent: no field the caller left unset.
    started = events[0]
    assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    (argument,) = [
        DATA_CONVERTER.payload_converter.from_payload(p, dict)
        for p in started.workflow_execution_started_event_attributes.input.payloads
    ]
    assert set(argument) == {"workflow_id", "inputs", "tenant_id", "triggered_by"}


async def _text_with(handle: Any, needle: str) -> str | None:
    text = await _current_details(handle)
    return text if needle in text else None


async def test_a_run_continued_as_new_still_shows_the_callers_request_as_its_input(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    http_peer.route("GET", "/n", Reply(200, {"ok": True}))
    definition = {
        "nodes": [
            node("start", "start"),
            node("busy", "loop", {"items": "{{ range(40) | list }}", "maxConcurrency": 10}),
            {**node("call", "api", {"url": f"{http_peer.base}/n"}), "parentId": "busy"},
        ],
        "edges": [edge("start", "busy")],
    }
    handle = await flow_worker.start(definition, {"note": "as sent"}, history_limit=100)
    await handle.result()
    latest = flow_worker.client.get_workflow_handle(handle.id)  # the chain's last run
    started = None
    async for event in latest.fetch_history_events(page_size=1):
        started = event.workflow_execution_started_event_attributes
        break
    assert started is not None
    assert started.continued_execution_run_id  # this run was continued as new
    request, checkpoint = [
        DATA_CONVERTER.payload_converter.from_payload(p, dict) for p in started.input.payloads
    ]
    assert request == {
        "definition": definition,
        "inputs": {"note": "as sent"},
        "history_limit": 100,
    }
    assert checkpoint["continued"] >= 1
    assert checkpoint["run_row_id"]
    # A retry reads the request back from there, checkpoint left out.
    assert (await original_request(flow_worker.client, handle.id)).request.inputs == {
        "note": "as sent"
    }


async def test_the_details_say_which_node_runs_and_which_event_it_waits_for(
    flow_worker: FlowWorker,
) -> None:
    definition = {
        "nodes": [
            node("start", "start"),
            node("hold", "wait", {"event": "go", "timeoutSeconds": 600}, label="Await go"),
        ],
        "edges": [edge("start", "hold")],
    }
    handle = await flow_worker.start(definition)
    current = await wait_for(lambda: _text_with(handle, "waits for event"))
    assert current is not None
    assert "running: `Await go` (wait)" in current
    assert "`Await go` waits for event `go` (until " in current
    await send_event(flow_worker.client, handle.id, "go")
    await handle.result()
    assert "status **completed**" in await _current_details(handle)


def test_untrusted_text_in_the_details_cannot_forge_markdown() -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    forged = "x [click](javascript:alert(1)) <img src=y> **bold**\n- decide: `forged`"
    task = HitlTaskState(
        id="t-1",
        task_id="review",
        node_id="review",
        title=forged,
        decision_type="approval",
        assignee_role="fin`ance",
        created_at=now,
    )
    text = describe(
        flow=FlowIdentity(name="**flow**"),
        status="waiting_hitl",
        paused=False,
        definition=None,
        task_view={},
        reviews={"t-1": task},
        wait_deadlines={},
    )
    lines = text.splitlines()
    assert lines[0].startswith("**\\*\\*flow\\*\\***")
    review = next(line for line in lines if "waiting for review" in line)
    title = review.split("waiting for review **", 1)[1].rsplit("** (role", 1)[0]
    assert "javascript:alert" in title  # shown, as text:
    assert re.search(r"(?<!\\)[\[\]()<>`*]", title) is None  # every such mark escaped
    assert "\n- decide: `forged`" not in text  # the title stays on its own line
    assert "role `fin'ance`" in review  # a backtick cannot close the code span early


async def test_a_flow_name_too_long_for_a_search_attribute_is_cut_not_fatal(
    flow_worker: FlowWorker,
) -> None:
    name = "N" * 5000
    definition = {"name": name, "nodes": [node("start", "start")], "edges": []}
    result, run_id = await flow_worker.run(definition)
    assert result.status == "completed"
    description = await flow_worker.client.get_workflow_handle(run_id).describe()
    stored = description.typed_search_attributes.get(search_attributes.FLOW_NAME)
    assert stored == name[: search_attributes.KEYWORD_BYTES]
    assert search_attributes.keyword("é" * 600) == "é" * 500  # whole characters only


async def test_a_parents_details_point_to_the_sub_flow_that_waits(
    flow_worker: FlowWorker,
) -> None:
    child = {
        "nodes": [node("start", "start"), node("hold", "wait", {"event": "go"})],
        "edges": [edge("start", "hold")],
    }
    async with flow_worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=f"held-{uuid.uuid4().hex[:6]}", definition=child
        )
    parent = {
        "nodes": [
            node("start", "start"),
            node("sub", "workflow", {"workflowId": str(stored.workflow_id)}, label="Run child"),
        ],
        "edges": [edge("start", "sub")],
    }
    handle = await flow_worker.start(parent)
    current = await wait_for(lambda: _text_with(handle, "runs the sub-flow"))
    assert current is not None
    assert f"`Run child` runs the sub-flow `{handle.id}/sub`" in current
    child_handle = flow_worker.client.get_workflow_handle(f"{handle.id}/sub")
    assert await wait_for(lambda: _text_with(child_handle, "waits for event `go`"))
    await send_event(flow_worker.client, child_handle.id, "go")
    await handle.result()
