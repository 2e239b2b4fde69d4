"""The checks of a flow's templates, made with the rest of validation before any node runs."""

from __future__ import annotations

from collections.abc import Iterable

from flow_language import templates
from flow_language.definition import ACTIVITY_AGENT_TYPES, FlowDefinition

_JINJA_GLOBALS = frozenset(
    {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"}
    | {"true", "false", "none", "True", "False", "None"}
)


def _ancestors(definition: FlowDefinition) -> dict[str, set[str]]:
    """Nodes whose outputs exist when each node runs: upstream in its scope and its loops'."""
    memo: dict[str, set[str]] = {}

    def up(node_id: str, trail: frozenset[str] = frozenset()) -> set[str]:
        if node_id in memo:
            return memo[node_id]
        if node_id in trail:  # a cycle, reported elsewhere
            return set()
        result: set[str] = set()
        for e in definition.incoming.get(node_id, []):
            if e.source in definition.by_id:
                result.add(e.source)
                result |= up(e.source, trail | {node_id})
        parent = definition.by_id[node_id].parentId
        if parent in definition.by_id:
            result |= up(parent, trail | {node_id})
        memo[node_id] = result
        return result

    return {n.id: up(n.id) for n in definition.nodes}


def template_problems(definition: FlowDefinition, skip: Iterable[str] = ()) -> list[str]:
    """Every problem of the flow's templates: too much template code, names no scope has,
    `item`/`index` outside a loop, secrets outside agents, references to nodes that do not
    exist or are not upstream. Nodes in `skip` (refused already) are not read.
    """
    problems: list[str] = []
    add = problems.append
    skipped = set(skip)
    weights = [
        (weight, node, field)
        for node in definition.nodes
        for field, weight in templates.template_code(node.data.config)
    ]
    if sum(w for w, _, _ in weights) > templates.MAX_TEMPLATE_CODE:
        _, node, field = max(weights, key=lambda w: w[0])
        add(
            f"{node.named}: {field}: the flow's templates hold "
            f"{sum(w for w, _, _ in weights):,} characters of template code (inside "
            f"{{{{ }}}} and {{% %}}), over the {templates.MAX_TEMPLATE_CODE:,} a flow may "
            "hold; this field has the most"
        )
        return problems
    upstream = _ancestors(definition)
    for node in definition.nodes:
        if node.id in skipped:
            continue
        try:
            refs = templates.references(node.data.config)
        except templates.TemplateError as exc:
            add(f"{node.named}: config: {exc}")
            continue
        unknown = refs.names - templates.SCOPE_NAMES - _JINJA_GLOBALS
        for name in sorted(unknown):
            add(
                f"{node.named}: config: unknown name {name!r} in a template "
                "(use input, nodes, item, index, run, secrets or variables)"
            )
        in_loop = node.parentId is not None or (node.type == "loop" and "while" in node.data.config)
        for name in sorted(refs.names & {"item", "index"}):
            if not in_loop:
                add(f"{node.named}: config: {name!r} exists only inside a loop body")
        if "secrets" in refs.names and node.type not in ACTIVITY_AGENT_TYPES:
            add(
                f"{node.named}: config: secrets are resolved only inside agent nodes; "
                f"a {node.type} node would write them to the run's history"
            )
        if "variables" in refs.names and not definition.variables and not refs.variables:
            add(f"{node.named}: config: reads `variables`, but the flow defines none")
        for name in sorted(refs.variables - set(definition.variables)):
            defined = ", ".join(map(repr, definition.variables)) or "none"
            add(
                f"{node.named}: config: refers to variables.{name}, which the flow does not "
                f"define (its variables: {defined})"
            )
        for ref in sorted(refs.nodes):
            if ref not in definition.by_id:
                add(f"{node.named}: config: refers to nodes.{ref}, which does not exist")
            elif ref not in upstream[node.id]:
                add(
                    f"{node.named}: config: refers to nodes.{ref}, which is not upstream "
                    "of it (its output would not exist yet)"
                )
    return problems
