"""Whether a stored flow may run now, and the mark a run leaves on its flow.

One rule, asked twice: by `prepare_flow` (so a run started any way at all, the plain
`temporal` CLI included, is refused before any node) and by the client and the CLI before
they start anything (so a refused run costs no Temporal workflow). Both word the refusal
the same way, from here.

The rule: an archived, inactive (`is_active` false) or paused (`is_paused`) flow does not
run. Otherwise the version that would run must be published, unless the caller asks for a
draft run: the `workflow_versions` row's status decides when there is one, else (a workflow
row written without a versions row) the workflow's own `status`. So a workflow whose row
still says `draft` but whose version row is published runs: `meta-agent flows import`
writes both as published, and a builder that saves drafts marks the version row.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Workflow
from persistence.queries import StoredDefinition

#: How a caller asks for a draft run, named in the refusal.
_ASK_FOR_DRAFT = "ask for a draft run (`draft: true`, `meta-agent run --draft`)"


def unavailable(stored: StoredDefinition, *, draft: bool) -> str | None:
    """Why the flow may not run now, in the words the run's row and failure carry (None: it
    may).
    """
    name = stored.name
    if stored.status == "archived":
        return f"flow {name!r} is archived: restore it before running it"
    if not stored.is_active:
        return f"flow {name!r} is inactive: activate it before running it"
    if stored.is_paused:
        return f"flow {name!r} is paused: resume it before running it"
    if draft:
        return None
    if stored.version_status is not None:
        if stored.version_status != "published":
            return (
                f"version {stored.version} of flow {name!r} is a draft: publish it, run a "
                f"published version, or {_ASK_FOR_DRAFT}"
            )
        return None
    if stored.status != "published":
        return f"flow {name!r} is a draft, with no published version: {_ASK_FOR_DRAFT}"
    return None


async def mark_run_started(session: AsyncSession, workflow_id: uuid.UUID, at: datetime) -> None:
    """`workflows.last_run_at`: when its latest run started (never moved back by a late write
    of an earlier run, or a retried start). Call it last in the run's first transaction: it
    locks the flow's row until the commit, and runs of one flow take that lock in turn.
    """
    await session.execute(
        update(Workflow)
        .where(Workflow.id == workflow_id)
        .where((Workflow.last_run_at.is_(None)) | (Workflow.last_run_at < at))
        # Not an edit of the flow: `updated_at` stays (its ORM default would move it).
        .values(last_run_at=at, updated_at=Workflow.updated_at)
        .execution_options(synchronize_session=False)
    )
