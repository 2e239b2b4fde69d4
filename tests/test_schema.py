"""The migrated schema against the data-model document and the SQLAlchemy models.

The document's tables come from the extract in `tests/data/reference_data_model.json`
(see `tests/data/README.md`), so these tests need nothing outside the repository.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.base import Base
from persistence.migrate import alembic_config, current_revision, upgrade_async
from tests import reference_model
from tests.conftest import DatabaseFactory

DOC = reference_model.load()

INDEX_SQL = """
SELECT t.relname AS table_name, i.indisprimary AS is_pk, i.indisunique AS is_unique,
       am.amname AS method,
       array_agg(a.attname ORDER BY k.ord) AS columns,
       array_agg(opc.opcname ORDER BY k.ord) AS opclasses
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'
CROSS JOIN LATERAL unnest(i.indkey, i.indclass) WITH ORDINALITY AS k(attnum, opc_oid, ord)
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
JOIN pg_opclass opc ON opc.oid = k.opc_oid
GROUP BY t.relname, ic.relname, i.indisprimary, i.indisunique, am.amname
"""


async def _rows(engine: AsyncEngine, sql: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql))).mappings()]


def test_the_extract_holds_every_documented_table() -> None:
    """The extract is whole: a truncated or hand-broken file would make the tests below vacuous."""
    assert len(DOC) == 21, sorted(DOC)  # eighteen tables in sections 1-5, three in section 7
    for table in DOC.values():
        assert table.indexes, table.name
        assert table.indexes[0].kind == "pk", table.name
        for doc_type in table.columns.values():
            reference_model.postgres_type(doc_type)  # raises on a type the tests cannot map
        for index in table.indexes:
            assert index.kind in {"pk", "unique", "index", "gin"}, (table.name, index)
            assert set(index.columns) <= set(table.columns), (table.name, index)


def test_the_extract_tool_reads_the_documents_layout(tmp_path: Path) -> None:
    """`python -m tests.reference_model` rebuilds the extract from the document: its parser
    keeps sections 1-5 and 7, mends the nameless `email` row, and reads every index form.
    """
    doc = tmp_path / reference_model.REFERENCE_DOC
    doc.write_text(
        "\n".join(
            [
                "1. User & Authentication Models",
                "Users",
                "Stores users.",
                "| Column | Type | Description |",
                "|---|---|---|",
                "| id | UUID | Primary key |",
                "| VARCHAR(255) | User's email address | |",
                "| tags | JSONB | Labels |",
                "Indexes: - Primary Key: id - Unique Index: (email) - Index: (id, tags)"
                " - Index: gin(tags jsonb_path_ops)",
                "6. Marketplace Models",
                "Listings",
                "Not the engine's.",
                "| Column | Type | Description |",
                "|---|---|---|",
                "| id | UUID | Primary key |",
                "7. Multi-Modal Agent Models",
                "Vision_Models",
                "Models.",
                "| Column | Type | Description |",
                "|---|---|---|",
                "| id | UUID | Primary key |",
                "| settings | JSONB | Defaults |",
                "Indexes: - Primary Key: id",
                "8. Edge Computing Models",
            ]
        )
    )
    tables = reference_model.parse(doc)
    assert list(tables) == ["users", "vision_models"]
    assert tables["users"].columns == {"id": "UUID", "email": "VARCHAR(255)", "tags": "JSONB"}
    assert [(i.kind, i.columns) for i in tables["users"].indexes] == [
        ("pk", ("id",)),
        ("unique", ("email",)),
        ("index", ("id", "tags")),
        ("gin", ("tags",)),
    ]
    out = tmp_path / "extract.json"
    out.write_text(json.dumps(reference_model.to_json(tables, doc)))
    assert reference_model.load(out) == tables


async def test_every_documented_table_and_column_exists_with_its_type(engine: AsyncEngine) -> None:
    rows = await _rows(
        engine,
        "SELECT c.table_name, c.column_name, format_type(a.atttypid, a.atttypmod) AS type "
        "FROM information_schema.columns c "
        "JOIN pg_attribute a ON a.attrelid = ('public.' || c.table_name)::regclass "
        " AND a.attname = c.column_name WHERE c.table_schema = 'public'",
    )
    actual = {(r["table_name"], r["column_name"]): r["type"] for r in rows}
    problems = []
    for table in DOC.values():
        for column, doc_type in table.columns.items():
            got = actual.get((table.name, column))
            want = reference_model.postgres_type(doc_type)
            if got != want:
                problems.append(f"{table.name}.{column}: want {want}, got {got}")
    assert not problems, "\n".join(problems)


async def test_every_documented_index_exists(engine: AsyncEngine) -> None:
    indexes = await _rows(engine, INDEX_SQL)
    missing = []
    for table in DOC.values():
        mine = [i for i in indexes if i["table_name"] == table.name]
        for want in table.indexes:
            cols = list(want.columns)
            found = any(
                list(i["columns"]) == cols
                and (
                    (want.kind == "pk" and i["is_pk"])
                    or (want.kind == "unique" and i["is_unique"])
                    or (want.kind == "index" and i["method"] == "btree")
                    or (
                        want.kind == "gin"
                        and i["method"] == "gin"
                        and list(i["opclasses"]) == ["jsonb_path_ops"]
                    )
                )
                for i in mine
            )
            if not found:
                missing.append(f"{table.name}: {want.kind} {cols}")
    assert not missing, "\n".join(missing)


async def test_run_and_task_identities_are_unique(engine: AsyncEngine) -> None:
    indexes = await _rows(engine, INDEX_SQL)
    unique = {(i["table_name"], tuple(i["columns"])) for i in indexes if i["is_unique"]}
    assert ("workflow_runs", ("orchestrator_run_id",)) in unique
    assert ("task_instances", ("workflow_run_id", "orchestrator_task_id")) in unique


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    """A model change without a migration (or the reverse) shows up here."""

    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(ctx, Base.metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_migrate_is_safe_to_run_twice_on_an_empty_database(
    databases: DatabaseFactory,
) -> None:
    url = await databases.create()
    assert await current_revision(url) is None
    await upgrade_async(url)
    head = await current_revision(url)
    await upgrade_async(url)
    script_head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert await current_revision(url) == head == script_head


async def test_status_columns_refuse_values_outside_the_data_model(engine: AsyncEngine) -> None:
    from sqlalchemy.exc import IntegrityError

    async with engine.connect() as conn:
        with pytest.raises(IntegrityError, match="ck_workflow_runs_status"):
            await conn.execute(
                text("INSERT INTO workflow_runs (orchestrator_run_id, status) VALUES ('x', 'done')")
            )
        await conn.rollback()


async def test_migration_0007_goes_down_and_up_again(databases: DatabaseFactory) -> None:
    """The triggers-and-progress columns come off cleanly, and back."""
    url = await databases.create()
    await upgrade_async(url)
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0006")
    assert await current_revision(url) == "0006"
    await upgrade_async(url)
    assert await current_revision(url) == "0007"
