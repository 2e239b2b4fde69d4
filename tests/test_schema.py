"""The migrated schema against the data-model document and the SQLAlchemy models."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.base import Base
from persistence.migrate import alembic_config, current_revision, upgrade_async
from tests import reference_model
from tests.conftest import DatabaseFactory

DOC = reference_model.find_reference_doc()
needs_doc = pytest.mark.skipif(DOC is None, reason="../shared/reference is not beside the repo")

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


@needs_doc
async def test_every_documented_table_and_column_exists_with_its_type(engine: AsyncEngine) -> None:
    assert DOC is not None
    doc = reference_model.parse(DOC)
    assert len(doc) == 21, sorted(doc)  # eighteen tables in sections 1-5, three in section 7
    rows = await _rows(
        engine,
        "SELECT c.table_name, c.column_name, format_type(a.atttypid, a.atttypmod) AS type "
        "FROM information_schema.columns c "
        "JOIN pg_attribute a ON a.attrelid = ('public.' || c.table_name)::regclass "
        " AND a.attname = c.column_name WHERE c.table_schema = 'public'",
    )
    actual = {(r["table_name"], r["column_name"]): r["type"] for r in rows}
    problems = []
    for table in doc.values():
        for column, doc_type in table.columns.items():
            got = actual.get((table.name, column))
            want = reference_model.postgres_type(doc_type)
            if got != want:
                problems.append(f"{table.name}.{column}: want {want}, got {got}")
    assert not problems, "\n".join(problems)


@needs_doc
async def test_every_documented_index_exists(engine: AsyncEngine) -> None:
    assert DOC is not None
    indexes = await _rows(engine, INDEX_SQL)
    missing = []
    for table in reference_model.parse(DOC).values():
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
