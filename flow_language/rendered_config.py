"""Checks of config values known only once rendered (`{{ input.reviewer }}`, `{{ input.delay }}`).

Validation checks every fixed-format value written outright before the run
starts; a templated one can be checked only when its node runs. These checks
run in the workflow (pure functions, no I/O), so a malformed value fails its
node with a message naming the field, instead of failing a workflow task over
and over or reaching the database as a value it refuses.
"""

from __future__ import annotations

import uuid
from typing import Any

from flow_language.config_checks import format_problems


class ConfigValueError(ValueError):
    """A rendered config value the node cannot use; the message names the field."""


#: The longest wait, timeout or deadline: ten years (a date beyond the calendar is an error).
MAX_SECONDS = 10 * 365 * 24 * 3600


def _positive_number(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigValueError(f"{field}: {value!r} is not a positive number of seconds")
    if value > MAX_SECONDS:
        raise ConfigValueError(f"{field}: {value!r} seconds is more than ten years")


def _user_id(value: Any, field: str) -> None:
    if value is None:
        return
    try:
        uuid.UUID(str(value))
    except ValueError:
        raise ConfigValueError(f"{field}: {value!r} is not a user id (a UUID)") from None
    if not isinstance(value, str):
        raise ConfigValueError(f"{field}: {value!r} is not a user id (a UUID string)")


def check_review(cfg: dict[str, Any]) -> None:
    """A rendered `hitl` config: who may decide, and when it escalates and expires."""
    title = cfg.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ConfigValueError(f"config.title: {title!r} is not a non-empty text")
    _user_id(cfg.get("assigneeId"), "config.assigneeId")
    role = cfg.get("assigneeRole")
    if role is not None and (not isinstance(role, str) or not role.strip()):
        raise ConfigValueError(f"config.assigneeRole: {role!r} is not a role name")
    if cfg.get("deadlineSeconds") is not None:
        _positive_number(cfg["deadlineSeconds"], "config.deadlineSeconds")
    priority = cfg.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5
    ):
        raise ConfigValueError(f"config.priority: {priority!r} is not a whole number from 1 to 5")
    approvals = cfg.get("requiredApprovals", 1)
    if isinstance(approvals, bool) or not isinstance(approvals, int) or approvals < 1:
        raise ConfigValueError(f"config.requiredApprovals: {approvals!r} is not a whole number ≥ 1")
    steps = cfg.get("escalation") or []
    if not isinstance(steps, list):
        raise ConfigValueError(f"config.escalation: {steps!r} is not a list of steps")
    for i, step in enumerate(steps):
        where = f"config.escalation[{i}]"
        if not isinstance(step, dict):
            raise ConfigValueError(f"{where}: {step!r} is not a step")
        _positive_number(step.get("afterSeconds"), f"{where}.afterSeconds")
        _user_id(step.get("toUser"), f"{where}.toUser")
        if not step.get("toUser") and not step.get("toRole"):
            raise ConfigValueError(f"{where}: names neither toRole nor toUser")
        role = step.get("toRole")
        if role is not None and (not isinstance(role, str) or not role.strip()):
            raise ConfigValueError(f"{where}.toRole: {role!r} is not a role name")
    for field, message in format_problems("hitl", cfg):
        raise ConfigValueError(f"{field}: {message}")


def check_wait(cfg: dict[str, Any]) -> None:
    """A rendered `wait` config: the event's name and timeout, the seconds' bound (the rest,
    and `until`, are checked in place).
    """
    if "event" in cfg:
        if not isinstance(cfg["event"], str) or not cfg["event"]:
            raise ConfigValueError(f"config.event: {cfg['event']!r} is not an event name")
        if cfg.get("timeoutSeconds") is not None:
            _positive_number(cfg["timeoutSeconds"], "config.timeoutSeconds")
    seconds = cfg.get("seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > MAX_SECONDS:
        raise ConfigValueError(f"config.seconds: {seconds!r} seconds is more than ten years")


def check_sub_flow(cfg: dict[str, Any]) -> None:
    """A rendered `workflow` node config: which stored flow, which version, what inputs."""
    flow = cfg.get("workflowId")
    if not isinstance(flow, str) or not flow.strip():
        raise ConfigValueError(f"config.workflowId: {flow!r} is not a flow id or name")
    version = cfg.get("version")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise ConfigValueError(f"config.version: {version!r} is not a version number (1, 2, ...)")
    inputs = cfg.get("inputs")
    if inputs is not None and not isinstance(inputs, dict):
        raise ConfigValueError(f"config.inputs: {inputs!r} is not an object of inputs")
