"""Parameters and prepared statements from Python on PostgreSQL, MariaDB and SQLite. The
expected rows come from the people table's generator (conftest.people_expected) and from the
databases' own clients."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

import ibarrow
from conftest import Database, people_expected


def engine_with(db: Database) -> ibarrow.Engine:
    engine = ibarrow.Engine()
    engine.register_odbc("src", db.connection_string)
    return engine


def test_list_and_dict_params_of_every_kind_select_the_right_rows(db: Database, people: str) -> None:
    engine = engine_with(db)
    table = f"src.{db.qualified(people)}"
    expected = {n: (name, amount) for n, name, amount in people_expected()}

    got = engine.sql(f"SELECT name, amount FROM {table} WHERE id = $1", params=[7]).to_arrow()
    assert (got.column("name")[0].as_py(), got.column("amount")[0].as_py()) == expected[7]

    by_name = engine.sql(f"SELECT id FROM {table} WHERE name = $name", params={"name": "name 42"})
    assert by_name.to_arrow().column("id").to_pylist() == [42]

    # 2000-01-01 plus n days is row n's birthday.
    born = engine.sql(
        f"SELECT id FROM {table} WHERE born = $1", params=[datetime.date(2000, 1, 1) + datetime.timedelta(days=99)]
    )
    assert born.to_arrow().column("id").to_pylist() == [99]

    rich = engine.sql(
        f"SELECT count(*) AS n FROM {table} WHERE amount > $1 AND id <= $2",
        params=(Decimal("1000.00"), 900),
    )
    want = sum(1 for n, _, amount in people_expected() if amount is not None and amount > 1000 and n <= 900)
    assert rich.to_arrow().column("n").to_pylist() == [want]
    native = db.native(f"SELECT count(*) FROM {people} WHERE amount > 1000 AND id <= 900")
    assert native == [[str(want)]]


def test_hostile_text_is_a_value_not_sql(db: Database, people: str) -> None:
    engine = engine_with(db)
    table = f"src.{db.qualified(people)}"
    for hostile in ["name 1' OR '1'='1", "x'; DROP TABLE people; --", "name 1\\", "name 1\" --"]:
        result = engine.sql(f"SELECT id FROM {table} WHERE name = $1", params=[hostile])
        assert result.to_arrow().num_rows == 0, hostile
    assert db.native(f"SELECT count(*) FROM {people}") == [[str(len(people_expected()))]]


def test_a_prepared_statement_runs_with_new_values(db: Database, people: str) -> None:
    engine = engine_with(db)
    prepared = engine.prepare(f"SELECT name FROM src.{db.qualified(people)} WHERE id = $1")
    assert prepared.parameter_types()[0][0] == "$1"
    for n in (3, 500, 999):
        assert prepared.execute([n]).to_arrow().column("name").to_pylist() == [f"name {n}"]
    session = engine.session("bob")
    again = session.prepare(f"SELECT count(*) AS n FROM src.{db.qualified(people)} WHERE id < $limit")
    assert again.execute({"limit": 11}).to_arrow().column("n").to_pylist() == [10]


def test_bad_params_raise_input_error_saying_what_to_pass(lite: Database, people_lite: str) -> None:
    engine = engine_with(lite)
    table = f"src.{lite.qualified(people_lite)}"
    with pytest.raises(ibarrow.InputError, match="list"):
        engine.sql(f"SELECT id FROM {table} WHERE name = $1", params="name 1")
    with pytest.raises(ibarrow.InputError, match="cannot be a parameter"):
        engine.sql(f"SELECT id FROM {table} WHERE id = $1", params=[object()])
    with pytest.raises(ibarrow.InputError, match="64 bits"):
        engine.sql(f"SELECT id FROM {table} WHERE id = $1", params=[2**70])
    with pytest.raises(ibarrow.InputError, match="placeholder"):
        engine.sql(f"SELECT id FROM {table} WHERE id = $1 AND name = $2", params=[1])


@pytest.fixture
def people_lite(lite: Database):
    table = lite.create_people()
    yield table
    lite.drop(table)
