"""The query builder (ibarrow.Engine.table, ibarrow.col …) on PostgreSQL, MariaDB and SQLite:
answers are compared with ``people_expected()`` (computed in Python) and with the database's
own client; unknown columns and bad types raise InputError naming the problem; errors carry
kind, source, sqlstate and statement."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

import ibarrow as ib

from conftest import Database, people_expected


@pytest.fixture
def eng(db: Database) -> ib.Engine:
    engine = ib.Engine()
    engine.register_odbc("db", db.connection_string)
    return engine


def test_filter_compute_group_and_sort_answer_as_computed(
    db: Database, people: str, eng: ib.Engine
) -> None:
    table = f"db.{db.qualified(people)}"
    query = (
        eng.table(table)
        .filter((ib.col("id") <= 100) & ib.col("amount").is_not_null())
        .with_column("bucket", ib.col("id") % 3)
        .group_by("bucket")
        .agg(ib.count().alias("n"), ib.sum("amount").alias("total"))
        .sort(ib.col("bucket").desc())
    )
    assert query.columns == ["bucket", "n", "total"]
    got = query.to_arrow().to_pylist()

    expected: dict[int, list] = {}
    for n, _name, amount in people_expected():
        if n <= 100 and amount is not None:
            entry = expected.setdefault(n % 3, [0, Decimal(0)])
            entry[0] += 1
            entry[1] += amount
    assert [(r["bucket"], r["n"], Decimal(r["total"])) for r in got] == [
        (bucket, n, total) for bucket, (n, total) in sorted(expected.items(), reverse=True)
    ]

    # The SQL form plans to the same answer.
    assert eng.sql(query.to_sql()).to_arrow().to_pylist() == got
    # It is lazy and can be read again, by polars too.
    assert query.to_polars().height == len(got)


def test_select_isin_like_between_and_limit(db: Database, people: str, eng: ib.Engine) -> None:
    table = eng.table(f"db.{db.qualified(people)}")
    got = (
        table.filter(
            ib.col("id").isin([3, 5, 7, 500])
            | (ib.col("name").like("name 99%") & ib.col("id").between(990, 995))
        )
        .select("id", (ib.col("id") * 2).alias("twice"))
        .sort("id")
        .limit(5, offset=1)
        .to_arrow()
    )
    ids = sorted(
        n for n, name, _ in people_expected()
        if n in (3, 5, 7, 500) or (name.startswith("name 99") and 990 <= n <= 995)
    )[1:6]
    assert got.column("id").to_pylist() == ids
    assert got.column("twice").to_pylist() == [2 * n for n in ids]
    # The filter went to the database.
    plan = table.filter(ib.col("id") == 7).explain()
    assert "7" in plan


def test_join_on_equal_names_keeps_the_key_once(pg: Database, lite: Database) -> None:
    people = pg.create_people()
    try:
        lite.native("CREATE TABLE grades (id INTEGER PRIMARY KEY, grade VARCHAR(2))")
        lite.native("INSERT INTO grades VALUES (1, 'A'), (2, 'B'), (4, 'C')")
        eng = ib.Engine()
        eng.register_odbc("pg", pg.connection_string)
        eng.register_odbc("lite", lite.connection_string)
        joined = (
            eng.table(f"pg.public.{people}")
            .join(eng.table("lite.main.grades"), on="id")
            .select("id", "name", "grade")
            .sort("id")
        )
        assert joined.to_arrow().to_pylist() == [
            {"id": 1, "name": "name 1", "grade": "A"},
            {"id": 2, "name": "name 2", "grade": "B"},
            {"id": 4, "name": "name 4", "grade": "C"},
        ]
        anti = eng.table("lite.main.grades").join(
            eng.table(f"pg.public.{people}").filter(ib.col("id") < 3), on="id", how="anti"
        )
        assert anti.to_arrow().column("grade").to_pylist() == ["C"]
    finally:
        pg.drop(people)


def test_unknown_columns_and_bad_types_raise_input_error(lite: Database) -> None:
    table = lite.create_people()
    eng = ib.Engine()
    eng.register_odbc("lite", lite.connection_string)
    people = eng.table(f"lite.main.{table}")
    with pytest.raises(ib.InputError, match=r"no column `nmae`.*did you mean `name`") as err:
        people.filter(ib.col("nmae") == "x")
    assert err.value.kind == "input"
    with pytest.raises(ib.InputError, match="^filter:"):
        people.filter(ib.col("amount"))
    with pytest.raises(ib.InputError, match=r"did you mean `main`"):
        eng.table(f"lite.mian.{table}")
    with pytest.raises(ib.Error, match="no truth value"):
        people.filter((ib.col("id") > 1) and (ib.col("id") < 5))
    with pytest.raises(ib.InputError, match="unknown join"):
        people.join(people, on="id", how="sideways")


def test_a_table_still_goes_to_datafusion_python(lite: Database) -> None:
    datafusion = pytest.importorskip("datafusion")
    table = lite.create_people()
    eng = ib.Engine()
    eng.register_odbc("lite", lite.connection_string)
    ctx = datafusion.SessionContext()
    ctx.register_table("people", eng.table(f"lite.main.{table}"))
    got = pa.table(ctx.sql("SELECT count(*) AS n FROM people WHERE id <= 10"))
    assert got.column("n").to_pylist() == [10]


def test_errors_carry_kind_source_sqlstate_and_statement(pg: Database) -> None:
    eng = ib.Engine()
    eng.register_odbc("pg", pg.connection_string)
    with pytest.raises(ib.SQLError) as err:
        eng.sql("SELECT * FROM query('pg', 'SELECT nope FROM no_such_table')").to_arrow()
    assert err.value.kind == "sql"
    assert err.value.source == "pg"
    assert err.value.sqlstate == "42P01"
    assert "no_such_table" in (err.value.statement or "")
    with pytest.raises(ib.InputError) as err:
        eng.sql("SELECT 1; SELECT 2")
    assert err.value.kind == "input"
    assert err.value.source is None and err.value.sqlstate is None


def test_polars_conventions(lite: Database) -> None:
    table = lite.create_people()
    eng = ib.Engine()
    eng.register_odbc("lite", lite.connection_string)
    people = eng.table(f"lite.main.{table}")
    # `== None` is "is null" (SQL's `= NULL` would match nothing).
    nulls = people.filter(ib.col("amount") == None).select(["id"]).to_arrow()  # noqa: E711
    expected = [n for n, _, amount in people_expected() if amount is None]
    assert sorted(nulls.column("id").to_pylist()) == expected
    # Names match exactly: a capitalised name is not the column.
    with pytest.raises(ib.InputError, match=r"no column `ID`.*did you mean `id`"):
        people.select("ID")
    # `how` comes second, as in polars.
    # A table joined with itself: one side is named, as `AS` does in SQL.
    with pytest.raises(ib.InputError, match=r"alias"):
        people.join(people, "id")
    pairs = people.filter(ib.col("id") <= 3).join(
        people.filter(ib.col("id") >= 2).select("id").alias("other"), "id", "left"
    )
    assert sorted(pairs.to_arrow().column("id").to_pylist()) == [1, 2, 3]
    with pytest.raises(ib.InputError, match="a list of values"):
        ib.col("name").isin("name 1")
