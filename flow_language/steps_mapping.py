"""What each step of the steps/connections format becomes in the drawing the engine runs.

Kept apart from `steps_format` (the document, its connections and triggers) because this
is the part that grows with the engine's node types. Every step becomes exactly one node
with the step's id, so rows, templates (`nodes.<id>`) and messages name the step the user
wrote; a step whose own fields are refused still becomes a node (with an empty config, in
`refused`), so the connections to it and the steps after it are judged as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flow_language.definition import ACTIVITY_AGENT_TYPES, AGENT_TYPES
from flow_language.templates import is_template, is_whole_expression

#: The platform's step types.
STEP_TYPES = ("agent", "condition", "loop", "parallel", "webhook", "wait")
#: Engine node types a step may also name, for what the platform's types cannot say.
EXTRA_STEP_TYPES = ("transform", "hitl", "end")
STRATEGIES = ("retry", "skip", "fail")
#: A step type's node type (an `agent` step's comes from its config).
_NODE_TYPE = {
    "condition": "condition",
    "loop": "loop",
    "parallel": "transform",
    "webhook": "api",
    "wait": "wait",
    "transform": "transform",
    "hitl": "hitl",
    "end": "end",
}
#: Keys of an agent's (or webhook's) config that are the node's settings, not its agent's.
_DATA_KEYS = ("agentId", "timeoutSeconds", "inputSchema", "outputSchema")
_ERROR_HANDLING_KEYS = ("strategy", "maxRetries", "retryDelay")
#: The most retries a step may ask for (Temporal's policy here allows 100 attempts).
MAX_RETRIES = 99
#: The longest first retry delay, in milliseconds: a day.
MAX_RETRY_DELAY_MS = 86_400_000


@dataclass(frozen=True)
class Connection:
    """One readable connection; `when` is its test, None for an unconditional one."""

    index: int
    source: str
    target: str
    when: str | bool | None = None
    #: it carried a `condition` that was refused (the condition step is then refused)
    broken: bool = False

    def edge(self, steps: StepReader) -> dict[str, Any]:
        """The edge; out of a condition step it leaves by the handle named for its target."""
        e: dict[str, Any] = {"id": f"connections[{self.index}]", "source": self.source}
        e["target"] = self.target
        if steps.by_id[self.source].get("type") == "condition" and self.source not in steps.refused:
            e["sourceHandle"] = self.target
        return e


def connection_condition(
    value: Any, where: str, problems: list[str]
) -> tuple[str | bool | None, bool]:
    """A connection's test as a condition branch's `when`, and whether it was refused.

    `{"when": "{{ ... }}"}` (or a boolean) is taken as it is; `{"expression": "..."}` is
    wrapped in `{{ }}`. A `when` that is plain text is refused: it would read as always
    true, where its author surely meant an expression.
    """
    if value is None:
        return None, False
    if not isinstance(value, dict) or len(set(value) & {"when", "expression"}) != 1:
        problems.append(
            f"{where}: condition: must be an object with one of `when` (a template or a "
            "boolean) or `expression` (a template expression without braces)"
        )
        return None, True
    before = len(problems)
    for key in sorted(set(value) - {"when", "expression"}):
        problems.append(f"{where}: condition.{key}: unknown key (use `when` or `expression`)")
    when = value.get("when")
    if "expression" in value:
        expression = value["expression"]
        if isinstance(expression, str) and expression.strip():
            when = "{{ " + expression.strip() + " }}"
            if not is_whole_expression(when):  # `false }}{{ false` would read as text, yes
                problems.append(f"{where}: condition.expression: must be one expression")
        else:
            problems.append(f"{where}: condition.expression: must be a non-empty expression")
    elif isinstance(when, str) and not is_template(when):
        problems.append(
            f"{where}: condition.when: {when!r} is plain text, which is always true; write "
            "it as a template (`{{ ... }}`) or use `expression`"
        )
    elif not isinstance(when, str | bool):
        problems.append(f"{where}: condition.when: must be a template or a boolean")
    if len(problems) > before:
        return None, True
    return when, False


class StepReader:
    """The steps of one document: their ids, the loops they sit in, and their nodes."""

    def __init__(self, raw_steps: list[Any], problems: list[str]) -> None:
        self.problems = problems
        #: each step id's first step (a later one with the same id is reported and left out)
        self.by_id: dict[str, dict[str, Any]] = {}
        self.refused: set[str] = set()
        first_index: dict[str, int] = {}
        for i, step in enumerate(raw_steps):
            if not isinstance(step, dict):
                problems.append(f"steps[{i}]: must be an object with `id`, `type` and `config`")
                continue
            step_id = step.get("id")
            if not isinstance(step_id, str) or not step_id:
                problems.append(f"steps[{i}]: id: must be a non-empty text")
            elif step_id in self.by_id:
                problems.append(
                    f"step {step_id!r}: duplicate step id (steps[{first_index[step_id]}] and "
                    f"steps[{i}])"
                )
            else:
                self.by_id[step_id], first_index[step_id] = step, i
        self.parent: dict[str, str] = {}
        for step_id, step in self.by_id.items():
            if step.get("type") == "loop":
                self._body(step_id, step)
        for step_id in self.parent:
            seen, at = {step_id}, self.parent.get(step_id)
            while at is not None and at not in seen:
                seen.add(at)
                at = self.parent.get(at)
            if at == step_id:
                problems.append(f"step {step_id!r}: loops contain each other around it")
                self.refused.add(step_id)

    def _body(self, loop_id: str, step: dict[str, Any]) -> None:
        config = step.get("config", {})
        body = config.get("body", []) if isinstance(config, dict) else []
        if not isinstance(body, list) or not all(isinstance(b, str) for b in body):
            self.problems.append(f"step {loop_id!r}: config.body: must be a list of step ids")
            self.refused.add(loop_id)
            return
        for member in body:
            if member not in self.by_id:
                self.problems.append(f"step {loop_id!r}: config.body: {member!r} names no step")
            elif member == loop_id:
                self.problems.append(f"step {loop_id!r}: config.body: a loop cannot contain itself")
            elif member in self.parent:
                self.problems.append(
                    f"step {loop_id!r}: config.body: {member!r} is already in the body of "
                    f"{self.parent[member]!r}; a step belongs to one loop"
                )
            else:
                self.parent[member] = loop_id

    def nodes(self, connections: list[Connection]) -> list[dict[str, Any]]:
        """One node a step, in the steps' order."""
        return [self._node(step_id, step, connections) for step_id, step in self.by_id.items()]

    def _node(
        self, step_id: str, step: dict[str, Any], connections: list[Connection]
    ) -> dict[str, Any]:
        where = f"step {step_id!r}"
        data: dict[str, Any] = {}
        name = step.get("name")
        if isinstance(name, str) and name:
            data["label"] = name
        elif name is not None:
            self.problems.append(f"{where}: name: must be a non-empty text")
        for key in ("inputs", "outputs"):
            value = step.get(key)
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                self.problems.append(f"{where}: {key}: must be a list of texts")
        # Problems from here on leave the node without a config worth checking further.
        problems_before = len(self.problems)
        lifted: list[str] = []
        kind, config = step.get("type"), step.get("config", {})
        node_type = _NODE_TYPE.get(kind) if isinstance(kind, str) else None
        if kind not in (*STEP_TYPES, *EXTRA_STEP_TYPES):
            self.problems.append(
                f"{where}: type: unknown step type {kind!r} (one of "
                f"{', '.join(STEP_TYPES)}; or the engine's {', '.join(EXTRA_STEP_TYPES)})"
            )
        elif not isinstance(config, dict):
            self.problems.append(f"{where}: config: must be a JSON object")
        else:
            config = dict(config)
            if kind == "agent":
                node_type = self._agent_type(where, config)
            if kind in ("agent", "webhook"):
                lifted = self._lift_data(where, config, data)
            config = self._config(step_id, where, kind, config, connections)
        refused = len(self.problems) > problems_before or step_id in self.refused
        self.problems.extend(lifted)  # a bad setting leaves the config worth checking
        # errorHandling problems leave the config sound: they do not refuse the step
        self._error_handling(where, step.get("errorHandling"), node_type, data)
        node: dict[str, Any] = {"id": step_id, "type": node_type or "transform"}
        if step_id in self.parent:
            node["parentId"] = self.parent[step_id]
        if refused:
            self.refused.add(step_id)
            data = {k: v for k, v in data.items() if k == "label"}
            config = {}
        node["data"] = {**data, "config": config}
        return node

    def _agent_type(self, where: str, config: dict[str, Any]) -> str | None:
        named = [config.pop(k) for k in ("agentType", "type") if k in config]
        if len(named) == 2 and named[0] != named[1]:
            self.problems.append(
                f"{where}: config.agentType {named[0]!r} and config.type {named[1]!r} disagree"
            )
            return None
        if not named:
            self.problems.append(
                f"{where}: config.agentType: missing; an agent step names its agent "
                f"(one of {', '.join(AGENT_TYPES)})"
            )
            return None
        if named[0] not in AGENT_TYPES:
            self.problems.append(
                f"{where}: config.agentType: unknown agent type {named[0]!r} "
                f"(one of {', '.join(AGENT_TYPES)})"
            )
            return None
        return str(named[0])

    def _lift_data(self, where: str, config: dict[str, Any], data: dict[str, Any]) -> list[str]:
        """Move the node's own settings out of an agent's config into `data`; the problems of
        those that are refused.
        """
        problems: list[str] = []
        for key in _DATA_KEYS:
            if key not in config:
                continue
            value = config.pop(key)
            if key == "agentId":
                good = isinstance(value, str) and bool(value)
            elif key == "timeoutSeconds":
                good = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            else:
                good = isinstance(value, dict)
            if good:
                data[key] = value
            else:
                kinds = {"agentId": "an id", "timeoutSeconds": "a number of seconds over 0"}
                problems.append(
                    f"{where}: config.{key}: must be {kinds.get(key, 'a JSON Schema object')}"
                )
        return problems

    def _config(
        self,
        step_id: str,
        where: str,
        kind: str,
        config: dict[str, Any],
        connections: list[Connection],
    ) -> dict[str, Any]:
        """The node's config: the step's, but for the types whose config the format shapes."""
        if kind == "loop":
            config.pop("body", None)
        if kind == "parallel":
            for key in sorted(set(config) - {"output"}):
                self.problems.append(
                    f"{where}: config.{key}: unknown key; a parallel step starts every step it "
                    "connects to, and takes only `output` (what it passes on, default null)"
                )
            return {"output": config.get("output")}
        if kind != "condition":
            return config
        for key in sorted(config):
            self.problems.append(
                f"{where}: config.{key}: unknown key; a condition step's branches are the "
                "`condition`s of its outgoing connections, so its config stays empty"
            )
        out = [c for c in connections if c.source == step_id]
        branches = [{"handle": c.target, "when": c.when} for c in out if c.when is not None]
        defaults = [c for c in out if c.when is None and not c.broken]
        if any(c.broken for c in out):  # reported with the connection
            self.refused.add(step_id)
        if not branches and not any(c.broken for c in out):
            self.problems.append(
                f"{where}: a condition step needs an outgoing connection with a `condition`"
            )
        if len(defaults) > 1:
            listed = ", ".join(f"connections[{c.index}]" for c in defaults)
            self.problems.append(
                f"{where}: {len(defaults)} connections without a `condition` ({listed}); a "
                "condition step has one default at most (lead it into a parallel step to start "
                "several)"
            )
        shaped: dict[str, Any] = {"branches": branches}
        if defaults:
            shaped["default"] = defaults[0].target
        return shaped

    def _error_handling(
        self, where: str, value: Any, node_type: str | None, data: dict[str, Any]
    ) -> None:
        """`errorHandling` as the node's `onError` and `retry` (retryDelay in milliseconds)."""
        if value is None:
            return
        if not isinstance(value, dict):
            self.problems.append(f"{where}: errorHandling: must be an object with `strategy`")
            return
        for key in sorted(set(value) - set(_ERROR_HANDLING_KEYS)):
            self.problems.append(
                f"{where}: errorHandling.{key}: unknown key (use {', '.join(_ERROR_HANDLING_KEYS)})"
            )
        before = len(self.problems)  # every bad field is named, then the step is left as is
        strategy = value.get("strategy")
        if strategy not in STRATEGIES:
            self.problems.append(
                f"{where}: errorHandling.strategy: {strategy!r} is none of {', '.join(STRATEGIES)}"
            )
        retries, delay = value.get("maxRetries"), value.get("retryDelay")
        if retries is not None and not _whole(retries, 0, MAX_RETRIES):
            self.problems.append(
                f"{where}: errorHandling.maxRetries: must be a whole number from 0 to {MAX_RETRIES}"
            )
        if delay is not None and not _whole(delay, 1, MAX_RETRY_DELAY_MS):
            self.problems.append(
                f"{where}: errorHandling.retryDelay: must be a whole number of milliseconds "
                f"from 1 to {MAX_RETRY_DELAY_MS}"
            )
        if len(self.problems) > before:
            return
        if strategy == "skip":
            data["onError"] = "continue"
        if node_type is None:  # an unknown type or agent, reported already
            return
        if node_type not in ACTIVITY_AGENT_TYPES:
            if strategy == "retry" or retries is not None or delay is not None:
                self.problems.append(
                    f"{where}: errorHandling: only steps that call out (agents other than "
                    "workflow, webhooks) are retried; use strategy 'skip' or 'fail' without "
                    "retries"
                )
            return
        retry: dict[str, Any] = {}
        if retries is not None:
            retry["maxAttempts"] = retries + 1
        elif strategy != "retry":
            retry["maxAttempts"] = 1  # skip and fail mean at the first failure
        if delay is not None:
            retry["initialIntervalSeconds"] = delay / 1000
        if retry:
            data["retry"] = retry


def _whole(value: Any, least: int, most: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= most
