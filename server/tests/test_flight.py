"""Arrow Flight SQL with real clients: ADBC's Flight SQL driver and pyarrow.flight."""

from __future__ import annotations

import csv
import io
import subprocess
import threading
import time
from decimal import Decimal

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import httpx
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from conftest import (ALICE_PW, BIG, BIN, BOB_PW, CUSTOMERS, JOIN_SQL, customer_region,
                      expected_join, pg_active_ibarrow_statements, psql)


def connect(server, user="alice", password=ALICE_PW):
    return flight_sql.connect(server.flight, db_kwargs={"username": user, "password": password})


def rows(table: pa.Table) -> list[tuple]:
    return [tuple(row.values()) for row in table.to_pylist()]


def test_a_cross_database_join_answers_as_the_generator_and_the_cli(server):
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute(JOIN_SQL)
        table = cur.fetch_arrow_table()
    assert rows(table) == expected_join()
    cli = subprocess.run([BIN, "--config", str(server.config), "-c", JOIN_SQL, "--format", "csv"],
                         check=True, capture_output=True, text=True, env=server.env, timeout=120)
    cli_rows = [(r[0], int(r[1]), Decimal(r[2])) for r in list(csv.reader(io.StringIO(cli.stdout)))[1:]]
    assert cli_rows == rows(table)


def test_hashed_password_logs_in_and_a_wrong_one_is_refused(server):
    with connect(server, "bob", BOB_PW) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM pg.public.srv_customers")
        assert cur.fetchone() == (CUSTOMERS,)
    for user, password in [("alice", "wrong"), ("mallory", ALICE_PW)]:
        with pytest.raises(adbc_driver_manager.Error) as refused:
            with connect(server, user, password) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        assert "password" in str(refused.value).lower() or "unauthenticated" in str(refused.value).lower()


def test_prepared_statements_bind_parameters(server):
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, name, region FROM pg.public.srv_customers WHERE id = ?", parameters=(42,))
        assert cur.fetchall() == [(42, "customer 42", customer_region(42))]
        # The same statement again with another value; a quote in a value stays a value.
        cur.execute("SELECT id, name, region FROM pg.public.srv_customers WHERE id = ?", parameters=(7,))
        assert cur.fetchall() == [(7, "customer 7", customer_region(7))]
        cur.execute("SELECT count(*) AS n FROM pg.public.srv_customers WHERE name = $1",
                    parameters=("x' OR '1'='1",))
        assert cur.fetchall() == [(0,)]


def test_catalogs_schemas_tables_and_table_schemas_are_listed(server):
    with connect(server) as conn:
        objects = conn.adbc_get_objects(depth="tables", catalog_filter="pg",
                                        table_name_filter="srv_%").read_all().to_pylist()
        tables = {(c["catalog_name"], s["db_schema_name"], t["table_name"])
                  for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
        assert {("pg", "public", "srv_customers"), ("pg", "public", "srv_big")} <= tables
        schema = conn.adbc_get_table_schema("srv_customers", catalog_filter="pg", db_schema_filter="public")
        assert schema.names == ["id", "name", "region"]
        assert "TABLE" in conn.adbc_get_table_types()
        catalogs = conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()
        # The sources, and not DataFusion's empty default catalog.
        assert sorted(c["catalog_name"] for c in catalogs) == ["maria", "pg", "pgw"]


def test_insert_reaches_a_writable_source_and_is_refused_elsewhere(server):
    psql("TRUNCATE srv_writes")
    with connect(server) as conn, conn.cursor() as cur:
        # DoPut statement update, as executeUpdate in JDBC.
        cur.adbc_statement.set_sql_query("INSERT INTO pgw.public.srv_writes VALUES (1, 'one'), (2, 'two')")
        assert cur.adbc_statement.execute_update() == 2
        # A prepared INSERT with parameters, one execution per row.
        cur.executemany("INSERT INTO pgw.public.srv_writes VALUES (?, ?)", [(3, "three"), (4, "fo'ur")])
        # pg is the same database without `writable`: refused, and the text says why.
        with pytest.raises(adbc_driver_manager.Error) as refused:
            cur.adbc_statement.set_sql_query("INSERT INTO pg.public.srv_writes VALUES (9, 'x')")
            cur.adbc_statement.execute_update()
        assert "writable" in str(refused.value)
    assert psql("SELECT id, note FROM srv_writes ORDER BY id").split() == \
        ["1|one", "2|two", "3|three", "4|fo'ur"]


def flight_client(server):
    client = fl.FlightClient(server.flight)
    header = client.authenticate_basic_token("alice", ALICE_PW)
    return client, fl.FlightCallOptions(headers=[header])


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field, encoded by hand."""
    return bytes([number << 3 | 2]) + varint(len(data)) + data


def any_command(name: str, sql: str) -> bytes:
    """A Flight SQL command packed in protobuf's Any; field 1 of the command is the text."""
    url = f"type.googleapis.com/arrow.flight.protocol.sql.{name}".encode()
    return field(1, url) + field(2, field(1, sql.encode()))


def test_each_range_partition_is_an_endpoint_fetched_in_parallel(server):
    client, options = flight_client(server)
    sql = "SELECT id, payload FROM pg.public.srv_big WHERE id % 7 = 0"
    info = client.get_flight_info(fl.FlightDescriptor.for_command(any_command("CommandStatementQuery", sql)), options)
    assert len(info.endpoints) == 4
    results: list[pa.Table] = [None] * len(info.endpoints)

    def fetch(n):
        results[n] = client.do_get(info.endpoints[n].ticket, options).read_all()

    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(len(info.endpoints))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for table in results:
        assert table.schema == info.schema
    ids = sorted(i for table in results for i in table.column("id").to_pylist())
    assert ids == list(range(7, BIG + 1, 7))
    # A ticket is good once.
    with pytest.raises(pa.ArrowException, match="already"):
        client.do_get(info.endpoints[0].ticket, options).read_all()
    # The four endpoints are one query in the server's record (query log, metrics, audit),
    # with every row counted.
    deadline = time.monotonic() + 20
    while True:
        status = httpx.get(f"{server.http}/v1/status", auth=("alice", ALICE_PW), timeout=30).json()
        mine = [q for q in status["recent"] if q["sql"] == sql]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(q["outcome"], q["rows"]) for q in mine] == [("ok", len(ids))]


def cancel_request(info: fl.FlightInfo) -> bytes:
    """CancelFlightInfoRequest: field 1 is the FlightInfo."""
    return field(1, info.serialize())


def test_cancel_flight_info_stops_a_running_stream(server):
    client, options = flight_client(server)
    sql = "SELECT b1.id FROM pg.public.srv_big b1 ORDER BY b1.payload"
    info = client.get_flight_info(fl.FlightDescriptor.for_command(any_command("CommandStatementQuery", sql)), options)
    assert len(info.endpoints) == 1
    reader = client.do_get(info.endpoints[0].ticket, options)
    reader.read_chunk()
    results = list(client.do_action(fl.Action("CancelFlightInfo", cancel_request(info)), options))
    assert results and results[0].body.to_pybytes() == b"\x08\x01"  # status CANCELLED
    with pytest.raises(pa.ArrowException) as stopped:
        while True:
            reader.read_chunk()
    assert "cancelled" in str(stopped.value)


def test_a_client_that_goes_away_frees_its_connection(server):
    import time
    client, options = flight_client(server)
    sql = "SELECT a.id, b.id FROM pg.public.srv_big a, pg.public.srv_customers b"
    info = client.get_flight_info(fl.FlightDescriptor.for_command(any_command("CommandStatementQuery", sql)), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    reader.read_chunk()
    client.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pg_active_ibarrow_statements() > 0:
        time.sleep(0.2)
    assert pg_active_ibarrow_statements() == 0
