"""How big a value is as JSON: the unit every size cap of the flow language is measured in."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

#: The deepest a value of a run may nest lists and objects (inputs, decisions, outputs):
#: far below what any part of the engine can read or write, whatever it wraps it in.
MAX_VALUE_DEPTH = 256


def value_depth(value: Any, stop_after: int = MAX_VALUE_DEPTH) -> int:
    """How deeply `value` nests lists and dicts (walked without recursion, so the answer does
    not depend on the stack); stops counting once past `stop_after`.
    """
    if not isinstance(value, list | tuple | dict):
        return 0
    deepest, todo = 0, [(value, 1)]
    while todo:  # only containers are queued: an agent's long list of scalars costs one pass
        item, depth = todo.pop()
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        todo.extend((c, depth + 1) for c in children if isinstance(c, list | tuple | dict))
    return deepest


def json_size(value: Any) -> int:
    """How many bytes `value` takes as JSON: what every size cap is measured in."""
    return 0 if value is None else len(json.dumps(value, default=_fields))


def model_size(model: BaseModel) -> int:
    """`json_size` of a model (an activity's argument), whatever text its values hold."""
    try:
        return len(model.model_dump_json())
    except ValueError:  # pydantic refuses lone surrogates and very deep nesting; json does not
        return json_size(model)


def _fields(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {name: getattr(value, name) for name in type(value).model_fields}
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
