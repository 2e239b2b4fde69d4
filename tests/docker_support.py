"""Flows and waits shared by the docker agent's tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from flow_language.drawing import edge, node
from tests.docker_daemon import TEST_IMAGE


def docker_flow(config: dict[str, Any], **data: Any) -> dict[str, Any]:
    """Start, one `docker` node on the test image with `config`, and an end returning its output."""
    return {
        "nodes": [
            node("start", "start"),
            node("box", "docker", {"image": TEST_IMAGE, **config}, **data),
            node("done", "end", {"outputs": {"box": "{{ nodes.box.output }}"}}),
        ],
        "edges": [edge("start", "box"), edge("box", "done")],
    }


async def until(predicate: Any, within: float = 30) -> None:
    """Wait for `predicate()` to hold, polling; fails the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)
