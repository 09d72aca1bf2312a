"""The WebSocket stream (with the `websockets` client) and the status page (in headless
Chromium, Debian's `chromium`, with a screenshot in server/tests/output/)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.ipc
import websockets

from conftest import (ALICE_PW, BIG, JOIN_SQL, base_config, expected_join,
                      pg_active_ibarrow_statements, serve)

OUTPUT = Path(__file__).parent / "output"
BASIC = "Basic " + base64.b64encode(f"alice:{ALICE_PW}".encode()).decode()


def ws_url(server) -> str:
    return server.http.replace("http://", "ws://") + "/v1/query/ws"


async def collect(ws) -> tuple[bytes, list[dict], dict]:
    """Binary frames joined, progress frames, and the last control frame."""
    data, progress = b"", []
    while True:
        message = await asyncio.wait_for(ws.recv(), 60)
        if isinstance(message, bytes):
            data += message
            continue
        control = json.loads(message)
        if control["type"] == "progress":
            progress.append(control)
        else:
            return data, progress, control


def test_a_websocket_streams_batches_with_progress_and_cancels(server):
    async def session():
        async with websockets.connect(ws_url(server), additional_headers={"Authorization": BASIC}) as ws:
            await ws.send(json.dumps({"sql": JOIN_SQL, "format": "ndjson"}))
            data, progress, last = await collect(ws)
            assert last["type"] == "done", last
            rows = [json.loads(line) for line in data.splitlines()]
            assert [(r["region"], r["orders"]) for r in rows] == [(e[0], e[1]) for e in expected_join()]
            assert progress and progress[-1]["rows"] == len(rows) == last["rows"]

            await ws.send(json.dumps({"sql": "SELECT id FROM pg.public.srv_big", "format": "arrow"}))
            data, progress, last = await collect(ws)
            assert last["type"] == "done"
            table = pyarrow.ipc.open_stream(data).read_all()
            assert sorted(table.column("id").to_pylist()) == list(range(1, BIG + 1))
            assert len(progress) > 1

            # A second query while one runs is refused, the first goes on.
            await ws.send(json.dumps({"sql": "SELECT id FROM pg.public.srv_big"}))
            await ws.send(json.dumps({"sql": "SELECT 2"}))
            refused, done = None, None
            while done is None:
                message = await asyncio.wait_for(ws.recv(), 60)
                if isinstance(message, str):
                    control = json.loads(message)
                    if control["type"] == "refused":
                        refused = control
                    elif control["type"] != "progress":
                        done = control
            assert refused and "running" in refused["error"]["message"]
            assert done["type"] == "done" and done["rows"] == BIG

            await ws.send(json.dumps({"sql": "SELEC 1"}))
            _, _, last = await collect(ws)
            assert last["type"] == "error" and last["error"]["kind"] == "sql"

            await ws.send(json.dumps({"sql": "SELECT a.id, b.id FROM pg.public.srv_big a, "
                                              "pg.public.srv_customers b"}))
            first = await asyncio.wait_for(ws.recv(), 60)
            assert isinstance(first, bytes)
            await ws.send(json.dumps({"cancel": True}))
            _, _, last = await collect(ws)
            assert last["type"] == "cancelled"

    asyncio.run(session())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pg_active_ibarrow_statements() > 0:
        time.sleep(0.2)
    assert pg_active_ibarrow_statements() == 0


def test_closing_a_websocket_mid_stream_drops_the_query_and_tokens_work_in_the_url(server):
    token = httpx.post(f"{server.http}/v1/login", auth=("alice", ALICE_PW), timeout=30).json()["token"]

    async def session():
        async with websockets.connect(ws_url(server) + f"?access_token={token}") as ws:
            await ws.send(json.dumps({"sql": "SELECT a.id, b.id FROM pg.public.srv_big a, "
                                              "pg.public.srv_customers b"}))
            assert isinstance(await asyncio.wait_for(ws.recv(), 60), bytes)

    asyncio.run(session())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pg_active_ibarrow_statements() > 0:
        time.sleep(0.2)
    assert pg_active_ibarrow_statements() == 0

    async def refused():
        try:
            async with websockets.connect(ws_url(server) + "?access_token=wrong"):
                return None
        except websockets.exceptions.InvalidStatus as err:
            return err.response.status_code

    assert asyncio.run(refused()) == 401

    async def cross_site():
        try:
            async with websockets.connect(ws_url(server) + f"?access_token={token}",
                                          origin="http://evil.example"):
                return None
        except websockets.exceptions.InvalidStatus as err:
            return err.response.status_code

    assert asyncio.run(cross_site()) == 403


def test_the_status_page_shows_sources_and_recent_queries_in_a_browser():
    tmp = Path(tempfile.mkdtemp(prefix="ibarrow-serve-"))
    served = serve(tmp, base_config('http = "127.0.0.1:0"'))
    try:
        marker = "SELECT count(*) AS status_page_marker FROM maria.ibarrow_test.srv_orders"
        assert httpx.post(f"{served.http}/v1/query", json={"sql": marker}, timeout=30).status_code == 200
        httpx.post(f"{served.http}/v1/query", json={"sql": "SELEC broken"}, timeout=30)
        OUTPUT.mkdir(exist_ok=True)
        screenshot = OUTPUT / "status-page.png"
        screenshot.unlink(missing_ok=True)
        browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--window-size=1280,900", "--virtual-time-budget=8000",
                   f"--user-data-dir={tmp / 'chromium'}"]
        dom = subprocess.run(browser + ["--dump-dom", served.http + "/"], check=True,
                             capture_output=True, text=True, timeout=120).stdout
        subprocess.run(browser + [f"--screenshot={screenshot}", served.http + "/"], check=True,
                       capture_output=True, timeout=120)
        assert screenshot.stat().st_size > 10_000
        # What the page's script filled in from /v1/status.
        assert "status_page_marker" in dom
        for source in ("pg", "pgw", "maria"):
            assert f"<td>{source}</td>" in dom, dom
        assert "reachable" in dom and "refused (sql)" in dom, dom
        assert "queries ok" in dom
    finally:
        assert served.stop() == 0
