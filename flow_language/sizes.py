"""How big a value is as JSON: the unit every size cap of the flow language is measured in."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel


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
