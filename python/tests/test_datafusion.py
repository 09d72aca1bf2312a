"""ibarrow tables inside a datafusion-python SessionContext, through the FFI protocol."""

from __future__ import annotations

import datafusion
import pyarrow as pa
import pytest

import ibarrow
from conftest import ROWS, Database, people_expected


def test_odbc_table_joins_a_local_table_with_pushdown(db: Database, people: str) -> None:
    ctx = datafusion.SessionContext()
    ctx.register_table("people", ibarrow.odbc_table(db.connection_string, db.qualified(people)))
    ctx.register_record_batches(
        "bonus", [[pa.record_batch({"id": [5, 10, 15, 20000], "bonus": [1.5, 2.0, 3.0, 9.0]})]]
    )
    joined = ctx.sql(
        "SELECT p.id, p.name, b.bonus FROM people p JOIN bonus b ON p.id = b.id ORDER BY p.id"
    ).to_arrow_table()
    assert joined.to_pylist() == [
        {"id": 5, "name": "name 5", "bonus": 1.5},
        {"id": 10, "name": "name 10", "bonus": 2.0},
        {"id": 15, "name": "name 15", "bonus": 3.0},
    ]
    filtered = ctx.sql("SELECT count(*) AS n, sum(id) AS s FROM people WHERE id > 900")
    assert filtered.to_pylist() == [{"n": 100, "s": sum(range(901, ROWS + 1))}]
    plan = ctx.sql("EXPLAIN SELECT name FROM people WHERE id > 900").to_arrow_table()
    text = "\n".join(plan.column("plan").to_pylist())
    # The filter went into the table scan, not into a DataFusion FilterExec above it.
    assert "FilterExec" not in text, text
    assert "full_filters" in text or "filters=" in text, text


def test_engine_tables_register_too(pg: Database) -> None:
    table = pg.create_people()
    try:
        engine = ibarrow.Engine()
        engine.register_odbc("pg", pg.connection_string)
        ctx = datafusion.SessionContext()
        ctx.register_table("people", engine.table(f"pg.public.{table}"))
        rows = ctx.sql("SELECT id, name, amount FROM people ORDER BY id").to_arrow_table()
        got = list(zip(*(rows.column(c).to_pylist() for c in ("id", "name", "amount"))))
        assert got == people_expected()
    finally:
        pg.drop(table)


def test_a_mismatched_datafusion_version_is_refused_not_crashed(
    lite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite.native("CREATE TABLE t (x INTEGER)")
    table = ibarrow.odbc_table(lite.connection_string, "t")
    monkeypatch.setattr(datafusion, "__version__", "54.1.0")
    with pytest.raises(ibarrow.Error, match="datafusion>=55,<56"):
        datafusion.SessionContext().register_table("t", table)


def test_table_names_need_a_schema_outside_sqlite(pg: Database) -> None:
    with pytest.raises(ibarrow.ConfigError, match="schema.table"):
        ibarrow.odbc_table(pg.connection_string, "orders")
    with pytest.raises(ibarrow.SQLError, match="not found"):
        ibarrow.odbc_table(pg.connection_string, "public.no_such_table_here")
