"""A reviewer's decision on an open review task: judged, checked, recorded, or refused.

Decisions arrive as the `submit_hitl_decision` update (the caller hears why one
is refused) or the `hitl_decision` signal (a refused one is logged on the run
and listed in `status.rejected_decisions`). Both arrive raw, so a malformed one
is refused with a reason instead of being dropped by the payload converter. The
pure rules live in `flow_language.review_rules`; this adds what needs the run:
the reviewer's role (an activity), the order of decisions on one task, the row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import patches
from workflows.bookkeeping import bookkeeping
from workflows.failures import error_text
from workflows.run_state import RunState

with workflow.unsafe.imports_passed_through():
    from flow_language.review_rules import (
        HitlDecisionRequest,
        decision_handle,
        decision_problem,
        parse_decision,
    )
    from workflows.contract import (
        HITL_CHECK_REVIEWER,
        HITL_DECIDE,
        HITL_DECIDE_RESUMING,
        HITL_RECORD_DECISION,
        DecisionRecord,
        ReviewerCheck,
    )

#: How many rejected decisions `status.rejected_decisions` keeps (the latest ones).
MAX_REJECTED_SHOWN = 100
MAX_REASON_CHARS = 2000


def _refused(message: str, kind: str = "DecisionRejected") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


class Decisions:
    """The decisions of one run: those being judged, and the latest refused."""

    def __init__(self, run: RunState) -> None:
        self._run = run
        self._locks: dict[str, asyncio.Lock] = {}
        self.rejected: list[dict[str, Any]] = []
        self.rejected_total = 0

    def problem(self, req: HitlDecisionRequest) -> str | None:
        """Why `req` cannot be accepted now (the pure rules), or None. A task still being
        opened is judged once it is open (`decide` waits for it).
        """
        task = self._run.reviews.get(req.hitl_task_id)
        if task is None and req.hitl_task_id in self._run.opening_reviews:
            return None
        return decision_problem(task, req, self._run.params.triggered_by)

    @staticmethod
    def request_from(payloads: Sequence[RawValue]) -> HitlDecisionRequest | str:
        """The request the payloads hold, or why they hold none."""
        if len(payloads) != 1:
            return f"a decision is one JSON object, not {len(payloads)} values"
        try:
            value = _decoded(payloads[0])
        except Exception as exc:  # any payload that is not JSON
            return f"the payload cannot be read as JSON: {str(exc)[:200] or type(exc).__name__}"
        return parse_decision(value)

    def validate(self, raw: RawValue) -> None:
        """The update's validator: refuse, whatever the data did to the checks."""
        req = self.request_from([raw])
        try:
            problem = req if isinstance(req, str) else self.problem(req)
        except Exception as exc:
            problem = f"the decision could not be judged: {exc!r}"[:500]
        if problem:  # the same type and finality as a refusal in the handler
            raise _refused(problem)

    async def submit(self, raw: RawValue) -> dict[str, Any]:
        """The update: the `hitl_decisions` row, or an ApplicationError saying why not."""
        req = self.request_from([raw])
        if isinstance(req, str):
            raise _refused(req)
        try:
            return await self.decide(req)
        except (ApplicationError, workflow.NondeterminismError):
            raise
        except Exception as exc:  # no data may fail the workflow task (it would wedge the run)
            raise _refused(f"the decision could not be judged: {exc!r}"[:500]) from None

    async def signalled(self, payloads: Sequence[RawValue]) -> None:
        """The signal: a refusal is logged and listed, never raised."""
        req = self.request_from(payloads)
        if isinstance(req, str):
            self.reject(_payload_fields(payloads), req)
            return
        try:
            await self.decide(req)
        except ApplicationError as exc:
            self.reject(req.model_dump(), exc.message)
        except workflow.NondeterminismError:
            raise
        except Exception as exc:  # no data may fail the workflow task (it would wedge the run)
            self.reject(req.model_dump(), f"the decision could not be judged: {exc!r}"[:500])

    def reject(self, fields: dict[str, Any], reason: str) -> None:
        """List a refused decision for the `status` query instead of failing the run; a signal has
        no caller to answer.
        """
        task_id, who = _short(fields.get("hitl_task_id")), _short(fields.get("decided_by"))
        task = self._run.reviews.get(str(fields.get("hitl_task_id")))
        workflow.logger.warning(
            "rejected HITL decision on %s by %s: %s",
            task_id,
            who,
            reason,
            extra={
                "tenant_id": self._run.tenant_id,
                "node_id": task.node_id if task else None,
                "review_task_id": task_id,
            },
        )
        self.rejected_total += 1
        self.rejected.append(
            {
                "hitl_task_id": task_id,
                "decided_by": who,
                "reason": reason[:MAX_REASON_CHARS],
                "at": workflow.now().isoformat(),
            }
        )
        # The latest ones are what a reader needs; a flood of bad signals must not grow
        # the run's memory and query answer without bound.
        del self.rejected[:-MAX_REJECTED_SHOWN]

    async def decide(self, req: HitlDecisionRequest) -> dict[str, Any]:
        """Judge, check the reviewer, record; the task's outcome is set once quorum is met."""
        run = self._run
        if req.hitl_task_id in run.opening_reviews and patches.patched(
            patches.DECIDE_WHILE_OPENING
        ):
            # Its inbox row exists; the run has not yet heard that it does.
            await workflow.wait_condition(lambda: req.hitl_task_id not in run.opening_reviews)
        if req.hitl_task_id not in run.reviews:  # before a lock exists for whatever id was sent
            raise _refused(decision_problem(None, req, run.params.triggered_by) or "unknown task")
        lock = self._locks.setdefault(req.hitl_task_id, asyncio.Lock())
        async with lock:  # decisions on one task are judged one after the other
            problem = self.problem(req)
            if problem:
                raise _refused(problem)
            task = run.reviews[req.hitl_task_id]
            reviewer = ReviewerCheck(
                user_id=req.decided_by,
                tenant_id=run.tenant_id,
                assignee_id=task.assignee_id,
                assignee_role=task.assignee_role,
            )
            one_step = patches.patched(patches.DECISION_IN_ONE_STEP)
            if not one_step:
                try:
                    await bookkeeping(
                        HITL_CHECK_REVIEWER, reviewer, f"Check reviewer {req.decided_by}"
                    )
                except ActivityError as exc:
                    raise _refused(error_text(exc), "ReviewerNotAllowed") from None
                problem = self.problem(req)  # the task may have closed meanwhile
                if problem:
                    raise _refused(problem)
            handle, final = decision_handle(task, req)
            decision_id = str(workflow.uuid4())
            resumes = one_step and final and self._may_resume_run(task.id)
            before = self._status_mark()
            try:
                row: dict[str, Any] = await bookkeeping(
                    HITL_DECIDE_RESUMING
                    if resumes
                    else HITL_DECIDE
                    if one_step
                    else HITL_RECORD_DECISION,
                    DecisionRecord(
                        decision_id=decision_id,
                        hitl_task_id=task.id,
                        tenant_id=run.tenant_id,
                        decision=req.decision,
                        decision_type=task.decision_type,
                        decided_by=req.decided_by,
                        comments=req.comments,
                        task_status="completed" if final else "in_progress",
                        reviewer=reviewer if one_step else None,
                        resumes_run=resumes,
                    ),
                    f"Record decision on {task.title[:40]}",
                )
            except ActivityError as exc:
                # The reviewer may not decide, the deadline came first, or the database
                # refused the decision: it loses, and the reviewer is told why; the run goes
                # on either way.
                if resumes:  # refused in a rolled-back transaction, or so it seems: rewrite
                    self._rewrite_status()
                raise _refused(error_text(exc), _refusal_kind(exc)) from None
            task.decision_ids.append(decision_id)
            if req.decision.get("approved") is True:
                task.approvals.append(req.decided_by)
            if final:
                task.status = "completed"
                task.outcome = {
                    "decision": req.decision,
                    "decided_by": req.decided_by,
                    "comments": req.comments,
                    "handle": handle,
                    "approvals": list(task.approvals),
                }
            if resumes:
                self._settle_resumed_run(task.id, before, bool(row.pop("run_resumed", False)))
            return row

    def _status_mark(self) -> tuple[int, int]:
        """Changes of the run's status so far, and write-backs taken (each carries it)."""
        return self._run.status_changes, self._run.write_back.takes

    def _others_open(self, task_id: str) -> bool:
        run = self._run
        return bool(run.opening_reviews) or any(
            t.status == "open" for tid, t in run.reviews.items() if tid != task_id
        )

    def _may_resume_run(self, task_id: str) -> bool:
        """Whether a final decision on `task_id` may also set the run's row to `running`: the
        run says `waiting_hitl`, has said nothing else since, and nothing else keeps it waiting.
        """
        run = self._run
        return (
            run.status == "waiting_hitl"
            and not run.paused
            and run.write_back.settled
            and not self._others_open(task_id)
            and patches.patched(patches.DECISION_RESUMES_RUN)
        )

    def _settle_resumed_run(self, task_id: str, before: tuple[int, int], resumed: bool) -> None:
        """After a decision that set the run's row to `running` (`resumed`: the database says
        it did): the run says so too, without a write of its own, if its status stayed put and
        no other write was taken meanwhile (one taken earlier could land later). Otherwise the
        run writes what it says.
        """
        run = self._run
        alone = not self._others_open(task_id)
        if resumed and alone and self._status_mark() == before and run.status == "waiting_hitl":
            run.set_status("running", written=True)
            return
        if alone:
            run.set_status("running")
        self._rewrite_status()

    def _rewrite_status(self) -> None:
        self._run.write_back.status_changed()
        self._run.maybe_flush()


def _refusal_kind(exc: ActivityError) -> str:
    """The refusal's type: the reviewer's, or DecisionRejected for anything else."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == "ReviewerNotAllowed":
        return "ReviewerNotAllowed"
    return "DecisionRejected"


def _short(value: Any) -> str | None:
    """A caller-supplied id as a bounded text, for logs and the status query."""
    return None if value is None else str(value)[:200]


def _decoded(raw: RawValue) -> Any:
    return workflow.payload_converter().from_payload(raw.payload)


def _payload_fields(payloads: Sequence[RawValue]) -> dict[str, Any]:
    """Whatever task and reviewer a refused payload names, to say whose decision it was."""
    try:
        value = _decoded(payloads[0]) if payloads else None
    except Exception:  # nothing readable: the rejection says so
        return {}
    return value if isinstance(value, dict) else {}
