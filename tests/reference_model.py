"""The platform's data model (its design document's sections 1-5 and 7): tables, columns, indexes.

The schema tests compare the migrated database with what the document says, so a
column or index the product owner listed cannot silently go missing.

The tests read `tests/data/reference_data_model.json`, an extract kept in the repo
so they run anywhere (`tests/data/README.md` says where it came from). `parse`
reads the original document, and this module's command line rewrites or checks
the extract from it when the document changes:

    python -m tests.reference_model PATH/TO/000_6c3e3f66f9da91a9.txt          # rewrite
    python -m tests.reference_model --check PATH/TO/000_6c3e3f66f9da91a9.txt  # compare
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The platform's document the extract was taken from (its name in the platform's reference set).
REFERENCE_DOC = "000_6c3e3f66f9da91a9.txt"
#: The extract the tests read.
EXTRACT = Path(__file__).resolve().parent / "data" / "reference_data_model.json"
_TYPE_RE = re.compile(r"^(UUID|VARCHAR\(\d+\)|TEXT|JSONB|TIMESTAMP|BOOLEAN|INTEGER|DECIMAL)$")


@dataclass
class DocIndex:
    """An index as the document lists it: its kind (`pk`, `unique`, `index`, `gin`) and columns."""

    kind: str  # "pk", "unique", "index", "gin"
    columns: tuple[str, ...]


@dataclass
class DocTable:
    """A table as the document describes it: column names with their document types, and indexes."""

    name: str
    columns: dict[str, str] = field(default_factory=dict)
    indexes: list[DocIndex] = field(default_factory=list)


def load(path: Path = EXTRACT) -> dict[str, DocTable]:
    """The documented tables, from the extract kept in the repo."""
    data = json.loads(path.read_text())
    return {
        name: DocTable(
            name,
            dict(table["columns"]),
            [_index_from_text(i) for i in table["indexes"]],
        )
        for name, table in data["tables"].items()
    }


def _index_from_text(text: str) -> DocIndex:
    """`"unique(name, tenant_id)"` -> DocIndex("unique", ("name", "tenant_id"))."""
    kind, _, cols = text.removesuffix(")").partition("(")
    return DocIndex(kind, tuple(c.strip() for c in cols.split(",")))


def to_json(tables: dict[str, DocTable], source: Path) -> dict[str, Any]:
    """The extract's content for `tables` parsed from the document at `source`."""
    return {
        "source": {
            "document": REFERENCE_DOC,
            "title": "Meta Agent Platform - Data Model Design",
            "sections": "1-5 (users, tenancy, workflows, HITL, agent registry), 7 (model registry)",
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "regenerate": "python -m tests.reference_model PATH/TO/" + REFERENCE_DOC,
        },
        "tables": {
            t.name: {
                "columns": t.columns,
                "indexes": [f"{i.kind}({', '.join(i.columns)})" for i in t.indexes],
            }
            for t in tables.values()
        },
    }


def _parse_indexes(line: str) -> list[DocIndex]:
    out: list[DocIndex] = []
    for part in line.removeprefix("Indexes:").split(" - "):
        part = part.strip()
        if not part:
            continue
        kind_text, _, cols_text = part.partition(":")
        cols_text = cols_text.strip()
        kind = {"Primary Key": "pk", "Unique Index": "unique", "Index": "index"}[kind_text.strip()]
        gin = re.match(r"gin\((\w+) jsonb_path_ops\)", cols_text)
        if gin:
            out.append(DocIndex("gin", (gin.group(1),)))
            continue
        cols = tuple(c.strip() for c in cols_text.strip("()").split(","))
        out.append(DocIndex(kind, cols))
    return out


def parse(path: Path) -> dict[str, DocTable]:
    """The tables of the original document's sections 1-5 and 7; the others are not the engine's."""
    lines = path.read_text().splitlines()

    def at(heading: str) -> int:
        return next(i for i, ln in enumerate(lines) if ln.startswith(heading))

    # Sections 1-5 (the engine's tables) and 7 (the model registry); 6 and 8+ are not ours.
    wanted = [*range(at("6. Marketplace")), *range(at("7. Multi-Modal"), at("8. Edge"))]
    tables: dict[str, DocTable] = {}
    current: DocTable | None = None
    for i in wanted:
        line = lines[i]
        if line.strip() == "| Column | Type | Description |":
            current = DocTable(lines[i - 2].strip().lower())
            tables[current.name] = current
            continue
        if current is None:
            continue
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if _TYPE_RE.match(cells[0]):
                # The document's users table lost the name of its `email` row.
                name, type_ = "email", cells[0]
            else:
                name, type_ = cells[0], cells[1]
            current.columns[name] = type_
        elif line.startswith("Indexes:"):
            current.indexes = _parse_indexes(line)
            current = None
    return tables


def postgres_type(doc_type: str) -> str:
    """The `format_type` spelling Postgres reports for a document type (timestamps tz-aware)."""
    varchar = re.match(r"VARCHAR\((\d+)\)", doc_type)
    if varchar:
        return f"character varying({varchar.group(1)})"
    return {
        "UUID": "uuid",
        "TEXT": "text",
        "JSONB": "jsonb",
        "TIMESTAMP": "timestamp with time zone",
        "BOOLEAN": "boolean",
        "INTEGER": "integer",
        "DECIMAL": "numeric",
    }[doc_type]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the extract from the document, or with `--check` exit 1 if the two differ."""
    ap = argparse.ArgumentParser(description="Rewrite or check the data-model extract.")
    ap.add_argument("document", type=Path, help=f"the platform's {REFERENCE_DOC}")
    ap.add_argument("--check", action="store_true", help="exit 1 if the extract differs")
    args = ap.parse_args(argv)
    fresh = to_json(parse(args.document), args.document)
    text = json.dumps(fresh, indent=2) + "\n"
    if args.check:
        if load() != parse(args.document):
            print(f"{EXTRACT} differs from {args.document}; rewrite it", file=sys.stderr)
            return 1
        print("the extract matches the document")
        return 0
    EXTRACT.parent.mkdir(exist_ok=True)
    EXTRACT.write_text(text)
    print(f"wrote {EXTRACT} ({len(fresh['tables'])} tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
