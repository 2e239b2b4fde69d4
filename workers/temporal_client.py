"""Connecting to Temporal with the converter every component of the worker shares."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from workers import telemetry
from workers.json_converter import DATA_CONVERTER
from workflows import search_attributes

log = logging.getLogger("meta_agent.worker")


async def connect(address: str, namespace: str, codec: PayloadCodec | None = None) -> Client:
    """A client using the engine's payload converter, and `codec` (PAYLOAD_KEYS) if any."""
    # The converter writes plain JSON payloads, so any Temporal client (the CLI,
    # another language) can start runs and read results; with a codec, those holding
    # the keys can (`meta-agent codec-server`).
    converter = DATA_CONVERTER
    if codec is not None:
        # Failures too: their messages and stack traces (an error echoing a URL, the input
        # a schema refused) move into an encoded, and so sealed, attribute.
        converter = dataclasses.replace(
            DATA_CONVERTER,
            payload_codec=codec,
            failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
        )
    options = telemetry.current().client_options()  # tracing plugin, metrics runtime
    return await Client.connect(address, namespace=namespace, data_converter=converter, **options)


async def connect_patiently(
    address: str, namespace: str, codec: PayloadCodec | None, stop: asyncio.Event
) -> Client | None:
    """`connect`, tried again (from 1 s, doubling, up to 30 s) while Temporal does not answer,
    until it does or `stop` is set (None then): a worker started before its Temporal (or
    during a restart) waits for it instead of exiting and being restarted in a loop.
    """
    delay = 1.0
    while True:
        try:
            return await connect(address, namespace, codec)
        except RuntimeError as exc:  # the SDK's "Failed client connect: ..."
            log.warning(
                "Temporal at %s does not answer (%s); trying again in %.0f s",
                address,
                str(exc).splitlines()[0][:200],
                delay,
            )
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return None
        except TimeoutError:
            delay = min(delay * 2, 30.0)


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
