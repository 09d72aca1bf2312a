"""The server's life and limits: start-up checks, TLS, connection caps, rate limits,
SIGTERM with queries running, and a bounded load."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import httpx
import pytest

from conftest import (ALICE_PW, BIG, BIN, CUSTOMERS, JOIN_SQL, base_config, customer_region,
                      expected_join, serve, users_section)

AUTH = ("alice", ALICE_PW)


@pytest.fixture
def tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="ibarrow-serve-"))


def test_without_users_it_refuses_to_listen_beyond_loopback(tmp):
    config = tmp / "open.toml"
    config.write_text(base_config('http = "0.0.0.0:0"'))
    out = subprocess.run([BIN, "serve", "--config", str(config)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "IBT_PG_PW": "ibarrow"})
    assert out.returncode == 2
    assert "[users.alice]" in out.stderr and "ibarrow passwd" in out.stderr, out.stderr


def test_tls_with_a_generated_certificate(tmp):
    cert, key = tmp / "server.pem", tmp / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    served = serve(tmp, base_config(
        f'flight_sql = "127.0.0.1:0"\nhttp = "127.0.0.1:0"\ntls = {{ cert = "{cert}", key = "{key}" }}'
    ) + users_section())
    try:
        assert served.flight.startswith("grpc+tls://") and served.http.startswith("https://")
        with flight_sql.connect(served.flight, db_kwargs={
            "username": "alice", "password": ALICE_PW,
            adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value: cert.read_text(),
        }) as conn, conn.cursor() as cur:
            cur.execute(JOIN_SQL)
            assert [tuple(r.values()) for r in cur.fetch_arrow_table().to_pylist()] == expected_join()
        context = ssl.create_default_context(cafile=str(cert))
        answer = httpx.post(f"{served.http}/v1/query", json={"sql": "SELECT 1 AS one"}, auth=AUTH,
                            verify=context, timeout=30)
        assert answer.json() == [{"one": 1}]
        # Plain HTTP on the TLS port gets no answer.
        with pytest.raises(httpx.HTTPError):
            httpx.post(served.http.replace("https://", "http://") + "/v1/query",
                       json={"sql": "SELECT 1"}, auth=AUTH, timeout=5)
    finally:
        assert served.stop() == 0


def test_connections_per_ip_are_capped(tmp):
    served = serve(tmp, base_config('http = "127.0.0.1:0"\nmax_connections_per_ip = 2'))
    try:
        host, port = served.http.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
        time.sleep(0.3)
        extra = socket.create_connection((host, int(port)), timeout=5)
        extra.settimeout(5)
        assert extra.recv(1) == b""  # closed by the server at once
        held[0].close()
        time.sleep(0.3)
        assert httpx.get(f"{served.http}/health", timeout=10).status_code == 200
        held[1].close()
        # Without [users] it answers only to loopback names (a re-pointed name is refused).
        rebound = httpx.get(f"{served.http}/health", headers={"Host": f"evil.example:{port}"}, timeout=10)
        assert rebound.status_code == 403 and rebound.json()["error"]["kind"] == "forbidden"
    finally:
        assert served.stop() == 0


def test_queries_per_ip_are_rate_limited_with_retry_after(tmp):
    served = serve(tmp, base_config('http = "127.0.0.1:0"',
                                    extra="rate_limits = { per_ip_per_minute = 3 }"))
    try:
        codes = []
        for _ in range(4):
            answer = httpx.post(f"{served.http}/v1/query", json={"sql": "SELECT 1"}, timeout=30)
            codes.append(answer.status_code)
        assert codes == [200, 200, 200, 429]
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.json()["error"]["kind"] == "rate_limit"
    finally:
        assert served.stop() == 0


def test_sigterm_lets_a_running_query_finish_and_refuses_new_ones(tmp):
    served = serve(tmp, base_config('http = "127.0.0.1:0"\nshutdown_grace_secs = 20'))
    received, first_chunk = [], threading.Event()

    def slow_reader():
        with httpx.Client(timeout=60) as client:
            with client.stream("POST", f"{served.http}/v1/query", headers={"Accept": "application/x-ndjson"},
                               json={"sql": "SELECT id FROM pg.public.srv_big"}) as r:
                for chunk in r.iter_bytes(65536):
                    received.append(chunk)
                    if not first_chunk.is_set():
                        first_chunk.set()
                        time.sleep(1.0)

    reader = threading.Thread(target=slow_reader)
    reader.start()
    assert first_chunk.wait(60)
    served.process.send_signal(15)
    time.sleep(0.3)
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{served.http}/v1/query", json={"sql": "SELECT 1"}, timeout=5).raise_for_status()
    reader.join(60)
    lines = b"".join(received).splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == list(range(1, BIG + 1))
    assert served.process.wait(30) == 0
    assert "shutting down" in served.stderr()


def test_an_idle_websocket_does_not_hold_up_a_shutdown(tmp):
    import asyncio
    import websockets
    served = serve(tmp, base_config('http = "127.0.0.1:0"\nshutdown_grace_secs = 30'))
    url = served.http.replace("http://", "ws://") + "/v1/query/ws"

    async def idle_then_signal():
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"sql": "SELECT 1 AS one"}))
            while True:
                message = await asyncio.wait_for(ws.recv(), 30)
                if isinstance(message, str) and json.loads(message)["type"] == "done":
                    break
            started = time.monotonic()
            served.process.send_signal(15)
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)
            return time.monotonic() - started

    assert asyncio.run(idle_then_signal()) < 10
    assert served.process.wait(20) == 0


def test_when_the_grace_runs_out_a_stream_is_cut_not_shortened(tmp):
    served = serve(tmp, base_config('http = "127.0.0.1:0"\nshutdown_grace_secs = 1'))
    outcome = {}

    def very_slow_reader():
        try:
            with httpx.Client(timeout=60) as client:
                with client.stream("POST", f"{served.http}/v1/query", headers={"Accept": "application/x-ndjson"},
                                   json={"sql": "SELECT a.id, b.id FROM pg.public.srv_big a, pg.public.srv_customers b"}) as r:
                    for _ in r.iter_bytes(4096):
                        outcome.setdefault("started", True)
                        time.sleep(0.01)
            outcome["complete"] = True
        except httpx.HTTPError as err:
            outcome["error"] = err

    reader = threading.Thread(target=very_slow_reader)
    reader.start()
    deadline = time.monotonic() + 60
    while "started" not in outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    served.process.send_signal(15)
    assert served.process.wait(30) == 0
    reader.join(60)
    assert "error" in outcome and "complete" not in outcome, outcome


def test_a_bounded_load_loses_nothing_and_returns_every_connection(server):
    """32 clients, 2 000 queries over HTTP and Flight SQL; every answer checked, and the
    figures printed (docs/server.md has the measured ones)."""
    clients, per_client = 32, 60
    expected = expected_join()
    latencies, failures = [], []
    lock = threading.Lock()

    def http_client(n):
        with httpx.Client(auth=AUTH, timeout=120) as client:
            for i in range(per_client):
                started = time.perf_counter()
                if i % 3 == 0:
                    body = client.post(f"{server.http}/v1/query", json={"sql": JOIN_SQL}).json()
                    ok = [(r["region"], r["orders"]) for r in body] == [(e[0], e[1]) for e in expected]
                else:
                    cid = (n * per_client + i) % CUSTOMERS + 1
                    body = client.post(f"{server.http}/v1/query", json={
                        "sql": "SELECT id, region FROM pg.public.srv_customers WHERE id = $1",
                        "params": [cid]}).json()
                    ok = body == [{"id": cid, "region": customer_region(cid)}]
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if not ok:
                        failures.append(body)

    def flight_client(n):
        with flight_sql.connect(server.flight, db_kwargs={"username": "alice", "password": ALICE_PW}) as conn:
            for i in range(per_client):
                started = time.perf_counter()
                with conn.cursor() as cur:
                    cid = (n * per_client + i) % CUSTOMERS + 1
                    cur.execute("SELECT id, region FROM pg.public.srv_customers WHERE id = ?", parameters=(cid,))
                    ok = cur.fetchall() == [(cid, customer_region(cid))]
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if not ok:
                        failures.append(cid)

    threads = [threading.Thread(target=http_client if n % 4 else flight_client, args=(n,))
               for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    elapsed = time.perf_counter() - started
    assert not failures, failures[:3]
    assert len(latencies) == clients * per_client
    latencies.sort()
    status = Path(f"/proc/{server.pid}/status").read_text()
    peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    print(f"\nload: {len(latencies)} queries by {clients} clients in {elapsed:.1f} s = "
          f"{len(latencies) / elapsed:.0f} queries/s; p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms; peak RSS {peak_kib / 1024:.0f} MiB")
    assert peak_kib < 2 * 1024 * 1024, "the server's memory grew past 2 GiB"
    sources = httpx.get(f"{server.http}/v1/sources", auth=AUTH, timeout=30).json()["sources"]
    assert all(s["pool"]["in_use"] == 0 for s in sources), sources
