"""The search attributes of CONTRACT section 2, set on every run so operators can filter.

Pure declarations: the workflow upserts them, the worker registers them.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
WORKSPACE_ID = SearchAttributeKey.for_keyword("WorkspaceId")
FLOW_ID = SearchAttributeKey.for_keyword("FlowId")
TRIGGERED_BY = SearchAttributeKey.for_keyword("TriggeredBy")
FLOW_VERSION = SearchAttributeKey.for_int("FlowVersion")
FLOW_STATUS = SearchAttributeKey.for_keyword("FlowStatus")
#: Beside the CONTRACT's: the flow's name, which people remember better than its UUID
#: (`FlowName = "order-approval"` in the UI's search box).
FLOW_NAME = SearchAttributeKey.for_keyword("FlowName")
#: Beside the CONTRACT's: the event names the run's `wait` nodes wait on right now (set when
#: one starts waiting, cleared when none waits), so an emitted event finds the runs it wakes
#: by a visibility query (`WaitingEvents = "order.paid"`) instead of a scan of every run.
WAITING_EVENTS = SearchAttributeKey.for_keyword_list("WaitingEvents")

ALL = (
    TENANT_ID,
    WORKSPACE_ID,
    FLOW_ID,
    TRIGGERED_BY,
    FLOW_VERSION,
    FLOW_STATUS,
    FLOW_NAME,
    WAITING_EVENTS,
)

#: Temporal's own, set on every run a Temporal Schedule starts (never registered or
#: upserted here): the schedule's id and the fire's time, which a scheduled run records
#: in its row's `trigger_metadata` (Temporal knows the time only when it fires).
SCHEDULED_BY_ID = SearchAttributeKey.for_keyword("TemporalScheduledById")
SCHEDULED_START_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


#: Temporal refuses a Keyword value over 2048 bytes, and terminates the run whose workflow
#: task upserts one: values a flow author chooses (a flow's name) are cut well below that.
KEYWORD_BYTES = 1000


def keyword(value: str | None) -> str | None:
    """`value` cut to at most KEYWORD_BYTES of UTF-8 (whole characters), None kept."""
    if value is None:
        return None
    return value.encode()[:KEYWORD_BYTES].decode(errors="ignore")
