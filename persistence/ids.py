"""The one parser of ids that arrive as text: run arguments, flow configs, CLI flags.

Callers get None for anything that is not a UUID instead of a ValueError, so
an id like `"acme"` is refused with the same plain message as an unknown one
rather than crashing whoever tried to look it up.
"""

from __future__ import annotations

import uuid


def parse_uuid(value: object) -> uuid.UUID | None:
    """`value` as a UUID, or None when it is not one (any spelling `uuid.UUID` accepts)."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
