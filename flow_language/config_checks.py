"""Fixed-format config values that JSON Schema alone cannot judge, or words badly.

The node schemas (`flow_language/schemas/`) carry the formats the builder shows:
ids as `anyOf: [UUID, template]`, numbers as `anyOf: [number, template]`. Here
are the checks they cannot express (an ISO time with a zone, a JSON Schema
that must itself be valid) and the wording of `anyOf` failures, which
jsonschema reports only as "not valid under any of the given schemas". A
templated value (`{{ ... }}` or `{% ... %}`) is left to the run-time check
after rendering. Pure: validation runs it, and so can the builder's preview. (A
docker node's limits are held against the worker's caps by the agent, before
anything runs: the caps are the worker's settings, unknown here.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from flow_language.form_schema import unusable
from flow_language.templates import is_template, is_whole_expression

_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}

#: Config fields that are themselves JSON Schemas, by node type.
_SCHEMA_FIELDS = {"hitl": ("formSchema",), "llm": ("jsonSchema",), "vision": ("jsonSchema",)}


#: What a string of each `format` is, for a pattern that enforces the format.
_FORMAT_WORDS = {"uuid": "a UUID", "date-time": "an ISO 8601 time with a zone"}


def explain(err: ValidationError | SchemaError) -> str:
    """The error's message, with `anyOf` failures said in terms of what was wanted."""
    if err.validator == "pattern" and isinstance(err.schema, dict):
        word = _FORMAT_WORDS.get(str(err.schema.get("format")))
        if word:
            return f"{err.instance!r} is not {word}"
    if err.validator != "anyOf" or not err.context or not isinstance(err.validator_value, list):
        return err.message
    branches: list[dict[str, Any]] = [b for b in err.validator_value if isinstance(b, dict)]
    if all(sub.validator == "required" for sub in err.context):
        needs = [" and ".join(b.get("required", [])) for b in branches]
        return f"needs {' or '.join(n for n in needs if n)}"
    # A branch of the value's own type that still fails says best what is wrong with it:
    # "-1 is less than the minimum of 0" rather than "-1 is not of type 'string'".
    by_branch: dict[Any, list[ValidationError]] = {}
    for sub in err.context:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    for subs in by_branch.values():
        if any(s.validator == "type" for s in subs):
            continue
        specific = [s for s in subs if s.validator not in ("pattern", "format")]
        if specific:
            return explain(specific[0])
    return f"{err.instance!r} is not {' or '.join(_wanted(b) for b in branches)}"


def _wanted(branch: dict[str, Any]) -> str:
    if isinstance(branch.get("description"), str):
        return str(branch["description"])
    if "pattern" in branch:
        return f"a string matching {branch['pattern']!r}"
    kinds = branch.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return " or ".join(_TYPE_WORDS.get(str(k), str(k)) for k in kinds if k) or "valid"


def format_problems(node_type: str, config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, message) for each fixed-format value of `config` that is malformed."""
    for field in _SCHEMA_FIELDS.get(node_type, ()):
        schema = config.get(field)
        if not isinstance(schema, dict):
            continue  # absent, or the wrong type: the node schema reports it
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
            yield f"config.{field}{where}", f"not a valid JSON Schema: {explain(exc)}"
            continue
        problem = unusable(schema)
        if problem:  # valid, but unusable: a `$ref` to nowhere fails only once a value reaches it
            yield f"config.{field}", f"not a usable JSON Schema: {problem}"
    if node_type == "wait":
        problem = _time_problem(config.get("until"))
        if problem:
            yield "config.until", problem
    if node_type == "docker":
        yield from docker_problems(config, None)
    if node_type == "condition" and isinstance(config.get("branches"), list):
        for i, branch in enumerate(config["branches"]):
            when = branch.get("when") if isinstance(branch, dict) else None
            if isinstance(when, str) and is_template(when) and not is_whole_expression(when):
                yield (
                    f"config.branches[{i}].when",
                    "must be one `{{ ... }}` expression: text around or between templates "
                    "renders as text such as 'FalseFalse', which reads as yes",
                )


#: A network a docker node may name: a plain network name (as `docker network create` takes).
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
#: The caps on a docker node's limits: field, the setting holding the cap, its default, unit.
DOCKER_CAPS = (
    ("memLimit", "DOCKER_MAX_MEMORY_MB", 4096.0, "MB"),
    ("cpus", "DOCKER_MAX_CPUS", 4.0, "CPUs"),
    ("pidsLimit", "DOCKER_MAX_PIDS", 4096.0, "processes"),
)


def docker_network_problem(network: Any) -> str | None:
    """Why a docker node may never join `network`, whatever the worker allows.

    `host` is the worker's own network stack; `container:<id>` (and any other form with a
    colon or slash) joins another container's namespaces: both leave the tenant's sandbox.
    """
    if not isinstance(network, str) or is_template(network):
        return None
    if network.strip().lower() == "host":
        return "'host' (the worker's own network) is never allowed"
    if not _NETWORK_NAME.fullmatch(network):
        return f"{network!r} is not a network name (another container's namespace is never allowed)"
    return None


def memory_bytes(value: Any) -> int | None:
    """A `memLimit` (`512m`, `2g` or a number of bytes) in bytes; None when malformed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"([0-9]+)([bkmg]?)", value.lower()) if isinstance(value, str) else None
    return int(match[1]) * _SIZE_UNITS[match[2]] if match else None


def docker_problems(
    config: dict[str, Any], caps: Mapping[str, float] | None
) -> Iterator[tuple[str, str]]:
    """A docker node's network and limits written outright that it may never use: checked
    here so the run does not start, and again by the agent once templates are rendered.
    """
    problem = docker_network_problem(config.get("network"))
    if problem:
        yield "config.network", problem
    if caps is None:
        return
    for field, variable, _default, unit in DOCKER_CAPS:
        value = config.get(field)
        amount = memory_bytes(value) if field == "memLimit" else value
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            continue  # absent, a template, or malformed: the schema or the agent says so
        cap = caps[field]
        if amount > cap * (1 << 20 if field == "memLimit" else 1):
            yield f"config.{field}", f"{value!r} is over the cap of {cap:g} {unit} ({variable})"


def _time_problem(value: Any) -> str | None:
    """The rule `wait` applies when it runs, applied early to a value known now."""
    if not isinstance(value, str) or is_template(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not an ISO 8601 timestamp"
    if moment.tzinfo is None:
        return f"{value!r} needs a time zone (e.g. Z)"
    return None


@dataclass(frozen=True)
class UserReference:
    """A user (or role) a node names outright (not through a template), to be found in the
    database.
    """

    node_id: str
    field: str
    value: str


#: A role a node names outright: the same three strings, `value` being the role's name.
RoleReference = UserReference


def user_references(raw: Any) -> list[UserReference]:
    """The users hitl nodes name statically: `assigneeId` and each escalation's `toUser`.

    Read from the raw definition, so they are checked even when it has other problems;
    templated values are known only at run time.
    """
    return _hitl_references(raw, "assigneeId", "toUser")


def role_references(raw: Any) -> list[RoleReference]:
    """The roles hitl nodes name statically: `assigneeRole` and each escalation's `toRole`
    (read like `user_references`).
    """
    return _hitl_references(raw, "assigneeRole", "toRole")


def _hitl_references(raw: Any, own: str, step_field: str) -> list[UserReference]:
    found: list[UserReference] = []
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict) or node.get("type") != "hitl":
            continue
        data = node.get("data")
        config = data.get("config") if isinstance(data, dict) else None
        if not isinstance(config, dict):
            continue
        candidates: list[tuple[str, Any]] = [(f"config.{own}", config.get(own))]
        steps = config.get("escalation")
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if isinstance(step, dict):
                candidates.append((f"config.escalation[{i}].{step_field}", step.get(step_field)))
        for field, value in candidates:
            if isinstance(value, str) and value and not is_template(value):
                found.append(UserReference(str(node.get("id")), field, value))
    return found
