"""Connecting to Temporal with the converter every component of the worker shares."""

from __future__ import annotations

import dataclasses

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.converter import PayloadCodec

from workers.json_converter import DATA_CONVERTER
from workflows import search_attributes


async def connect(address: str, namespace: str, codec: PayloadCodec | None = None) -> Client:
    """A client using the engine's payload converter, and `codec` (PAYLOAD_KEYS) if any."""
    # The converter writes plain JSON payloads, so any Temporal client (the CLI,
    # another language) can start runs and read results; with a codec, those holding
    # the keys can (`meta-agent codec-server`).
    converter = DATA_CONVERTER
    if codec is not None:
        converter = dataclasses.replace(DATA_CONVERTER, payload_codec=codec)
    return await Client.connect(address, namespace=namespace, data_converter=converter)


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the CONTRACT's search attributes that the namespace lacks; returns those added.

    The dev server registers them at start; a production cluster may not have them yet.
    """
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in search_attributes.ALL
        if key.name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)
