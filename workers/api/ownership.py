"""Whose run holds a delivery's run id: a run found under an idempotent id is only answered
with when it was started for the same delivery.

An idempotent run id is derived from the delivery (see `keyed_run_id`), and a redelivery
is answered with the run already under it. Were that run someone else's (a run another
tenant started under a chosen id), the sender would be told 202 while nothing of theirs
started: the delivery would be lost without a retry. So the run's own start argument (the
first event of its history, which a later continue-as-new keeps) must name the same flow,
tenant, trigger and delivery before it is taken as the first delivery's run.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

#: Hex digits of the HMAC kept in a run id: 192 bits, beyond guessing.
_ID_DIGITS = 48


def keyed_run_id(prefix: str, key: str, *parts: str) -> str:
    """A run id derived from what identifies one delivery (the hook or event, and its key),
    as an HMAC keyed by a secret of the sender's (the hook's signing secret, the tenant's
    API secret): the same delivery always gets the same id, the id shows none of its parts,
    and no one without the secret can compute it to plant a run under it first.
    """
    digest = hmac.new(key.encode(), "\n".join(parts).encode(), hashlib.sha256).hexdigest()
    return f"{prefix}-{digest[:_ID_DIGITS]}"


async def started_with(client: Client, run_id: str) -> dict[str, Any] | None:
    """The argument the run under `run_id` was started with (None: none readable)."""
    handle = client.get_workflow_handle(run_id)
    async for event in handle.fetch_history_events(page_size=1):
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            return None
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        if not payloads:
            return None
        values = await client.data_converter.decode(payloads)
        return values[0] if values and isinstance(values[0], dict) else None
    return None


async def is_same_delivery(client: Client, run_id: str, expected: dict[str, Any]) -> bool:
    """Whether the run under `run_id` was started with every field of `expected` (nested
    dicts compared field by field, so `trigger_metadata` need only agree on what identifies
    the delivery).
    """
    argument = await started_with(client, run_id)
    return argument is not None and _matches(argument, expected)


def _matches(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            _matches(actual.get(key), value) for key, value in expected.items()
        )
    return bool(actual == expected)
