"""The one parser of ids that arrive as text: run arguments, flow configs, CLI flags.

Three answers to "this text is not a UUID", one per kind of caller:

- `parse_uuid`: None, for a lookup, so an id like `"acme"` is refused with the same
  plain message as an unknown one rather than crashing whoever tried to look it up;
- `require_uuid`: a ValueError naming the field, for an id that must be there;
- `optional_uuid`: the same, but None (no id given) stays None.
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


def require_uuid(value: object, what: str) -> uuid.UUID:
    """`value` as a UUID; a ValueError "<what> <value> is not a UUID" when it is not one."""
    parsed = parse_uuid(value)
    if parsed is None:
        raise ValueError(f"{what} {value!r} is not a UUID")
    return parsed


def optional_uuid(value: object, what: str) -> uuid.UUID | None:
    """`require_uuid`, except that None (no id given) is None."""
    return None if value is None else require_uuid(value, what)
