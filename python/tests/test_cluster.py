"""``ibarrow.Engine(cluster=...)``: queries on a Ballista cluster on loopback (a scheduler and
an executor, ``ibarrow cluster ...`` processes of the binary ``cargo test`` built) give the
answers SQLite's own engine gives over the same file (docs/cluster.md)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import ibarrow
from test_examples import ibarrow_bin

START_LIMIT = 60.0


def free_port(pair: bool = False) -> int:
    """A free loopback port (and the next one free too, with ``pair``)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def wait_for(process: subprocess.Popen[bytes], log: Path, line: str) -> None:
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if line in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            pytest.fail(f"the process ended:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    pytest.fail(f"no {line!r} after {START_LIMIT}s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """A SQLite file of sales, a configuration naming it, and a cluster reading it: yields the
    scheduler's URL, the configuration and the SQLite file."""
    work = tmp_path_factory.mktemp("cluster")
    db = work / "sales.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, region TEXT, amount INTEGER)")
        conn.executemany(
            "INSERT INTO sales VALUES (?, ?, ?)",
            [(i, f"r{i % 7}", (i * 37) % 1000) for i in range(1, 20001)],
        )
    config = work / "cluster.toml"
    config.write_text(
        f'[sources.lite]\nconnection_string = "Driver={{SQLite3}};Database={db};"\n'
        "partitions = 2\nmin_partition_rows = 1000\n"
    )
    scheduler_port = free_port()
    executor_port = free_port(pair=True)
    url = f"df://127.0.0.1:{scheduler_port}"
    processes = []
    try:
        for name, args, ready in [
            (
                "scheduler",
                ["cluster", "scheduler", "--bind", f"127.0.0.1:{scheduler_port}"],
                "listening on df://",
            ),
            (
                "executor",
                ["cluster", "executor", "--scheduler", url, "--bind", f"127.0.0.1:{executor_port}"],
                "serving tasks of",
            ),
        ]:
            log = work / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [ibarrow_bin(), *args, "--config", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=out,
                    stdin=subprocess.DEVNULL,
                    # The scheduler logs each executor that registers at info.
                    env={**os.environ, "IBARROW_LOG": "info"},
                )
            processes.append(process)
            wait_for(process, log, ready)
        # The executor registers with its first heartbeat.
        wait_for(processes[0], work / "scheduler.log", f"127.0.0.1:{executor_port}")
        yield url, config, db
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_cluster_answers_as_sqlite_does(cluster: tuple[str, Path, Path]) -> None:
    url, config, db = cluster
    engine = ibarrow.Engine.from_config(config, cluster=url)
    sql = (
        "SELECT region, count(*) AS n, sum(amount) AS total FROM lite.main.sales "
        "WHERE amount > 100 GROUP BY region ORDER BY region"
    )
    table = pa.table(engine.sql(sql))
    with sqlite3.connect(db) as conn:
        expected = conn.execute(sql.replace("lite.main.", "")).fetchall()
    assert [tuple(row.values()) for row in table.to_pylist()] == expected


def test_an_engine_without_sources_runs_on_the_cluster_too(cluster: tuple[str, Path, Path]) -> None:
    url, _, db = cluster
    engine = ibarrow.Engine(cluster=url)
    engine.register_odbc("lite", f"Driver={{SQLite3}};Database={db};")
    table = pa.table(engine.sql("SELECT max(id) AS top FROM lite.main.sales"))
    assert table.to_pylist() == [{"top": 20000}]


def test_a_bad_cluster_url_says_how_to_write_one() -> None:
    with pytest.raises(ibarrow.ConfigError, match=r"df://HOST:PORT"):
        ibarrow.Engine(cluster="http://127.0.0.1:50050")
