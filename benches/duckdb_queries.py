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

import os
import sys

import duckdb

from duckdb_tpch import load_extensions
from small_queries import DATABASES, LITE, QUERIES, concurrent, dashboard, lookup

ENGINE = f"DuckDB {duckdb.__version__}, scanners"


class Cursor:
    """One session: a DuckDB cursor of the shared database instance."""

    def __init__(self, con):
        self.cursor = con.cursor()

    def rows(self, sql: str) -> int:
        return len(self.cursor.execute(sql).fetchall())

    def close(self) -> None:
        self.cursor.close()


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
    print(f"{ENGINE}, {QUERIES} queries per line, {os.cpu_count()} cores", flush=True)
    first = 0
    for database, table in DATABASES:
        print(database, flush=True)

        def line(work):
            return {"engine": ENGINE, "database": database, "work": work}

        for sessions in [1, 2, 8, 32]:
            cursors = [Cursor(con) for _ in range(sessions)]
            concurrent(cursors, line("point lookups"), QUERIES, 1,
                       lambda n, s=first: lookup(table, n, s), "self")
            first += QUERIES
        for sessions in [1, 2, 8, 32]:
            cursors = [Cursor(con) for _ in range(sessions)]
            concurrent(cursors, line("dashboard query"), QUERIES, 100,
                       lambda n: dashboard(table), "self")


if __name__ == "__main__":
    main()
