"""The HTTP API with a real HTTP client (httpx): encodings, parameters, errors, health."""

from __future__ import annotations

import csv
import io
import json
import time
from decimal import Decimal

import httpx
import pyarrow as pa
import pyarrow.ipc

from conftest import (ALICE_PW, BIG, BOB_PW, CUSTOMERS, JOIN_SQL, PG_CONN, customer_region,
                      expected_join, pg_active_ibarrow_statements, serve, users_section)

AUTH = ("alice", ALICE_PW)


def post(server, body, accept=None, auth=AUTH, headers=None, **kwargs):
    headers = {**({"Accept": accept} if accept else {}), **(headers or {})}
    return httpx.post(f"{server.http}/v1/query", json=body, headers=headers, auth=auth,
                      timeout=120, **kwargs)


def as_expected(region, orders, total):
    return (region, int(orders), Decimal(str(total)))


def test_the_join_streams_as_ndjson_arrow_csv_and_json(server):
    expected = expected_join()
    ndjson = post(server, {"sql": JOIN_SQL}, "application/x-ndjson")
    assert ndjson.status_code == 200, ndjson.text
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert ndjson.headers.get("transfer-encoding") == "chunked"
    lines = [json.loads(line) for line in ndjson.text.splitlines() if line]
    assert [as_expected(r["region"], r["orders"], r["total"]) for r in lines] == expected

    arrow = post(server, {"sql": JOIN_SQL}, "application/vnd.apache.arrow.stream")
    assert arrow.status_code == 200
    table = pyarrow.ipc.open_stream(arrow.content).read_all()
    assert [as_expected(*r.values()) for r in table.to_pylist()] == expected

    text = post(server, {"sql": JOIN_SQL}, "text/csv").text
    assert [as_expected(*r) for r in list(csv.reader(io.StringIO(text)))[1:]] == expected

    array = post(server, {"sql": JOIN_SQL}).json()
    assert [as_expected(r["region"], r["orders"], r["total"]) for r in array] == expected


def test_parameters_are_bound_not_spliced(server):
    found = post(server, {"sql": "SELECT id, name, region FROM pg.public.srv_customers WHERE id = $1",
                          "params": [42]}).json()
    assert found == [{"id": 42, "name": "customer 42", "region": customer_region(42)}]
    found = post(server, {"sql": "SELECT count(*) AS n FROM pg.public.srv_customers WHERE name = ?",
                          "params": ["x' OR '1'='1"]}).json()
    assert found == [{"n": 0}]


def test_bearer_tokens_from_login_work_until_logout(server):
    login = httpx.post(f"{server.http}/v1/login", auth=("bob", BOB_PW), timeout=30)
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    ok = httpx.post(f"{server.http}/v1/query", json={"sql": "SELECT 1 AS one"}, headers=bearer, timeout=30)
    assert ok.json() == [{"one": 1}]
    assert httpx.post(f"{server.http}/v1/logout", headers=bearer, timeout=30).status_code == 204
    gone = httpx.post(f"{server.http}/v1/query", json={"sql": "SELECT 1"}, headers=bearer, timeout=30)
    assert gone.status_code == 401


def test_requests_from_pages_of_other_sites_are_refused(server):
    host = server.http.removeprefix("http://")
    foreign = post(server, {"sql": "SELECT 1 AS one"}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and foreign.json()["error"]["kind"] == "forbidden"
    # The status page's own requests carry its origin.
    same = post(server, {"sql": "SELECT 1 AS one"}, headers={"Origin": f"http://{host}"})
    assert same.json() == [{"one": 1}]


def test_a_token_cannot_log_in_for_another_token(server):
    token = httpx.post(f"{server.http}/v1/login", auth=AUTH, timeout=30).json()["token"]
    again = httpx.post(f"{server.http}/v1/login", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert again.status_code == 401 and "basic credentials" in again.json()["error"]["message"]


def test_insights_group_runs_by_statement_and_need_a_login(server):
    sql = "SELECT name FROM pg.public.srv_customers WHERE id = {}"
    for n in (3, 4, 5):
        assert post(server, {"sql": sql.format(n)}).status_code == 200
    assert httpx.get(f"{server.http}/v1/insights", timeout=30).status_code == 401
    insights = httpx.get(f"{server.http}/v1/insights", auth=AUTH, timeout=30).json()
    runs = {s["statement"]: s["runs"] for s in insights["statements_by_total_time"]
            + insights["statements_by_p95"]}
    assert runs.get(sql.format("?"), 0) >= 3, runs
    assert any(u["user"] == "alice" and u["queries"] >= 3 for u in insights["users"])
    assert any(s["source"] == "pg" and s["rows"] >= 3 for s in insights["sources"])
    assert set(insights) == {"statements_by_total_time", "statements_by_p95", "users", "sources",
                             "cache", "index_advice"}


def test_errors_are_json_with_fitting_statuses(server):
    def error(response, status, kind):
        assert response.status_code == status, response.text
        body = response.json()["error"]
        assert body["kind"] == kind and body["message"], body
        return body["message"]

    error(post(server, {"sql": "SELECT 1"}, auth=None), 401, "unauthenticated")
    assert post(server, {"sql": "SELECT 1"}, auth=None).headers["www-authenticate"].startswith("Basic")
    error(post(server, {"sql": "SELECT 1"}, auth=("alice", "nope")), 401, "unauthenticated")
    message = error(post(server, {"sql": "SELEC 1"}), 400, "sql")
    assert "SELEC" in message
    error(post(server, {"sql": "SELECT * FROM pg.public.no_such_table"}), 400, "sql")
    error(post(server, {"sql": "DROP TABLE pg.public.srv_customers"}), 400, "input")
    error(post(server, {"query": "SELECT 1"}), 400, "input")
    error(post(server, {"sql": "SELECT 1"}, "image/png"), 400, "input")
    error(httpx.get(f"{server.http}/nowhere", auth=AUTH, timeout=30), 404, "not_found")
    big = httpx.post(f"{server.http}/v1/query", content=b'{"sql": "' + b" " * (2 << 20) + b'"}',
                     auth=AUTH, timeout=30)
    assert "max_body_bytes" in error(big, 413, "input")
    # Secrets of the sources never show in an answer.
    assert "ibarrow;" not in message


def test_health_metrics_and_sources(server):
    health = httpx.get(f"{server.http}/health", timeout=30)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert {s["source"] for s in body["sources"]} == {"pg", "pgw", "maria"}
    assert all(s["reachable"] for s in body["sources"])
    assert httpx.get(f"{server.http}/metrics", timeout=30).status_code == 401
    metrics = httpx.get(f"{server.http}/metrics", auth=AUTH, timeout=30)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "ibarrow_queries_total" in metrics.text
    sources = httpx.get(f"{server.http}/v1/sources", auth=AUTH, timeout=30).json()["sources"]
    assert {s["dbms"] for s in sources} >= {"PostgreSQL"}
    assert "Pwd" not in json.dumps(sources)


def test_a_client_that_disconnects_mid_stream_cancels_the_remote_statement(server):
    with httpx.Client(auth=AUTH, timeout=60) as client:
        with client.stream("POST", f"{server.http}/v1/query", headers={"Accept": "application/x-ndjson"},
                           json={"sql": "SELECT a.id, b.id FROM pg.public.srv_big a, pg.public.srv_customers b"}) as r:
            assert r.status_code == 200
            next(r.iter_bytes())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pg_active_ibarrow_statements() > 0:
        time.sleep(0.2)
    assert pg_active_ibarrow_statements() == 0
    sources = httpx.get(f"{server.http}/v1/sources", auth=AUTH, timeout=30).json()["sources"]
    assert all(s["pool"]["in_use"] == 0 for s in sources), sources


def test_a_large_result_streams_completely(server):
    with httpx.Client(auth=AUTH, timeout=120) as client:
        with client.stream("POST", f"{server.http}/v1/query",
                           headers={"Accept": "application/vnd.apache.arrow.stream"},
                           json={"sql": "SELECT id, payload FROM pg.public.srv_big"}) as r:
            data = r.read()
    table = pyarrow.ipc.open_stream(data).read_all()
    assert table.num_rows == BIG
    assert sorted(table.column("id").to_pylist()) == list(range(1, BIG + 1))
    assert pg_active_ibarrow_statements() == 0


def test_a_source_with_a_dead_replica_answers_and_reports_it_degraded(tables, tmp_path):
    """The replica's port is closed: reads move to the primary, /health stays 200 with the
    source degraded, and each endpoint is listed (no secrets), counted in /metrics."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    dead = PG_CONN.replace("Port=5432", f"Port={dead_port}")
    served = serve(tmp_path, f"""
[sources.rep]
connection_string = "{PG_CONN}"
replicas = ["{dead}"]
connect_timeout_secs = 2

[server]
http = "127.0.0.1:0"
""" + users_section())
    try:
        for _ in range(3):
            found = post(served, {"sql": "SELECT count(*) AS n FROM rep.public.srv_customers"})
            assert found.status_code == 200, found.text
            assert found.json() == [{"n": CUSTOMERS}]
        health = httpx.get(f"{served.http}/health", timeout=30)
        assert health.status_code == 200, health.text
        source = health.json()["sources"][0]
        assert source["reachable"] and source["degraded"], source
        endpoints = {e["endpoint"]: e for e in source["endpoints"]}
        assert endpoints["primary"]["reachable"] and not endpoints["replica1"]["reachable"]
        assert endpoints["replica1"]["failed_over"] >= 1, endpoints
        detailed = httpx.get(f"{served.http}/v1/sources", auth=AUTH, timeout=30)
        assert f"Port={dead_port}" in detailed.text
        assert "Pwd=***" in detailed.text and "Pwd=ibarrow" not in detailed.text
        metrics = httpx.get(f"{served.http}/metrics", auth=AUTH, timeout=30).text
        failovers = [line for line in metrics.splitlines()
                     if line.startswith('ibarrow_endpoint_failovers_total{source="rep",endpoint="replica1"}')]
        assert failovers and int(failovers[0].split()[-1]) >= 1, metrics
    finally:
        assert served.stop() == 0, served.stderr()
