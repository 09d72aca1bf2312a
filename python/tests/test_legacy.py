"""The ibarrow 0.1 API: connect() and the query_* methods, with every QueryConfig field
taking effect, on PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import socket
from decimal import Decimal
import threading
import time

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import ibarrow
from conftest import PG_CONN, ROWS, Database, people_expected


def split_credentials(conn: str) -> tuple[str, str | None, str | None]:
    """The connection string without Uid/Pwd, and those two: 0.1 passed them separately."""
    kept, user, password = [], None, None
    for part in filter(None, conn.split(";")):
        key, _, value = part.partition("=")
        if key.strip().lower() == "uid":
            user = value
        elif key.strip().lower() == "pwd":
            password = value
        else:
            kept.append(part)
    return ";".join(kept) + ";", user, password


def connect(db: Database, config: ibarrow.QueryConfig | None = None) -> ibarrow.Connection:
    # The 0.1 README's form: a whole connection string in `dsn`, credentials apart.
    dsn, user, password = split_credentials(db.connection_string)
    return ibarrow.connect(dsn=dsn, user=user, password=password, config=config)


def test_readme_examples_return_every_row(db: Database, people: str) -> None:
    conn = connect(db, ibarrow.QueryConfig(batch_size=100))
    sql = f"SELECT id, name, amount FROM {people} ORDER BY id"
    from_ipc = pa.ipc.open_stream(conn.query_arrow_ipc(sql)).read_all()
    polars_df = conn.query_polars(sql)
    pandas_df = conn.query_pandas(sql)
    schema_capsule, array_capsule = conn.query_arrow_c_data(sql)
    struct = pa.Array._import_from_c_capsule(schema_capsule, array_capsule)
    as_frame = conn.query_arrow_c_data(sql, return_dataframe=True)
    assert from_ipc.num_rows == polars_df.height == len(pandas_df) == len(struct) == ROWS
    assert isinstance(polars_df, pl.DataFrame) and isinstance(pandas_df, pd.DataFrame)
    assert as_frame.equals(polars_df)
    expected = people_expected()
    got = list(zip(*(from_ipc.column(c).to_pylist() for c in ("id", "name", "amount"))))
    if db.kind == "sqlite":
        # The SQLite driver describes a native query's DECIMAL column as text (0.1 did the
        # same); the values are exact.
        got = [(i, n, None if a is None else Decimal(a)) for i, n, a in got]
    assert got == expected
    assert struct.field("id").to_pylist() == [row[0] for row in expected]
    assert pandas_df["name"].tolist() == [row[1] for row in expected]
    assert conn.test_connection() is True
    conn.close()
    with pytest.raises(ibarrow.PyConnectionError, match="closed"):
        conn.query_polars(sql)


def test_sql_goes_to_the_database_in_its_own_dialect(db: Database, people: str) -> None:
    native = {
        "postgres": f"SELECT string_agg(name, ',' ORDER BY id) AS s FROM {people} WHERE id < 4",
        "mariadb": f"SELECT GROUP_CONCAT(name ORDER BY id SEPARATOR ',') AS s FROM {people} WHERE id < 4",
        "sqlite": f"SELECT group_concat(name, ',') AS s FROM (SELECT name FROM {people} WHERE id < 4 ORDER BY id)",
    }[db.kind]
    frame = connect(db).query_polars(native)
    assert frame["s"].to_list() == ["name 1,name 2,name 3"]


def test_native_results_may_repeat_a_column_name(db: Database) -> None:
    ipc = connect(db).query_arrow_ipc("SELECT 1 AS a, 2 AS a")
    table = pa.ipc.open_stream(ipc).read_all()
    assert table.column_names == ["a", "a"]
    assert [str(table.column(i)[0]) for i in range(2)] == ["1", "2"]


def test_connection_string_keyword_and_dsn_errors(db: Database) -> None:
    conn = ibarrow.connect(connection_string=db.connection_string)
    assert conn.query_polars("SELECT 1 + 1 AS two")["two"].cast(str).to_list() == ["2"]
    assert "ibarrow;" not in repr(conn).lower().replace("uid=ibarrow;", "")
    with pytest.raises(ibarrow.ConfigError, match="needs a data source"):
        ibarrow.connect()
    with pytest.raises(ibarrow.ConnectionError):
        ibarrow.connect(dsn="no_such_dsn_here", user="u", password="p")


def test_batch_size_sets_the_rows_per_batch(db: Database, people: str) -> None:
    conn = connect(db, ibarrow.QueryConfig(batch_size=64))
    table = pa.table(conn._inner.query(f"SELECT id FROM {people}"))
    sizes = [b.num_rows for b in table.to_batches()]
    assert sum(sizes) == ROWS and max(sizes) <= 64 and len(sizes) >= ROWS // 64


def test_max_text_size_refuses_longer_values(db: Database) -> None:
    conn = connect(db, ibarrow.QueryConfig(max_text_size=10))
    long_text = {"postgres": "repeat('x', 50)", "mariadb": "REPEAT('x', 50)",
                 "sqlite": "printf('%.50c', 'x')"}[db.kind]
    table = f"texts_{int(time.time() * 1000) % 10**9}"
    db.native(f"CREATE TABLE {table} (t VARCHAR(100))")
    db.native(f"INSERT INTO {table} VALUES ({long_text})")
    try:
        with pytest.raises(ibarrow.ArrowError, match="longer than its fetch buffer"):
            conn.query_polars(f"SELECT t FROM {table}")
        roomy = connect(db, ibarrow.QueryConfig(max_text_size=100))
        assert roomy.query_polars(f"SELECT t FROM {table}")["t"].to_list() == ["x" * 50]
    finally:
        db.drop(table)


def test_read_only_sessions_refuse_writes(db: Database, people: str) -> None:
    read_only = connect(db, ibarrow.QueryConfig(read_only=True))
    flag = {
        "postgres": "SELECT current_setting('transaction_read_only') AS flag",
        "mariadb": "SELECT @@session.tx_read_only AS flag",
        "sqlite": "PRAGMA query_only",
    }[db.kind]
    assert str(read_only.query_polars(flag).row(0)[0]).lower() in ("on", "1")
    assert str(connect(db).query_polars(flag).row(0)[0]).lower() in ("off", "0")
    if db.kind != "postgres":
        return  # these drivers describe no columns for INSERT ... RETURNING before running it
    insert = f"INSERT INTO {people} (id, name) VALUES (100001, 'new') RETURNING id"
    with pytest.raises(ibarrow.SQLError) as raised:
        read_only.query_polars(insert)
    message = str(raised.value).lower()
    assert "read-only" in message or "readonly" in message, message
    assert db.native(f"SELECT count(*) FROM {people} WHERE id = 100001") == [["0"]]
    # The same statement writes when the session is not read-only.
    assert connect(db).query_polars(insert)["id"].cast(str).to_list() == ["100001"]
    assert db.native(f"SELECT count(*) FROM {people} WHERE id = 100001") == [["1"]]


def test_isolation_level_is_set_or_refused(db: Database) -> None:
    config = ibarrow.QueryConfig(isolation_level="SERIALIZABLE")
    probe = {
        "postgres": "SELECT current_setting('transaction_isolation') AS level",
        "mariadb": "SELECT @@session.tx_isolation AS level",
    }.get(db.kind)
    if probe is not None:
        level = connect(db, config).query_polars(probe)["level"].to_list()[0]
        assert level.lower().replace("-", " ") == "serializable"
    else:
        # SQLite is always serializable: accepted, nothing to set.
        assert connect(db, config).test_connection()
    if db.kind == "sqlite":
        with pytest.raises(ibarrow.ConfigError, match="SERIALIZABLE"):
            connect(db, ibarrow.QueryConfig(isolation_level="read_committed"))
    else:
        other = connect(db, ibarrow.QueryConfig(isolation_level="read_committed"))
        level = other.query_polars(probe)["level"].to_list()[0]
        assert level.lower().replace("-", " ").replace("_", " ") == "read committed"
    with pytest.raises(ibarrow.ConfigError, match="unknown isolation level"):
        connect(db, ibarrow.QueryConfig(isolation_level="chaotic"))


def test_query_timeout_cancels_the_statement(db: Database) -> None:
    slow = {
        "postgres": "SELECT pg_sleep(30) AS slept",
        "mariadb": "SELECT SLEEP(30) AS slept",
        "sqlite": "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) "
                  "SELECT count(*) AS slept FROM c",
    }[db.kind]
    conn = connect(db, ibarrow.QueryConfig(query_timeout=1))
    started = time.monotonic()
    with pytest.raises(ibarrow.TimeoutError):
        conn.query_polars(slow)
    assert time.monotonic() - started < 10
    assert conn.query_polars("SELECT 1 + 1 AS two")["two"].cast(str).to_list() == ["2"]


def test_connection_timeout_gives_up_on_a_silent_server() -> None:
    # A server that accepts the TCP connection and never says a word.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    silent = PG_CONN.replace("Port=5432", f"Port={port}")
    started = time.monotonic()
    try:
        with pytest.raises(ibarrow.ConnectionError):
            ibarrow.connect(connection_string=silent,
                            config=ibarrow.QueryConfig(connection_timeout=2))
        assert time.monotonic() - started < 15
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_bad_config_values_are_refused() -> None:
    with pytest.raises(ibarrow.ConfigError, match="batch_size"):
        ibarrow.connect(connection_string=PG_CONN, config=ibarrow.QueryConfig(batch_size=0))
    config = ibarrow.QueryConfig(batch_size=5, read_only=True)
    assert config.batch_size == 5 and config.read_only is True
    config.query_timeout = 3
    assert config.query_timeout == 3
