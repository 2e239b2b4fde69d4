"""`load_reused_outputs`: the completed node rows of the run a retry reuses, page by page.

Only outputs the row holds faithfully are offered: a row without an output (a run
whose rows the database refused keeps them without payloads) or with text that was
escaped to be storable (NUL, lone surrogates: `persistence.storable`, whose escaped
form cannot be told from the same six characters written on purpose) is left out,
so its node runs again instead of going on with an output it never returned.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from flow_language.sizes import json_size
from persistence import retry_queries
from persistence.ids import parse_uuid, require_uuid
from workflows.contract import (
    LOAD_REUSED_OUTPUTS,
    MAX_OUTPUT_BYTES,
    ReusedPage,
    ReusedQuery,
    ReusedTask,
)

#: Rows read per query; a page ends sooner when its outputs reach PAGE_BYTES.
ROWS_PER_QUERY = 200
#: Outputs per page: a page always holds at least one row, and one output is at most
#: MAX_OUTPUT_BYTES, so a page stays under Temporal's 2 MB payload limit.
PAGE_BYTES = MAX_OUTPUT_BYTES
#: What a row costs beside its output (ids, type, JSON punctuation), for the page's budget.
ROW_OVERHEAD = 200

_ESCAPED = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def faithful(value: Any) -> bool:
    """Whether no text in `value` (keys included) may be the storable escape of a character
    Postgres could not hold, i.e. whether the row holds exactly what the node returned.
    """
    if isinstance(value, str):
        return _ESCAPED.search(value) is None
    if isinstance(value, list):
        return all(faithful(v) for v in value)
    if isinstance(value, dict):
        return all(faithful(k) and faithful(v) for k, v in value.items())
    return True


class ReusedOutputs:
    """The `load_reused_outputs` activity and the database sessions it needs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name=LOAD_REUSED_OUTPUTS)
    async def load_reused_outputs(self, query: ReusedQuery) -> ReusedPage:
        """The next page of completed rows after `query.after`, in task-id order."""
        run_row_id = require_uuid(query.run_row_id, "run_row_id")
        tenant = parse_uuid(query.tenant_id) if query.tenant_id else None
        page = ReusedPage()
        room, after = PAGE_BYTES, query.after
        async with self._sessions() as session:
            while True:
                rows = await retry_queries.completed_rows(
                    session, run_row_id, tenant, after=after, limit=ROWS_PER_QUERY
                )
                for row in rows:
                    if not faithful(row.outputs):  # not what the node returned: it runs again
                        after = row.orchestrator_task_id
                        continue
                    size = json_size(row.outputs) + len(row.orchestrator_task_id) + ROW_OVERHEAD
                    if size > room and page.tasks:
                        page.after = after
                        return page
                    room -= size
                    after = row.orchestrator_task_id
                    page.tasks.append(
                        ReusedTask(
                            task_id=row.orchestrator_task_id,
                            node_type=row.agent_type,
                            row_id=str(row.id),
                            output=row.outputs,
                        )
                    )
                if len(rows) < ROWS_PER_QUERY:
                    return page
