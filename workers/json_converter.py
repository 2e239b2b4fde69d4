r"""The payload converter every client and worker of the engine shares: pydantic's, made
to read and write any JSON a caller may send.

Pydantic's JSON parser refuses two things JSON allows: a lone UTF-16 surrogate
escape (`"\ud800"`) and nesting deeper than about 200 levels; its writer refuses
both too. In a workflow, such a refusal fails the workflow task, over and over: a
run input, a signal or an activity's result (an API's reply) carrying one would
wedge the run. Where pydantic refuses, Python's own `json` module takes over, and the
value is validated as before, up to MAX_JSON_DEPTH levels of nesting. That bound is
fixed and checked before parsing: Python's own limit counts the frames already on the
stack, so a value near it decoded when a run started and failed when the same history
was replayed for a query (a nondeterminism error on a closed run).
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

from flow_language.sizes import value_depth
from persistence.storable import escaped_surrogates

#: The deepest nesting any payload may have, whatever the stack holds when it is read (one
#: frame per level, against Python's 1,000). A run's own values are bounded lower
#: (`flow_language.sizes.MAX_VALUE_DEPTH`), leaving room for what wraps them.
MAX_JSON_DEPTH = 400


def json_depth(data: bytes, stop_after: int = MAX_JSON_DEPTH) -> int:
    """How deeply the JSON text nests arrays and objects (counted without parsing, so it
    takes no stack); stops counting once past `stop_after`.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_after:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


class _AnyJSONConverter(PydanticJSONPlainPayloadConverter):
    def to_payload(self, value: Any) -> Payload | None:
        try:
            return super().to_payload(value)
        except (PydanticSerializationError, ValueError):  # a lone surrogate, deep nesting
            if value_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
                raise ValueError(
                    f"a value nested more than {MAX_JSON_DEPTH} levels deep cannot be sent"
                ) from None
            # `ensure_ascii` writes a lone surrogate as its escape, which JSON allows.
            data = json.dumps(value, separators=(",", ":"), default=_plain)
            return Payload(metadata={"encoding": self.encoding.encode()}, data=data.encode())

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        try:
            return super().from_payload(payload, type_hint)
        except ValidationError as refused:
            try:
                depth = json_depth(payload.data)
                if depth > MAX_JSON_DEPTH:
                    raise ValueError(
                        f"nested more than {MAX_JSON_DEPTH} levels deep (the most a value may be)"
                    )
                value = json.loads(payload.data)
            except (ValueError, RecursionError) as exc:  # not JSON, or nested too deeply
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

    One frame per level (no comprehensions, which add one each): the depth is bounded by
    MAX_JSON_DEPTH, far below Python's recursion limit wherever this runs.
    """
    if isinstance(value, str):
        return escaped_surrogates(value)
    if isinstance(value, list):
        items = []
        for item in value:
            items.append(_surrogates_escaped(item))
        return items
    if isinstance(value, dict):
        mapping = {}
        for key, item in value.items():
            mapping[escaped_surrogates(key)] = _surrogates_escaped(item)
        return mapping
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
