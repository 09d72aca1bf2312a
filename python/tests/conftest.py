"""Test bed: the local PostgreSQL, MariaDB and SQLite (prepared by scripts/test-services),
reached by ibarrow through their ODBC drivers and, for setting up data and for the expected
answers, through each database's own command-line client."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

PG_CONN = os.environ.get(
    "IBARROW_TEST_POSTGRES",
    "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;",
)
MARIADB_CONN = os.environ.get(
    "IBARROW_TEST_MARIADB",
    "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;",
)

ROWS = 1000


@dataclass
class Database:
    """One test database: its connection string, schema and a way to run SQL natively."""

    kind: str
    connection_string: str
    schema: str
    sqlite_path: Path | None = None

    def native(self, sql: str) -> list[list[str]]:
        """Runs ``sql`` with the database's own client; rows of tab-separated text."""
        if self.kind == "postgres":
            cmd = ["psql", "-h", "127.0.0.1", "-U", "ibarrow", "-d", "ibarrow_test",
                   "-v", "ON_ERROR_STOP=1", "-q", "-tA", "-F", "\t", "-c", sql]
            env = {**os.environ, "PGPASSWORD": "ibarrow"}
        elif self.kind == "mariadb":
            cmd = ["mariadb", "-h", "127.0.0.1", "-uibarrow", "-pibarrow", "ibarrow_test",
                   "-N", "-B", "-e", sql]
            env = None
        else:
            cmd = ["sqlite3", "-batch", "-bail", "-separator", "\t", str(self.sqlite_path), sql]
            env = None
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def qualified(self, table: str) -> str:
        """``schema.table`` as ibarrow names it."""
        return f"{self.schema}.{table}"

    def create_people(self) -> str:
        """A fresh table of ROWS people (id, name, amount DECIMAL(10,2), born DATE) with some
        NULLs; returns its name."""
        table = f"people_{uuid.uuid4().hex[:10]}"
        if self.kind == "postgres":
            self.native(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40), "
                f"amount NUMERIC(10,2), born DATE); "
                f"INSERT INTO {table} SELECT g, 'name ' || g, "
                f"CASE WHEN g % 10 = 0 THEN NULL ELSE (g * 1.25)::numeric(10,2) END, "
                f"DATE '2000-01-01' + g FROM generate_series(1, {ROWS}) g"
            )
        elif self.kind == "mariadb":
            self.native(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40), "
                f"amount DECIMAL(10,2), born DATE); "
                f"INSERT INTO {table} WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL "
                f"SELECT n + 1 FROM g WHERE n < {ROWS}) SELECT n, CONCAT('name ', n), "
                f"CASE WHEN n % 10 = 0 THEN NULL ELSE n * 1.25 END, "
                f"DATE_ADD(DATE '2000-01-01', INTERVAL n DAY) FROM g"
            )
        else:
            self.native(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40), "
                f"amount DECIMAL(10,2), born DATE); "
                f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
                f"WHERE n < {ROWS}) INSERT INTO {table} SELECT n, 'name ' || n, "
                f"CASE WHEN n % 10 = 0 THEN NULL ELSE printf('%.2f', n * 1.25) END, "
                f"date('2000-01-01', '+' || n || ' days') FROM g"
            )
        return table

    def drop(self, table: str) -> None:
        self.native(f"DROP TABLE IF EXISTS {table}")


def people_expected() -> list[tuple[int, str, Decimal | None]]:
    """What every database holds in a people table, computed independently."""
    return [
        (n, f"name {n}", None if n % 10 == 0 else (Decimal(n) * Decimal("1.25")).quantize(Decimal("0.01")))
        for n in range(1, ROWS + 1)
    ]


def _database(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Database:
    if kind == "postgres":
        return Database("postgres", PG_CONN, "public")
    if kind == "mariadb":
        return Database("mariadb", MARIADB_CONN, "ibarrow_test")
    path = tmp_path_factory.mktemp("sqlite") / "test.sqlite"
    return Database("sqlite", f"Driver={{SQLite3}};Database={path};", "main", path)


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Database:
    """Each test using it runs once per database."""
    return _database(request.param, tmp_path_factory)


@pytest.fixture
def pg(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return _database("postgres", tmp_path_factory)


@pytest.fixture
def lite(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return _database("sqlite", tmp_path_factory)


@pytest.fixture
def people(db: Database):
    """A people table in the parametrised database, dropped afterwards."""
    table = db.create_people()
    yield table
    db.drop(table)
