"""The payload converter every client and worker of the engine shares: pydantic's, made
to read and write any JSON a caller may send.

Pydantic's JSON parser refuses two things JSON allows: a lone UTF-16 surrogate
escape (`"\\ud800"`) and nesting deeper than about 200 levels; its writer refuses
both too. In a workflow, such a refusal fails the workflow task, over and over: a
run input, a signal or an activity's result (an API's reply) carrying one would
wedge the run. Where pydantic refuses, Python's own `json` module takes over (up to
Python's recursion limit, about 900 levels), and the value is validated as before.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)


class _AnyJSONConverter(PydanticJSONPlainPayloadConverter):
    def to_payload(self, value: Any) -> Payload | None:
        try:
            return super().to_payload(value)
        except (PydanticSerializationError, ValueError):  # a lone surrogate, deep nesting
            # `ensure_ascii` writes a lone surrogate as its escape, which JSON allows.
            data = json.dumps(value, separators=(",", ":"), default=_plain)
            return Payload(metadata={"encoding": self.encoding.encode()}, data=data.encode())

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        try:
            return super().from_payload(payload, type_hint)
        except ValidationError as exc:
            if not any(error["type"] == "json_invalid" for error in exc.errors()):
                raise  # valid JSON of the wrong shape: pydantic's answer stands
            value = json.loads(payload.data)
            return TypeAdapter(type_hint if type_hint is not None else Any).validate_python(value)


def _plain(value: Any) -> Any:
    """One level of a value `json` cannot write itself; `json` recurses into the rest
    (pydantic's own dump would stop at its depth limit again)."""
    if isinstance(value, BaseModel):
        return {name: getattr(value, name) for name in type(value).model_fields}
    return to_jsonable_python(value)


class PayloadConverter(CompositePayloadConverter):
    """Temporal's default converters, with the JSON one above."""

    def __init__(self) -> None:
        json_converter = _AnyJSONConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER = DataConverter(payload_converter_class=PayloadConverter)
