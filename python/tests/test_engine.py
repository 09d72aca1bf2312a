"""The Engine API on PostgreSQL, MariaDB and SQLite, compared with the databases' answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import ibarrow
from conftest import MARIADB_CONN, PG_CONN, ROWS, Database, people_expected


def engine_with(db: Database, name: str = "src") -> ibarrow.Engine:
    engine = ibarrow.Engine()
    engine.register_odbc(name, db.connection_string)
    return engine


def test_result_reads_every_row_as_the_database_has_it(db: Database, people: str) -> None:
    engine = engine_with(db)
    result = engine.sql(f"SELECT id, name, amount FROM src.{db.qualified(people)} ORDER BY id")
    table = result.to_arrow()
    assert table.num_rows == ROWS
    got = list(zip(*(table.column(c).to_pylist() for c in ("id", "name", "amount"))))
    assert got == people_expected()
    native = db.native(f"SELECT count(*), sum(id), count(amount) FROM {people}")
    ids = table.column("id").to_pylist()
    assert native[0] == [str(len(ids)), str(sum(ids)), str(ROWS - table.column("amount").null_count)]


def test_arrow_stream_protocol_feeds_pyarrow_polars_and_pandas(db: Database, people: str) -> None:
    engine = engine_with(db)
    query = f"SELECT id, born FROM src.{db.qualified(people)} WHERE id <= 300 ORDER BY id"
    result = engine.sql(query)
    by_pa = pa.table(result)
    by_reader = pa.RecordBatchReader.from_stream(result).read_all()
    by_polars = pl.DataFrame(result)
    by_pandas = result.to_pandas()
    by_to_polars = result.to_polars()
    assert by_pa.num_rows == by_reader.num_rows == by_polars.height == len(by_pandas) == 300
    assert by_pa.equals(by_reader)
    assert by_polars.equals(by_to_polars)
    assert by_polars["id"].to_list() == list(range(1, 301))
    assert isinstance(by_pandas, pd.DataFrame)
    assert str(by_pa.column("born")[0]) == native_first_born(db, people)
    assert pa.types.is_date32(result.schema.field("born").type)


def native_first_born(db: Database, people: str) -> str:
    return db.native(f"SELECT born FROM {people} WHERE id = 1")[0][0]


def test_iteration_yields_record_batches_of_all_rows(db: Database, people: str) -> None:
    engine = engine_with(db)
    batches = list(engine.sql(f"SELECT id FROM src.{db.qualified(people)}"))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    ids = sorted(i for b in batches for i in b.column(0).to_pylist())
    assert ids == list(range(1, ROWS + 1))


def test_cross_database_join_gives_the_right_frame(pg: Database, lite: Database) -> None:
    orders = pg.create_people()
    regions = f"regions_{orders[-6:]}"
    lite.native(
        f"CREATE TABLE {regions} (id INTEGER PRIMARY KEY, region TEXT); "
        f"INSERT INTO {regions} VALUES (1, 'north'), (2, 'south'), (3, 'east')"
    )
    try:
        engine = ibarrow.Engine()
        engine.register_odbc("pg", pg.connection_string)
        engine.register_odbc("lite", lite.connection_string)
        frame = pl.DataFrame(engine.sql(
            f"SELECT r.region, count(*) AS people, sum(p.amount) AS total "
            f"FROM pg.public.{orders} p JOIN lite.main.{regions} r ON p.id % 3 + 1 = r.id "
            f"GROUP BY r.region ORDER BY r.region"
        ))
        expected: dict[str, tuple[int, Decimal]] = {}
        for n, _, amount in people_expected():
            region = {1: "north", 2: "south", 3: "east"}[n % 3 + 1]
            count, total = expected.get(region, (0, Decimal(0)))
            expected[region] = (count + 1, total + (amount or 0))
        assert frame["region"].to_list() == sorted(expected)
        assert frame["people"].to_list() == [expected[r][0] for r in sorted(expected)]
        assert [Decimal(str(t)) for t in frame["total"].to_list()] == [
            expected[r][1] for r in sorted(expected)
        ]
    finally:
        pg.drop(orders)


def test_explain_shows_the_remote_statement_without_secrets(pg: Database) -> None:
    table = pg.create_people()
    try:
        engine = engine_with(pg, "pg")
        plan = engine.sql(f"SELECT name FROM pg.public.{table} WHERE id = 7").explain()
        assert "WHERE" in plan and "7" in plan, plan
        assert "pwd" not in plan.lower()
        analyzed = engine.sql(f"SELECT name FROM pg.public.{table} WHERE id = 7").explain(analyze=True)
        assert "output_rows=1" in analyzed or "rows=1" in analyzed, analyzed
    finally:
        pg.drop(table)


def test_from_config_reads_sources_and_their_settings(
    tmp_path, lite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite.native("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
    config = tmp_path / "ibarrow.toml"
    monkeypatch.setenv("IBARROW_PY_TEST_DB", str(lite.sqlite_path))
    config.write_text(
        '[sources.lite]\nconnection_string = "Driver={SQLite3};Database=${IBARROW_PY_TEST_DB};"\n'
    )
    engine = ibarrow.Engine.from_config(config)
    assert engine.sources == ["lite"]
    assert engine.sql("SELECT sum(x) AS s FROM lite.main.t").to_arrow().column("s").to_pylist() == [6]
    config.write_text('[sources.lite]\nconection_string = "x"\n')
    with pytest.raises(ibarrow.ConfigError, match="conection_string"):
        ibarrow.Engine.from_config(config)


def test_from_config_applies_a_profile_and_reads_secret_files(
    tmp_path, lite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite.native("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
    path_file = tmp_path / "db_path"
    path_file.write_text(f"{lite.sqlite_path}\n")
    path_file.chmod(0o600)
    config = tmp_path / "ibarrow.toml"
    config.write_text(
        '[sources.lite]\nconnection_string = "Driver={SQLite3};Database=/nonexistent/dir/x.sqlite;"\n'
        "[profiles.test.sources.lite]\n"
        f'connection_string = "Driver={{SQLite3}};Database=${{file:{path_file}}};"\n'
    )
    engine = ibarrow.Engine.from_config(config, profile="test")
    assert engine.sql("SELECT count(*) AS n FROM lite.main.t").to_arrow().column("n").to_pylist() == [3]
    monkeypatch.setenv("IBARROW_PROFILE", "test")
    assert ibarrow.Engine.from_config(config).sources == ["lite"]
    with pytest.raises(ibarrow.ConfigError, match="test"):
        ibarrow.Engine.from_config(config, profile="prod")


def test_health_reports_each_source(lite: Database, pg: Database) -> None:
    engine = ibarrow.Engine()
    engine.register_odbc("pg", pg.connection_string)
    engine.register_odbc("lite", lite.connection_string)
    report = {h["source"]: h for h in engine.health(timeout=5)}
    assert set(report) == {"pg", "lite"}
    assert all(h["reachable"] and h["latency_ms"] is not None for h in report.values())
    assert report["pg"]["in_use"] == 0 and report["pg"]["pool_max"] >= 1


def test_health_lists_each_endpoint_of_a_source_with_replicas(tmp_path, lite: Database) -> None:
    # Two SQLite files of the same rows: the primary and a replica, balanced in turn.
    replica = tmp_path / "replica.sqlite"
    lite.native("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
    replica.write_bytes(lite.sqlite_path.read_bytes())
    engine = ibarrow.Engine()
    engine.register_odbc(
        "lite",
        f"Driver={{SQLite3}};Database={lite.sqlite_path};",
        replicas=[f"Driver={{SQLite3}};Database={replica};"],
        read_from="any",
        balance="round_robin",
    )
    with pytest.raises(ibarrow.ConfigError, match="round_robin"):
        engine.register_odbc("bad", f"Driver={{SQLite3}};Database={replica};", balance="fastest")
    for _ in range(4):
        assert engine.sql("SELECT sum(x) AS s FROM lite.main.t").to_arrow().column("s").to_pylist() == [6]
    (report,) = engine.health(timeout=5)
    assert report["reachable"]
    endpoints = {e["endpoint"]: e for e in report["endpoints"]}
    assert set(endpoints) == {"primary", "replica1"}
    assert endpoints["replica1"]["role"] == "replica"
    assert all(e["reachable"] and e["statements"] >= 2 for e in endpoints.values()), endpoints


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("SELECT * FROM src.{schema}.no_such_table", ibarrow.SQLError),
        ("SELEC 1", ibarrow.SQLError),
        ("SELECT * FROM nosource.public.t", ibarrow.SQLError),
    ],
)
def test_user_errors_raise_sql_errors(db: Database, query: str, error: type) -> None:
    engine = engine_with(db)
    with pytest.raises(error) as raised:
        engine.sql(query.format(schema=db.schema)).to_arrow()
    assert isinstance(raised.value, ibarrow.Error)
    assert isinstance(raised.value, ibarrow.PySQLError)


def test_connection_errors_name_the_source_and_hide_the_password() -> None:
    engine = ibarrow.Engine()
    # MariaDB checks passwords (the local PostgreSQL trusts 127.0.0.1).
    wrong = MARIADB_CONN.replace("Pwd=ibarrow", "Pwd=wrong-s3cret")
    with pytest.raises(ibarrow.ConnectionError) as raised:
        engine.register_odbc("maria", wrong)
    message = str(raised.value)
    assert "source `maria`" in message and "wrong-s3cret" not in message
    assert isinstance(raised.value, ibarrow.PyConnectionError)
    with pytest.raises(ibarrow.ConnectionError, match="not installed") as raised:
        engine.register_odbc("x", "Driver={No Such Driver};Pwd=hunter2;")
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ibarrow.ConfigError, match="already registered"):
        engine.register_odbc("dup", "Driver={SQLite3};Database=:memory:;")
        engine.register_odbc("dup", "Driver={SQLite3};Database=:memory:;")


READERS = {
    "to_arrow": lambda result: result.to_arrow(),
    "pa.table": pa.table,
    "pl.DataFrame": pl.DataFrame,
    "iterate": list,
}


@pytest.mark.parametrize("read", ["to_arrow", "pa.table", "iterate"])
def test_query_timeout_raises_timeout_error(tmp_path, read: str) -> None:
    config = tmp_path / "ibarrow.toml"
    config.write_text(f'[sources.pg]\nconnection_string = "{PG_CONN}"\nquery_timeout_secs = 1\n')
    engine = ibarrow.Engine.from_config(config)
    started = time.monotonic()
    with pytest.raises(ibarrow.TimeoutError) as raised:
        READERS[read](engine.sql("SELECT * FROM query('pg', 'SELECT pg_sleep(30) AS slept')"))
    assert time.monotonic() - started < 10
    assert isinstance(raised.value, TimeoutError)
    assert "query_timeout_secs" in str(raised.value)


def interrupt_after(seconds: float) -> threading.Timer:
    # A process started in the background inherits SIGINT ignored, and Python then installs
    # no handler for it: install the usual one.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.parametrize("read", ["to_arrow", "pl.DataFrame", "iterate"])
def test_ctrl_c_cancels_a_running_query_and_frees_its_connection(pg: Database, read: str) -> None:
    engine = engine_with(pg, "pg")
    result = engine.sql("SELECT * FROM query('pg', 'SELECT pg_sleep(30) AS slept')")
    started = time.monotonic()
    timer = interrupt_after(1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            READERS[read](result)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while engine.health()[0]["in_use"] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.health()[0]["in_use"] == 0
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' " \
        "AND state = 'active' AND pid <> pg_backend_pid()"
    while pg.native(sleeping) != [["0"]] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pg.native(sleeping) == [["0"]], "the remote statement is still running"


def test_input_is_checked_before_planning(lite: Database) -> None:
    engine = engine_with(lite)
    for bad in ["DROP TABLE src.main.t", "SELECT 1; SELECT 2", "SELECT 1\x00", b"SELECT '\xff'"]:
        with pytest.raises(ibarrow.InputError) as raised:
            engine.sql(bad)
        assert isinstance(raised.value, ValueError)
    assert engine.sql(b"SELECT 1 AS one").to_arrow().column("one").to_pylist() == [1]


def test_rate_limits_refuse_with_a_retry_time(tmp_path) -> None:
    config = tmp_path / "ibarrow.toml"
    config.write_text("[engine]\nrate_limits = { per_user_per_minute = 3 }\n")
    alice = ibarrow.Engine.from_config(config, user="alice")
    for _ in range(3):
        alice.sql("SELECT 1")
    with pytest.raises(ibarrow.RateLimitError, match=r"user `alice`.*retry in"):
        alice.sql("SELECT 1")
    bob = ibarrow.Engine.from_config(config, user="bob")
    assert bob.sql("SELECT 1 AS one").to_arrow().num_rows == 1


def test_insert_reaches_only_a_writable_source(db: Database, people: str, tmp_path) -> None:
    target = f"src.{db.qualified(people)}"
    copy = f"INSERT INTO {target} SELECT id + 5000, name, amount, born FROM {target} WHERE id <= 3"
    with pytest.raises(ibarrow.InputError, match="is read-only"):
        engine_with(db).sql(copy).to_arrow()
    assert db.native(f"SELECT count(*) FROM {people}") == [[str(ROWS)]]
    config = tmp_path / "writable.toml"
    config.write_text(f"[sources.src]\nconnection_string = '{db.connection_string}'\nwritable = true\n")
    writable = ibarrow.Engine.from_config(config)
    inserted = writable.sql(copy)
    # The INSERT ran once, when planned: reading its result again does not repeat it.
    for _ in range(2):
        assert inserted.to_arrow().column("count").to_pylist() == [3]
    assert db.native(f"SELECT count(*) FROM {people} WHERE id > 5000") == [["3"]]
    copied = writable.sql(
        f"SELECT id - 5000 AS id, name, amount, born FROM {target} WHERE id > 5000 ORDER BY id"
    ).to_arrow()
    original = writable.sql(f"SELECT id, name, amount, born FROM {target} WHERE id <= 3 ORDER BY id")
    assert copied.to_pylist() == original.to_arrow().to_pylist()
    assert copied.column("amount").to_pylist()[1] == Decimal("2.50")


def test_sessions_carry_their_own_user_for_rate_limits(tmp_path) -> None:
    config = tmp_path / "ibarrow.toml"
    config.write_text("[engine]\nrate_limits = { per_user_per_minute = 2 }\n")
    engine = ibarrow.Engine.from_config(config, user="service")
    alice = engine.session("alice", client="web")
    assert (alice.user, alice.client) == ("alice", "web")
    for _ in range(2):
        alice.sql("SELECT 1")
    with pytest.raises(ibarrow.RateLimitError, match=r"user `alice`"):
        alice.sql("SELECT 1")
    # Other users of the same engine keep their own quota.
    assert engine.session("bob").sql("SELECT 1 AS one").to_arrow().num_rows == 1
    assert engine.sql("SELECT 1 AS one").to_arrow().num_rows == 1


def test_init_logging_writes_one_json_line_per_query() -> None:
    # A process of its own: the log subscriber is installed once per process.
    script = (
        "import ibarrow\n"
        "ibarrow.init_logging('info', 'json')\n"
        "engine = ibarrow.Engine()\n"
        "engine.session('dave', 'cli').sql(\"SELECT 'k3pt-out' AS s\").to_arrow()\n"
        "try:\n"
        "    ibarrow.init_logging('info', 'json')\n"
        "except ibarrow.ConfigError as err:\n"
        "    print('second call refused:', err)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert "second call refused" in ran.stdout, ran.stdout
    events = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
    finished = [e for e in events if e.get("message") == "query finished"]
    assert len(finished) == 1, ran.stderr
    event = finished[0]
    assert (event["user"], event["client"], event["outcome"]) == ("dave", "cli", "ok")
    assert isinstance(event["duration_ms"], int) and isinstance(event["peak_memory_bytes"], int)
    with pytest.raises(ibarrow.ConfigError, match="human or json"):
        ibarrow.init_logging("info", "xml")


def test_metrics_count_the_queries_run(lite: Database) -> None:
    lite.native("CREATE TABLE m (x INTEGER); INSERT INTO m VALUES (1), (2)")
    engine = engine_with(lite)
    for _ in range(2):
        engine.sql("SELECT x FROM src.main.m").to_arrow()
    with pytest.raises(ibarrow.InputError):
        engine.sql("DROP TABLE src.main.m")
    text = engine.metrics_prometheus()
    assert 'ibarrow_queries_total{outcome="ok"} 2' in text.splitlines(), text
    assert 'ibarrow_queries_total{outcome="refused"} 1' in text.splitlines(), text
    assert 'ibarrow_source_rows_total{source="src"} 4' in text.splitlines(), text


def test_roles_govern_python_sessions(db: Database, people: str, tmp_path) -> None:
    table = f"src.{db.qualified(people)}"
    config = tmp_path / "roles.toml"
    config.write_text(
        f"[sources.src]\nconnection_string = '{db.connection_string}'\n"
        f'[roles.analyst]\nread = ["{table}"]\ndeny_columns = ["{table}.born"]\n'
        f"masks = {{ \"{table}.name\" = \"'hidden'\" }}\n"
        f'row_filters = {{ "{table}" = "id <= 10" }}\n'
        '[users.alice]\nroles = ["analyst"]\n'
    )
    alice = ibarrow.Engine.from_config(config, user="alice")
    rows = alice.sql(f"SELECT id, name FROM {table} ORDER BY id").to_arrow().to_pylist()
    assert rows == [{"id": n, "name": "hidden"} for n in range(1, 11)]
    with pytest.raises(ibarrow.AccessDeniedError, match=r"born.*deny_columns"):
        alice.sql(f"SELECT * FROM {table}").to_arrow()
    # Handed to another DataFusion context, the table would escape the checks.
    with pytest.raises(ibarrow.AccessDeniedError, match="cannot be handed"):
        alice.table(table).__datafusion_table_provider__()
    # Built on by the engine, the same table follows the policy.
    built = alice.table(table).filter(ibarrow.col("id") <= 3).select("id", "name")
    assert built.to_arrow().to_pylist() == [{"id": n, "name": "hidden"} for n in range(1, 4)]
    nobody = ibarrow.Engine.from_config(config, user="bob")
    with pytest.raises(ibarrow.AccessDeniedError, match=r"has no roles.*\[users\.bob\]"):
        nobody.sql(f"SELECT id FROM {table}").to_arrow()


def test_a_join_over_the_memory_limit_raises_memory_limit_error(lite: Database) -> None:
    rows = 50_000
    lite.native(
        "CREATE TABLE wide AS WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
        f"WHERE g < {rows}) SELECT g AS id, replace(printf('%0100d', 0), '0', 'x') AS pad FROM s"
    )
    join = ("SELECT count(*) AS n, max(x.pad || y.pad) AS m "
            "FROM a.main.wide x JOIN b.main.wide y ON x.id = y.id")
    unlimited = ibarrow.Engine(target_partitions=1)
    limited = ibarrow.Engine(target_partitions=1, memory_limit="1MB")
    for engine in (unlimited, limited):
        engine.register_odbc("a", lite.connection_string)
        engine.register_odbc("b", lite.connection_string)
    assert unlimited.sql(join).to_arrow().column("n").to_pylist() == [rows]
    with pytest.raises(ibarrow.MemoryLimitError) as raised:
        limited.sql(join).to_arrow()
    assert isinstance(raised.value, MemoryError)
    assert "limit of 1.0 MB ([engine] memory_limit)" in str(raised.value)
    with pytest.raises(ibarrow.ConfigError, match="not a size"):
        ibarrow.Engine(memory_limit="lots")


def test_insights_count_statements_users_and_sources(lite: Database) -> None:
    lite.native("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
    engine = engine_with(lite)
    for n in (1, 2, 3):
        assert engine.sql(f"SELECT x FROM src.main.t WHERE x = {n}").to_arrow().num_rows == 1
    insights = engine.insights()
    statement = next(
        s for s in insights["statements_by_total_time"]
        if s["statement"] == "SELECT x FROM src.main.t WHERE x = ?"
    )
    assert (statement["runs"], statement["rows"]) == (3, 3)
    assert [s["rows"] for s in insights["sources"] if s["source"] == "src"] == [3]
    assert insights["index_advice"] == []


def test_reload_applies_a_new_configuration_file(tmp_path) -> None:
    import sqlite3

    files = {}
    for name, rows in (("one", 3), ("two", 5)):
        path = tmp_path / f"{name}.sqlite"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (a INTEGER)")
            conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
        files[name] = f'[sources.{name}]\nconnection_string = "Driver={{SQLite3}};Database={path}"\n'
    config = tmp_path / "ibarrow.toml"
    config.write_text(files["one"])
    eng = ibarrow.Engine.from_config(config)
    count = "SELECT count(*) AS n FROM {}.main.t"
    assert eng.sql(count.format("one")).to_arrow().column("n").to_pylist() == [3]

    config.write_text(files["one"] + files["two"])
    report = eng.reload(config)
    assert report["added"] == ["two"] and report["removed"] == [], report
    assert eng.sql(count.format("two")).to_arrow().column("n").to_pylist() == [5]
    assert sorted(eng.sources) == ["one", "two"]

    config.write_text("[sources.one]\nconection_string = 'typo'\n")
    with pytest.raises(ibarrow.ConfigError, match="conection_string"):
        eng.reload(config)
    assert eng.sql(count.format("two")).to_arrow().column("n").to_pylist() == [5]

    config.write_text(files["two"])
    report = eng.reload(config)
    assert report["removed"] == ["one"], report
    with pytest.raises(ibarrow.Error):
        eng.sql(count.format("one")).to_arrow()
