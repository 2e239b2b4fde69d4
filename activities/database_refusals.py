"""A database error caused by the data fails an activity for good, in plain words.

Temporal retries a failed activity, and bookkeeping activities retry without
limit so that a database outage only delays a run. But Postgres refusing the
data itself (a foreign key to a tenant that does not exist, a value that is
not a UUID, a NUL byte in text) gives the same answer on every attempt: retrying
would wedge the run. One worker interceptor tells the two apart for every
activity, so no activity has to remember to.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from persistence.health import DatabaseHealth, database_unreachable
from workflows.contract import AGENT_ACTIVITY_PREFIX

#: The `ApplicationError.type` of such a failure (never retried).
DATABASE_REFUSED = "DatabaseRefused"


#: SQLSTATE classes of a row Postgres will never accept: data exception, integrity violation.
_REFUSED_SQLSTATE_CLASSES = ("22", "23")


def refused_by_database(exc: BaseException) -> bool:
    """Whether Postgres refused the data itself (retrying would get the same answer)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        return sqlstate[:2] in _REFUSED_SQLSTATE_CLASSES
    return False


def refusal_text(exc: DBAPIError) -> str:
    """Postgres' own first line (it names the constraint or the bad value), not the SQL."""
    detail = str(exc.orig).strip().splitlines() if exc.orig is not None else []
    reason = detail[0] if detail else type(exc).__name__
    # asyncpg's wrapper prefixes its class: keep Postgres' words only.
    reason = reason.split(">: ", 1)[-1]
    return f"the database refused the record: {reason}"


def outage_outlasted(
    health: DatabaseHealth, reason: str, node_id: str | None = None
) -> ApplicationError:
    """The failure of an attempt that met an outage longer than the worker waits: final."""
    where = f"node {node_id!r}: " if node_id is not None else ""
    return ApplicationError(
        f"{where}the database has been unreachable for over "
        f"{health.outage_limit_seconds:.0f} s: {reason}",
        type="DatabaseUnreachable",
        non_retryable=True,
    )


#: The metric counting bookkeeping attempts after the first (exported with `_total`).
WRITEBACK_RETRIES = "meta_agent_writeback_retries"


class DatabaseRefusalInterceptor(Interceptor):
    """The worker interceptor that makes the database's refusals of the data final for every
    activity, and its outages retried until they outlast `health`'s limit.
    """

    def __init__(self, health: DatabaseHealth | None = None) -> None:
        self._health = health or DatabaseHealth()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap each activity so such a refusal is raised as a non-retryable failure."""
        return _RefusalsAreFinal(next, self._health)


class _RefusalsAreFinal(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, health: DatabaseHealth) -> None:
        super().__init__(next)
        self._health = health

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.attempt > 1 and not info.activity_type.startswith(AGENT_ACTIVITY_PREFIX):
            # A bookkeeping write tried again (an outage, a timeout): what operators alert on.
            activity.metric_meter().create_counter(
                WRITEBACK_RETRIES, "Bookkeeping writes tried again, by activity."
            ).add(1, {"activity": info.activity_type})
        try:
            return await super().execute_activity(input)
        except UnicodeEncodeError as exc:
            # Text the database driver cannot even send (a lone surrogate in a column that
            # does not escape it): the same on every attempt.
            raise ApplicationError(
                f"the database refused the record: text it cannot hold ({exc.reason})",
                type=DATABASE_REFUSED,
                non_retryable=True,
            ) from None
        except Exception as exc:
            if database_unreachable(exc):
                self._health.lost(exc)
                if not self._health.gave_up():
                    # Retried: the run waits for the database. Benign, so the SDK logs each
                    # attempt at debug level; the health logs the outage once.
                    raise ApplicationError(
                        f"the database is unreachable: {type(exc).__name__}",
                        type="DatabaseOutage",
                        category=ApplicationErrorCategory.BENIGN,
                    ) from None
                raise outage_outlasted(self._health, type(exc).__name__) from None
            if not (isinstance(exc, DBAPIError) and refused_by_database(exc)):
                raise
            # No cause attached: it would carry the statement's parameters into history.
            raise ApplicationError(
                refusal_text(exc), type=DATABASE_REFUSED, non_retryable=True
            ) from None
