"""Generated decisions against runs parked on reviews (hypothesis): nothing wedges a run.

Each example sends one generated payload (NULs, lone surrogates, huge strings, deep
nesting, wrong types, unknown keys, and well-formed decisions too) as the
`hitl_decision` signal or the `submit_hitl_decision` update to a run parked on four
reviews, whose inputs are generated as well. Every payload must be refused with a
reason (the update's error, or an entry of `status.rejected_decisions`) or recorded
(a `hitl_decisions` row), and the run must answer its `status` query within five
seconds throughout. Runs are used for a few seconds, then left to end by their
deadline; the fixture waits for that and the run invariant is checked for each.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.service import RPCError

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.hitl_support import People
from tests.invariant import assert_run_tells_the_truth
from workers.client import HITL_DECISION_SIGNAL, STATUS_QUERY, SUBMIT_HITL_DECISION_UPDATE

settings.register_profile(
    "decisions-ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "decisions-large",
    parent=settings.get_profile("decisions-ci"),
    max_examples=1000,
    derandomize=False,
)
PROFILE = settings.get_profile(
    "decisions-large" if os.environ.get("HYPOTHESIS_PROFILE") == "large" else "decisions-ci"
)

#: Seconds a run waits for decisions before its reviews expire; it takes payloads for
#: the first USE_SECONDS of them.
DEADLINE_SECONDS = 12
USE_SECONDS = 6
QUERY_SECONDS = 5.0

# -- payloads ---------------------------------------------------------------------------------

_ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\u0000", "\ud800", "\udfff", "\u2028", "\\", '"', "{", "}"]),
    ),
    max_size=30,
)
_HUGE_TEXT = st.builds(
    lambda n, c: c * n, st.integers(100_000, 700_000), st.sampled_from("x\u0000é")
)
_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)
)
_JSON = st.recursive(
    st.one_of(_LEAF, _ODD_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_ODD_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def _nested(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"k": leaf}
    return leaf


_DEEP = st.builds(_nested, st.integers(50, 400), _ODD_TEXT)
_ANY = st.one_of(_JSON, _DEEP, _HUGE_TEXT)

_DECISIONS = st.one_of(
    st.fixed_dictionaries({"approved": st.one_of(st.booleans(), _ANY)}),
    st.fixed_dictionaries({"choice": st.one_of(st.sampled_from(["red", "blue"]), _ANY)}),
    st.fixed_dictionaries(
        {"form": st.one_of(st.fixed_dictionaries({"n": st.integers()}), _JSON, _DEEP)}
    ),
    st.fixed_dictionaries({"text": st.one_of(_ODD_TEXT, _HUGE_TEXT)}),
    _ANY,
)


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A payload, with `@task:N` / `@user:NAME` placeholders for the run's ids."""
    fields: dict[str, Any] = {
        "hitl_task_id": draw(st.one_of(st.integers(0, 3).map(lambda i: f"@task:{i}"), _ANY)),
        "decision": draw(_DECISIONS),
        "decided_by": draw(
            st.one_of(
                st.sampled_from(["finance", "finance2", "lead", "outsider", "stranger"]).map(
                    lambda who: f"@user:{who}"
                ),
                _ANY,
            )
        ),
        "comments": draw(st.one_of(st.none(), _ODD_TEXT, _HUGE_TEXT, _ANY)),
    }
    for key in draw(st.sets(st.sampled_from(sorted(fields)), max_size=2)):
        del fields[key]
    fields.update(
        draw(st.dictionaries(st.sampled_from(["comment", "extra", "\u0000"]), _JSON, max_size=1))
    )
    return {"channel": draw(st.sampled_from(["signal", "update"])), "body": fields}


# -- the parked runs --------------------------------------------------------------------------


def _parked_flow() -> dict[str, Any]:
    reviews: dict[str, dict[str, Any]] = {
        "approve": {"decisionType": "approval", "assigneeRole": "finance", "requiredApprovals": 2},
        "pick": {"decisionType": "choice", "options": ["red", "blue"], "assigneeRole": "finance"},
        "fill": {
            "decisionType": "form_input",
            "formSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        },
        "write": {"decisionType": "free_text", "assigneeRole": "finance-lead"},
    }
    nodes = [node("start", "start")]
    edges = []
    for name, cfg in reviews.items():
        nodes.append(
            node(
                name,
                "hitl",
                {"title": "Review {{ input.title }}", "deadlineSeconds": DEADLINE_SECONDS, **cfg},
            )
        )
        nodes.append(node(f"{name}_late", "transform", {"output": "late"}))
        edges += [edge("start", name), edge(name, f"{name}_late", "expired")]
    return {"nodes": nodes, "edges": edges}


@dataclass
class Parked:
    flow_worker: FlowWorker
    people: People
    handle: WorkflowHandle[Any, Any] | None = None
    task_ids: list[str] = field(default_factory=list)
    started_at: float = 0.0
    runs: list[WorkflowHandle[Any, Any]] = field(default_factory=list)
    tried: dict[str, int] = field(default_factory=lambda: {"refused": 0, "recorded": 0})

    async def current(self, title: Any) -> WorkflowHandle[Any, Any]:
        """The run taking payloads; a new one (with generated inputs) once it has aged."""
        if self.handle is None or time.monotonic() - self.started_at > USE_SECONDS:
            self.handle = await self.flow_worker.start(
                _parked_flow(), {"title": title}, tenant_id=self.people.tenant
            )
            self.runs.append(self.handle)
            self.started_at = time.monotonic()
            self.task_ids = []
            for _ in range(100):
                status = await query(self.handle)
                if len(status["open_hitl_tasks"]) == 4:
                    self.task_ids = sorted(t["id"] for t in status["open_hitl_tasks"])
                    break
                await asyncio.sleep(0.05)
            assert self.task_ids, "the parked run never opened its four reviews"
        return self.handle

    def resolve(self, value: Any) -> Any:
        ids = {
            "finance": self.people.finance,
            "finance2": self.people.finance2,
            "lead": self.people.lead,
            "outsider": self.people.outsider,
            "stranger": self.people.stranger_tenant_user,
        }
        if isinstance(value, str) and value.startswith("@task:"):
            return self.task_ids[int(value[6:])]
        if isinstance(value, str) and value.startswith("@user:"):
            return ids[value[6:]]
        return value


def _as_json(body: Any) -> RawValue:
    """The payload as a client in any language writes it: plain JSON text (the Python
    client's own converter cannot write lone surrogates).
    """
    data = json.dumps(body).encode()
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


async def query(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    status: dict[str, Any] = await asyncio.wait_for(handle.query(STATUS_QUERY), QUERY_SECONDS)
    return status


async def _decisions_of(flow_worker: FlowWorker, workflow_id: str) -> int:
    async with flow_worker.sessions() as s:
        return int(
            await s.scalar(
                text(
                    "SELECT count(*) FROM hitl_decisions d JOIN hitl_tasks t ON t.id ="
                    " d.hitl_task_id JOIN workflow_runs r ON r.id = t.workflow_run_id"
                    " WHERE r.orchestrator_run_id = :o"
                ),
                {"o": workflow_id},
            )
            or 0
        )


@pytest.fixture
async def parked(flow_worker: FlowWorker, people: People) -> AsyncIterator[Parked]:
    pool = Parked(flow_worker, people)
    yield pool
    print(f"\ndecision payloads tried: {pool.tried}, runs: {len(pool.runs)}")
    for handle in pool.runs:  # each ends by its deadline (or its decisions), never cancelled
        await asyncio.wait_for(handle.result(), DEADLINE_SECONDS + 30)
        assert (
            await assert_run_tells_the_truth(flow_worker.client, flow_worker.sessions, handle.id)
            == "completed"
        )


@settings(PROFILE)
@given(payload=payloads(), title=st.one_of(_ODD_TEXT, _JSON, _DEEP))
async def test_no_decision_payload_wedges_a_parked_run(
    parked: Parked, payload: dict[str, Any], title: Any
) -> None:
    handle = await parked.current(title)
    body = {parked.resolve(k): parked.resolve(v) for k, v in payload["body"].items()}
    before = await query(handle)
    recorded_before = await _decisions_of(parked.flow_worker, handle.id)
    if payload["channel"] == "update":
        try:
            row = await handle.execute_update(
                SUBMIT_HITL_DECISION_UPDATE, _as_json(body), result_type=dict
            )
        except (WorkflowUpdateFailedError, RPCError) as exc:
            reason = str(getattr(exc, "cause", None) or exc)
            assert reason.strip(), "an update was refused without a reason"
            parked.tried["refused"] += 1
        else:
            assert row["id"]
            assert await _decisions_of(parked.flow_worker, handle.id) > recorded_before
            parked.tried["recorded"] += 1
    else:
        try:
            await handle.signal(HITL_DECISION_SIGNAL, _as_json(body))
        except RPCError as exc:  # e.g. over the server's payload limit: refused at the door
            refusal = exc.message.strip()
            assert refusal, "a signal was refused without a reason"
            parked.tried["refused"] += 1
        else:
            deadline = time.monotonic() + QUERY_SECONDS
            while True:
                status = await query(handle)
                if status["rejected_total"] > before["rejected_total"]:
                    assert status["rejected_decisions"][-1]["reason"].strip()
                    parked.tried["refused"] += 1
                    break
                if await _decisions_of(parked.flow_worker, handle.id) > recorded_before:
                    parked.tried["recorded"] += 1
                    break
                assert time.monotonic() < deadline, f"signal {str(body)[:300]} vanished"
                await asyncio.sleep(0.05)
    await query(handle)  # still answering
