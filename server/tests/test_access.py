"""Access control through the server with real clients (ADBC Flight SQL, httpx): a user
without a grant gets a clear denial and an audit line, a masked column never reaches the
client unmasked, listings show only what a user may read, and SIGHUP reloads the roles and
the sources.
Expected values come from the generator in conftest.py."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import httpx
import pytest

from conftest import ALICE_PW, BIN, CUSTOMERS, ORDERS, base_config, customer_region, serve

ROLES = """
[roles.analyst]
read = ["pg.public.srv_customers"]
masks = { "pg.public.srv_customers.name" = "'customer ***'" }
row_filters = { "pg.public.srv_customers" = "region = 'r1'" }

[roles.orders]
read = ["maria.*.srv_orders"]

[roles.ops]
monitor = true

[users.alice]
password = "${IBT_ALICE_PW}"
roles = ["analyst"]

[users.carol]
password = "carol-Secret-3"
roles = ["ops"]
"""

CAROL = ("carol", "carol-Secret-3")


@pytest.fixture(scope="module")
def governed(tables):
    tmp = Path(tempfile.mkdtemp(prefix="ibarrow-access-"))
    audit = tmp / "audit.jsonl"
    text = base_config('flight_sql = "127.0.0.1:0"\nhttp = "127.0.0.1:0"\nshutdown_grace_secs = 5\n')
    text += ROLES + f'\n[audit]\nfile = "{audit}"\n'
    served = serve(tmp, text)
    served.audit = audit
    yield served
    assert served.stop() == 0, served.stderr()


def connect(server):
    return flight_sql.connect(server.flight, db_kwargs={"username": "alice", "password": ALICE_PW})


def audit_lines(server) -> list[dict]:
    return [json.loads(line) for line in server.audit.read_text().splitlines()]


def test_a_table_without_a_grant_is_denied_with_an_audit_line(governed):
    sql = "SELECT count(*) FROM maria.ibarrow_test.srv_orders"
    with connect(governed) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as denied:
            cur.execute(sql)
    message = str(denied.value)
    assert "srv_orders" in message and "analyst" in message and "read" in message, message
    http = httpx.post(f"{governed.http}/v1/query", json={"sql": sql}, auth=("alice", ALICE_PW),
                      timeout=30)
    assert http.status_code == 403, http.text
    assert http.json()["error"]["kind"] == "access_denied"
    line = [entry for entry in audit_lines(governed) if entry["statement"] == sql][-1]
    assert line["user"] == "alice" and line["outcome"] == "refused", line
    assert "srv_orders" in line["denial"] and line["ip"].startswith("127.0.0.1"), line


def test_masked_and_filtered_values_are_all_the_client_sees(governed):
    expected = sorted(cid for cid in range(1, CUSTOMERS + 1) if customer_region(cid) == "r1")
    # However the query is written, the name arrives masked, and only region r1's rows.
    for sql in [
        "SELECT id, name FROM pg.public.srv_customers",
        "SELECT id, name FROM (SELECT * FROM pg.public.srv_customers) t",
        "SELECT id, name FROM pg.public.srv_customers WHERE name = 'customer 1' OR id > 0",
        "SELECT c.id, c.name FROM pg.public.srv_customers c JOIN pg.public.srv_customers d "
        "ON c.name = d.name AND c.id = d.id",
    ]:
        with connect(governed) as conn, conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
        assert sorted(r[0] for r in rows) == expected, sql
        assert {r[1] for r in rows} == {"customer ***"}, sql
    line = audit_lines(governed)[-1]
    assert line["outcome"] == "ok" and line["rows"] == len(expected), line
    assert line["tables"][0]["row_filters"] == ["region = 'r1' (role analyst)"], line


def test_listings_name_only_readable_tables(governed):
    with connect(governed) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    tables = sorted(
        (catalog["catalog_name"], schema["db_schema_name"], table["table_name"])
        for catalog in objects
        for schema in catalog["catalog_db_schemas"] or []
        for table in schema["db_schema_tables"] or []
    )
    assert tables == [("pg", "public", "srv_customers")]
    shown = httpx.post(f"{governed.http}/v1/query", json={"sql": "SHOW TABLES"},
                       auth=("alice", ALICE_PW), headers={"Accept": "application/json"}, timeout=30)
    assert shown.status_code == 200, shown.text
    names = {row["table_name"] for row in shown.json() if row["table_schema"] != "information_schema"}
    assert names == {"srv_customers"}, names


def test_only_a_monitor_sees_every_users_statements(governed):
    alice_sql = "SELECT count(*) AS alice_counts FROM pg.public.srv_customers"
    carol_sql = "SELECT 1 AS carol_was_here"
    for sql, auth in [(alice_sql, ("alice", ALICE_PW)), (carol_sql, CAROL)]:
        ran = httpx.post(f"{governed.http}/v1/query", json={"sql": sql}, auth=auth, timeout=30)
        assert ran.status_code == 200, ran.text

    def recent(auth):
        status = httpx.get(f"{governed.http}/v1/status", auth=auth, timeout=30)
        assert status.status_code == 200, status.text
        return status.json()["recent"]

    seen_by_alice = recent(("alice", ALICE_PW))
    assert {q["user"] for q in seen_by_alice} == {"alice"}, seen_by_alice
    assert any(q["sql"] == alice_sql for q in seen_by_alice)
    seen_by_carol = {q["sql"] for q in recent(CAROL)}
    assert {alice_sql, carol_sql} <= seen_by_carol, seen_by_carol

    denied = httpx.get(f"{governed.http}/v1/insights", auth=("alice", ALICE_PW), timeout=30)
    assert denied.status_code == 403, denied.text
    assert denied.json()["error"]["kind"] == "access_denied"
    assert "monitor = true" in denied.json()["error"]["message"], denied.text
    allowed = httpx.get(f"{governed.http}/v1/insights", auth=CAROL, timeout=30)
    assert allowed.status_code == 200, allowed.text


def test_sighup_reloads_a_changed_grant_and_a_new_source(governed):
    sql = "SELECT count(*) AS n FROM maria.ibarrow_test.srv_orders"
    extra = governed.config.parent / "extra.sqlite"
    with sqlite3.connect(extra) as db:
        db.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY)")
        db.executemany("INSERT INTO readings VALUES (?)", [(i,) for i in range(1, 8)])
    text = governed.config.read_text().replace('roles = ["analyst"]', 'roles = ["analyst", "orders"]')
    text = text.replace('read = ["maria.*.srv_orders"]', 'read = ["maria.*.srv_orders", "extra.main.*"]')
    text += f'\n[sources.extra]\nconnection_string = "Driver={{SQLite3}};Database={extra}"\n'
    governed.config.write_text(text)
    governed.process.send_signal(signal.SIGHUP)
    reloaded = "configuration reloaded: sources added: extra; roles changed"
    deadline = time.monotonic() + 30
    while reloaded not in governed.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reloaded in governed.stderr(), governed.stderr()
    with connect(governed) as conn, conn.cursor() as cur:
        cur.execute(sql)
        assert cur.fetchone() == (ORDERS,)
        cur.execute("SELECT count(*) FROM extra.main.readings")
        assert cur.fetchone() == (7,)


def test_audit_verify_catches_an_edited_line(governed):
    copy = governed.audit.with_name("copy.jsonl")
    lines = governed.audit.read_text().splitlines()
    assert len(lines) >= 3
    ok = subprocess.run([BIN, "audit", "verify", str(governed.audit)], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and "chain intact" in ok.stdout, ok.stdout + ok.stderr
    lines[1] = lines[1].replace('"user":"alice"', '"user":"bob"')
    copy.write_text("\n".join(lines) + "\n")
    broken = subprocess.run([BIN, "audit", "verify", str(copy)], capture_output=True, text=True,
                            timeout=60)
    assert broken.returncode == 1 and "line 3" in broken.stdout, broken.stdout
