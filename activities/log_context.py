"""The node an activity works for, as every log line written meanwhile names it.

The worker's log handler (workers/logs.py) reads this for any record created
while an agent's attempt runs, whoever logs it, so a line from httpx or the SDK
still says which run, node and tenant it is about.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the type: the CLI imports this module and nothing heavy with it
    from workflows.contract import AgentTask

NODE_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("meta_agent_node", default=None)


def name_node(task: AgentTask) -> None:
    """Name `task`'s node and tenant on the lines logged for the rest of this activity task.

    Not reset on return: the SDK logs how the attempt ended after the activity returns, in
    the same asyncio task (each activity task has its own context, so nothing leaks into
    another's lines).
    """
    NODE_CONTEXT.set(
        {"node_id": task.node_id, "node_type": task.node_type, "tenant_id": task.tenant_id}
    )
