"""Every workflow type the worker registers."""

from __future__ import annotations

from workflows.flow_run import FlowRun

WORKFLOWS: list[type] = [FlowRun]
