"""Drawings built in Python: the JSON the React Flow builder saves, for scripts, benchmarks
and tests that make flows in code rather than in the builder.
"""

from __future__ import annotations

from typing import Any


def node(
    node_id: str, type_: str, config: dict[str, Any] | None = None, **data: Any
) -> dict[str, Any]:
    """A React Flow node; extra `data` fields (`label`, `onError`, ...) go beside its config.

    It carries the position the builder adds, which the engine ignores.
    """
    return {
        "id": node_id,
        "type": type_,
        "position": {"x": 0, "y": 0},
        "data": {"label": data.pop("label", node_id), "config": config or {}, **data},
    }


def edge(source: str, target: str, handle: str | None = None) -> dict[str, Any]:
    """An edge from `source` to `target`; `handle` names the source's output it leaves by."""
    e: dict[str, Any] = {"id": f"{source}-{target}", "source": source, "target": target}
    if handle is not None:
        e["sourceHandle"] = handle
    return e
