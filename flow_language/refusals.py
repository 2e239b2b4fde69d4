"""Why a run is refused before any node runs, in the words its row and its failure carry.

`prepare_flow` sorts what stops a run into three kinds, so a caller can tell a
broken drawing from bad inputs or from an id that names nothing, and the
client's own input check words its refusal the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: The definition (or the request's way of naming one) is broken.
INVALID_FLOW = "InvalidFlow"
#: The definition is fine; the inputs break the start node's inputSchema.
INVALID_INPUTS = "InvalidInputs"
#: A tenant, workspace, user, workflow or run the request or the flow names does not exist
#: (or belongs to another tenant, which a run may not tell apart from not existing).
UNKNOWN_REFERENCE = "UnknownReference"
#: Postgres refused the run row itself (a value it cannot hold).
RUN_RECORD_REJECTED = "RunRecordRejected"
#: the run id keys an earlier run's record (nothing is written)
RUN_ID_REUSED = "RunIdReused"
#: The stored flow may not run now: archived, inactive or paused, or only a draft (a run
#: that does not ask for a draft run).
FLOW_UNAVAILABLE = "FlowUnavailable"


def counted(what: str, problems: Sequence[str]) -> str:
    """`invalid flow (2 problems):` and the problems as a list, one a line."""
    n = len(problems)
    return f"{what} ({n} problem{'' if n == 1 else 's'}):\n- " + "\n- ".join(problems)


@dataclass(frozen=True)
class Refusal:
    """Why a run is refused before it starts: the message, and the error type it is
    recorded under.
    """

    error: str
    error_type: str


def refusal(
    *, references: Sequence[str], flow: Sequence[str], inputs: Sequence[str]
) -> Refusal | None:
    """The run's failure, or None when nothing stops it.

    Unknown references are plain sentences ("tenant … does not exist"), one a line,
    and decide the type when there are any; definition and input problems follow as
    counted lists, so every problem is still reported at once.
    """
    parts = list(references)
    if flow:
        parts.append(counted("invalid flow", flow))
    if inputs:
        parts.append(counted("invalid inputs", inputs))
    if not parts:
        return None
    kind = UNKNOWN_REFERENCE if references else INVALID_FLOW if flow else INVALID_INPUTS
    return Refusal("\n".join(parts), kind)
