"""The work of `cargo bench --bench point_queries` on DuckDB with its postgres and sqlite
scanners ATTACHed to the same `bench_points` tables: point lookups on distinct keys and the
repeated dashboard query from 1, 2, 8 and 32 concurrent sessions (a DuckDB cursor per thread;
DuckDB releases the GIL while a query runs). DuckDB has no result cache, so its dashboard
query reads the database every time. Prints p50/p99 latency and queries/s per line, with this
process's peak RSS during the line.

    python3 -m venv /tmp/duckvenv
    /tmp/duckvenv/bin/pip install duckdb==1.4.4 duckdb-extension-postgres-scanner==1.4.4 \
        duckdb-extension-sqlite-scanner==1.4.4
    cargo bench --bench point_queries        # makes the bench_points tables
    /tmp/duckvenv/bin/python benches/duckdb_queries.py

IBARROW_BENCH_QUERIES sets the queries per line (default 2000); IBARROW_BENCH_JSON=<file>
appends each line as JSON for `benches/query_chart.py`.
"""

import json
import os
import pathlib
import sys
import tempfile
import threading
import time

import duckdb

from duckdb_tpch import load_extensions

ROWS = 100_000
QUERIES = int(os.environ.get("IBARROW_BENCH_QUERIES", "2000"))
LITE = pathlib.Path(tempfile.gettempdir()) / "ibarrow_bench_points.sqlite"
DATABASES = [("PostgreSQL", "pg.public.bench_points"), ("SQLite", "lite.main.bench_points")]
LABEL = f"DuckDB {duckdb.__version__}, scanners"


def lookup(table: str, n: int, first: int) -> str:
    """Mirrors benches/point_queries.rs."""
    key = ((first + n) * 7919) % ROWS + 1
    return f"SELECT id, name FROM {table} WHERE id = {key}"


def dashboard(table: str) -> str:
    """Mirrors benches/point_queries.rs (`dashboard_statement`): 100 rows."""
    return (f"SELECT id % 100 AS bucket, count(*) AS n, min(name) AS first_name FROM {table} "
            f"WHERE id <= {ROWS // 10} GROUP BY id % 100 ORDER BY bucket")


def reset_peak_rss() -> None:
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def percentile(sorted_samples: list[float], p: float) -> float:
    return sorted_samples[round((len(sorted_samples) - 1) * p)] * 1000


def concurrent(con, database, work, sessions, count, rows, statement):
    per_session = count // sessions
    cursors = [con.cursor() for _ in range(sessions)]
    samples: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        mine = []
        try:
            for i in range(per_session):
                sql = statement(index * per_session + i)
                at = time.perf_counter()
                got = len(cursors[index].execute(sql).fetchall())
                mine.append(time.perf_counter() - at)
                assert got == rows, f"{sql}: {got} rows, not {rows}"
        except BaseException as failure:  # reported after the line
            failures.append(failure)
        with lock:
            samples.extend(mine)

    reset_peak_rss()
    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for cursor in cursors:
        cursor.close()
    if failures:
        raise failures[0]
    samples.sort()
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    rate = len(samples) / elapsed
    rss = peak_rss_mb()
    print(f"  {work}, {sessions:>2} sessions{'':<{24 - len(work)}} p50 {p50:>7.3f} ms   "
          f"p99 {p99:>7.3f} ms   {rate:>7.0f} queries/s   peak RSS {rss or 0:>4.0f} MB", flush=True)
    if os.environ.get("IBARROW_BENCH_JSON"):
        with open(os.environ["IBARROW_BENCH_JSON"], "a") as out:
            out.write(json.dumps({
                "engine": LABEL, "database": database, "work": work, "sessions": sessions,
                "queries": len(samples), "p50_ms": p50, "p99_ms": p99,
                "queries_per_sec": rate, "peak_rss_mb": rss,
            }) + "\n")


def main() -> None:
    if not LITE.exists():
        sys.exit(f"{LITE} is missing: run `cargo bench --bench point_queries` first")
    con = duckdb.connect()
    load_extensions(con)
    con.execute(
        "ATTACH 'host=127.0.0.1 port=5432 dbname=ibarrow_test user=ibarrow password=ibarrow' "
        "AS pg (TYPE postgres, READ_ONLY)"
    )
    con.execute(f"ATTACH '{LITE}' AS lite (TYPE sqlite, READ_ONLY)")
    print(f"{LABEL}, {QUERIES} queries per line, {os.cpu_count()} cores", flush=True)
    first = 0
    for database, table in DATABASES:
        print(database, flush=True)
        for sessions in [1, 2, 8, 32]:
            start = first
            concurrent(con, database, "point lookups", sessions, QUERIES, 1,
                       lambda n, s=start: lookup(table, n, s))
            first += QUERIES
        for sessions in [1, 2, 8, 32]:
            concurrent(con, database, "dashboard query", sessions, QUERIES, 100,
                       lambda n: dashboard(table))


if __name__ == "__main__":
    main()
