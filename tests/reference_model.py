"""Reads the platform's data-model document (sections 1-5 and 7) into tables, columns, indexes.

The schema tests compare the migrated database with what the document says,
so a column or index the product owner listed cannot silently go missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REFERENCE_DOC = "000_6c3e3f66f9da91a9.txt"
_TYPE_RE = re.compile(r"^(UUID|VARCHAR\(\d+\)|TEXT|JSONB|TIMESTAMP|BOOLEAN|INTEGER|DECIMAL)$")


@dataclass
class DocIndex:
    kind: str  # "pk", "unique", "index", "gin"
    columns: tuple[str, ...]


@dataclass
class DocTable:
    name: str
    columns: dict[str, str] = field(default_factory=dict)
    indexes: list[DocIndex] = field(default_factory=list)


def find_reference_doc() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "reference" / REFERENCE_DOC
        if candidate.exists():
            return candidate
    return None


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
