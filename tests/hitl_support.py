"""People, flows and helpers shared by the HITL tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle

from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from workers import client
from workers.client import STATUS_QUERY

__all__ = [
    "People",
    "decide",
    "edge",
    "inbox",
    "legal_and_money",
    "make_people",
    "node",
    "open_task",
    "review_flow",
]


@dataclass
class People:
    """User ids of one tenant's reviewers and non-reviewers, and of a user of another tenant.

    `finance` and `finance2` hold the `finance` role, `lead` holds `finance-lead`, `outsider`
    holds none, and `stranger_tenant_user` belongs to another tenant.
    """

    tenant: str
    finance: str
    finance2: str
    lead: str
    outsider: str
    stranger_tenant_user: str


async def make_people(sessions: async_sessionmaker[AsyncSession]) -> People:
    """A tenant with two finance reviewers, a lead, a member without roles, and an outsider."""
    ids = {
        k: str(uuid.uuid4())
        for k in (
            "tenant",
            "other",
            "finance",
            "finance2",
            "lead",
            "outsider",
            "stranger",
            "r_fin",
            "r_lead",
        )
    }
    async with sessions() as s, s.begin():
        for t in ("tenant", "other"):
            await s.execute(
                text("INSERT INTO tenants (id, name) VALUES (:i, :n)"), {"i": ids[t], "n": t}
            )
        for u, t in (
            ("finance", "tenant"),
            ("finance2", "tenant"),
            ("lead", "tenant"),
            ("outsider", "tenant"),
            ("stranger", "other"),
        ):
            await s.execute(
                text("INSERT INTO users (id, username, tenant_id) VALUES (:i, :n, :t)"),
                {"i": ids[u], "n": f"{u}-{ids[u][:6]}", "t": ids[t]},
            )
        for r, name in (("r_fin", "finance"), ("r_lead", "finance-lead")):
            await s.execute(
                text("INSERT INTO roles (id, name, tenant_id) VALUES (:i, :n, :t)"),
                {"i": ids[r], "n": name, "t": ids["tenant"]},
            )
        for u, r in (("finance", "r_fin"), ("finance2", "r_fin"), ("lead", "r_lead")):
            await s.execute(
                text("INSERT INTO user_roles (user_id, role_id) VALUES (:u, :r)"),
                {"u": ids[u], "r": ids[r]},
            )
    return People(
        ids["tenant"],
        ids["finance"],
        ids["finance2"],
        ids["lead"],
        ids["outsider"],
        ids["stranger"],
    )


def review_flow(**config: Any) -> dict[str, Any]:
    """A `hitl` review node with one `transform` per outcome handle, so tests see which one ran.

    `config` overrides the defaults (an approval by the `finance` role).
    """
    cfg = {
        "title": "Review {{ input.what }}",
        "description": "Please look",
        "assigneeRole": "finance",
        "decisionType": "approval",
        **config,
    }
    kind = cfg["decisionType"]
    handles = {
        "approval": ["approved", "rejected"],
        "choice": [o if isinstance(o, str) else o["value"] for o in cfg.get("options", [])],
    }.get(kind, ["submitted"])
    nodes = [
        node("start", "start"),
        node("review", "hitl", cfg),
        *[node(f"on_{h}", "transform", {"output": "{{ nodes.review.output }}"}) for h in handles],
    ]
    edges = [edge("start", "review"), *[edge("review", f"on_{h}", h) for h in handles]]
    return {"nodes": nodes, "edges": edges}


def fetched_then_reviewed(url: str, fetch_label: str, wait_label: str) -> dict[str, Any]:
    """An `api` GET of `url`, a short `wait`, then `review_flow`'s review: a run that shows
    an activity, a timer and a parked review, each under its label.
    """
    review = review_flow()
    return {
        "nodes": [
            node("start", "start"),
            node("fetch", "api", {"url": url}, label=fetch_label),
            node("pause", "wait", {"seconds": 0.2}, label=wait_label),
            *review["nodes"][1:],
        ],
        "edges": [
            edge("start", "fetch"),
            edge("fetch", "pause"),
            edge("pause", "review"),
            *review["edges"][1:],
        ],
    }


async def open_task(handle: WorkflowHandle[Any, Any], count: int = 1) -> list[dict[str, Any]]:
    """The run's open HITL tasks once there are at least `count`, as the status query shows them."""
    for _ in range(200):
        status = await handle.query(STATUS_QUERY)
        if len(status["open_hitl_tasks"]) >= count:
            return list(status["open_hitl_tasks"])
        await asyncio.sleep(0.1)
    raise AssertionError("no open HITL task appeared")


async def decide(
    handle: WorkflowHandle[Any, Any],
    task_id: str,
    decision: dict[str, Any],
    who: str,
    comments: str | None = None,
) -> dict[str, Any]:
    """`workers.client.decide` on the run of `handle`: its row, or DecisionRefused."""
    # The handle's own client: a test's runs all come from one (FlowWorker.start).
    return await client.decide(handle._client, handle.id, task_id, decision, who, comments)


async def inbox(flow_worker: FlowWorker, task_id: str) -> dict[str, Any]:
    """The task's `hitl_tasks` row, with its decisions (oldest first) and its escalations."""
    async with flow_worker.sessions() as s:
        task = dict(
            (await s.execute(text("SELECT * FROM hitl_tasks WHERE id = :i"), {"i": task_id}))
            .mappings()
            .one()
        )
        task["decisions"] = [
            dict(r)
            for r in (
                await s.execute(
                    text(
                        "SELECT * FROM hitl_decisions WHERE hitl_task_id = :i ORDER BY decided_at"
                    ),
                    {"i": task_id},
                )
            ).mappings()
        ]
        task["escalations"] = [
            dict(r)
            for r in (
                await s.execute(
                    text("SELECT * FROM hitl_escalations WHERE hitl_task_id = :i"), {"i": task_id}
                )
            ).mappings()
        ]
    return task


def approval_flow(config: dict[str, Any], *, expired_edge: bool = False) -> dict[str, Any]:
    """Start → an approval review with `config` → end on `approved` (and `late` on `expired`)."""
    cfg = {"title": "Look", "decisionType": "approval", **config}
    nodes = [
        node("start", "start"),
        node("review", "hitl", cfg),
        node("done", "end", {"outputs": {"review": "{{ nodes.review.output }}"}}),
    ]
    edges = [edge("start", "review"), edge("review", "done", "approved")]
    if expired_edge:
        nodes.append(node("late", "end", {"outputs": {"late": True}}))
        edges.append(edge("review", "late", "expired"))
    return {"nodes": nodes, "edges": edges}


def legal_and_money(people: People, **money: Any) -> dict[str, Any]:
    """Two reviews in parallel, "Legal" (free text, the lead) and "Money" (an approval by the
    finance role, with `money` config), joined by an end that outputs Legal's text.
    """
    return {
        "nodes": [
            node("start", "start"),
            node(
                "legal",
                "hitl",
                {"title": "Legal", "decisionType": "free_text", "assigneeId": people.lead},
            ),
            node(
                "money",
                "hitl",
                {"title": "Money", "decisionType": "approval", "assigneeRole": "finance", **money},
            ),
            node("both", "end", {"outputs": {"legal": "{{ nodes.legal.output.decision.text }}"}}),
        ],
        "edges": [
            edge("start", "legal"),
            edge("start", "money"),
            edge("legal", "both"),
            edge("money", "both", "approved"),
        ],
    }


async def wait_for(check: Any, seconds: float = 10.0) -> Any:
    """The first truthy value of `check()`, polled every 0.1 s, or its last after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def quick_status(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The `status` query, which must answer within 5 s (a wedged run would not)."""
    status: dict[str, Any] = await asyncio.wait_for(handle.query(STATUS_QUERY), timeout=5)
    return status
