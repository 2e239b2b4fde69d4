"""Flows and waits shared by the docker agent's tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.docker_daemon import TEST_IMAGE
from tests.flows import edge, node


def docker_flow(config: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("box", "docker", {"image": TEST_IMAGE, **config}, **data),
            node("done", "end", {"outputs": {"box": "{{ nodes.box.output }}"}}),
        ],
        "edges": [edge("start", "box"), edge("box", "done")],
    }


async def until(predicate: Any, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)
