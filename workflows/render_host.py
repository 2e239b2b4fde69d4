"""How templates render inside a run: what the pure flow language asks of the workflow.

The flow language (`flow_language.templates`) knows nothing of Temporal; this host
gives it the three things that must come from the run so that a replay renders
exactly as the first execution did.
"""

from __future__ import annotations

import random
from datetime import datetime

from temporalio import workflow

from workflows import patches

with workflow.unsafe.imports_passed_through():
    from flow_language.templates import TaskSteps


class WorkflowRenderHost:
    """One per run (a replay makes a new one, so nothing carries over from an earlier run)."""

    def __init__(self) -> None:
        self._task: datetime | None = None
        self._steps = TaskSteps()

    def metered(self) -> bool:
        """Steps are counted, except in runs started before they were: a template that
        rendered there must render on replay.
        """
        try:
            return patches.patched(patches.TEMPLATE_BUDGET)
        except workflow.ReadOnlyContextError:  # a query: no commands, and nothing to replay
            return True

    def task_steps(self) -> TaskSteps:
        """Renders of one workflow task share a counter; `workflow.now()` names the task
        (the same for all its renders, and on replay).
        """
        now = workflow.now()
        if now != self._task:
            self._task, self._steps = now, TaskSteps()
        return self._steps

    def random(self) -> random.Random:
        """The run's own generator, seeded in its history."""
        return workflow.random()
