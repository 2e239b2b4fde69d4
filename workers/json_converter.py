r"""The payload converter every client and worker of the engine shares: pydantic's, made
to read and write any JSON a caller may send.

Pydantic's JSON parser refuses two things JSON allows: a lone UTF-16 surrogate
escape (`"\ud800"`) and nesting deeper than about 200 levels; its writer refuses
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

from persistence.storable import escaped_surrogates


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
        except ValidationError as refused:
            try:
                value = json.loads(payload.data)
            except (ValueError, RecursionError) as exc:  # not JSON, or nested past Python's limit
                if type_hint is None or type_hint is Any:
                    # An argument taken as it comes (FlowRun's, a raw signal's): its handler
                    # refuses it in words. Raising here would fail the workflow task for ever.
                    return UnreadableJSON(f"{type(exc).__name__}: {str(exc)[:200]}")
                raise refused from None
            try:
                value = _surrogates_escaped(value)
            except RecursionError:  # as deep as json itself could go: too deep to walk
                if type_hint is None or type_hint is Any:
                    return UnreadableJSON("RecursionError: nested too deeply")
                raise refused from None
            return TypeAdapter(type_hint if type_hint is not None else Any).validate_python(value)


def _surrogates_escaped(value: Any) -> Any:
    r"""`value` with each lone surrogate written as its escape (`\ud800`, six characters):
    not text, so pydantic refuses it in any text field; the rows keep it the same way.
    """
    if isinstance(value, str):
        return escaped_surrogates(value)
    if isinstance(value, list):
        return [_surrogates_escaped(v) for v in value]
    if isinstance(value, dict):
        return {_surrogates_escaped(k): _surrogates_escaped(v) for k, v in value.items()}
    return value


class UnreadableJSON(str):
    """A payload that is not JSON Python can read, standing in for the value it lacks."""


def _plain(value: Any) -> Any:
    """One level of a value `json` cannot write itself; `json` recurses into the rest
    (pydantic's own dump would stop at its depth limit again).
    """
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
