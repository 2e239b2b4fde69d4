"""Every workflow type the worker registers."""

from __future__ import annotations

WORKFLOWS: list[type] = []
