"""FlowRun's argument, taken raw and judged here.

An argument that does not decode as `FlowRunInput` (or none, or two) would otherwise fail
every workflow task for ever, with no row and no way to cancel; so it is decoded by hand
and a bad one becomes a plain reason the run records as its failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from flow_language.sizes import MAX_VALUE_DEPTH, value_depth
    from workflows.contract import Checkpoint, FlowRunInput


def decode_argument(args: Sequence[Any], continued: bool) -> tuple[FlowRunInput, str | None]:
    """The run's request and checkpoint, or an empty request and why the argument is refused.

    A run continued as new carries its checkpoint as a second argument; only FlowRun writes
    one, since a checkpoint skips `prepare_flow` (and with it every tenant check).
    """
    try:
        if len(args) != 1 and not (continued and len(args) == 2):
            raise ValueError(f"FlowRun takes one argument (a JSON object), got {len(args)}")
        params = FlowRunInput.model_validate(args[0])
        if len(args) == 2:  # the checkpoint FlowRun carried apart from the request
            params.checkpoint = Checkpoint.model_validate(args[1])
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'the argument'}: {err['msg']}"
                for err in exc.errors()
            )
        else:
            problems = str(exc)
        return FlowRunInput(), problems
    if params.checkpoint is not None and not continued:
        return FlowRunInput(), "checkpoint: only FlowRun writes one, when it continues as new"
    return params, None


def too_deep(params: FlowRunInput) -> str | None:
    """Why the argument nests too deeply for the engine to carry it, if it does."""
    for name in ("inputs", "definition"):
        if value_depth(getattr(params, name)) > MAX_VALUE_DEPTH:
            return f"{name}: nested more than {MAX_VALUE_DEPTH} levels deep"
    return None
