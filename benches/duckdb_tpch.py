"""The 22 queries of tests/slt/tpch/q01.slt … q22.slt on DuckDB with its postgres, mysql and sqlite scanners
ATTACHed to the same three databases and tables that `cargo bench --bench tpch` loads, for a
side-by-side comparison with ibarrow.

    python3 -m venv /tmp/duckvenv
    /tmp/duckvenv/bin/pip install duckdb==1.4.4 duckdb-extension-postgres-scanner==1.4.4 \
        duckdb-extension-mysql==1.4.4 duckdb-extension-sqlite-scanner==1.4.4
    IBARROW_BENCH_SF=0.1 /tmp/duckvenv/bin/python benches/duckdb_tpch.py

IBARROW_BENCH_ONLY=q05,q20 runs only those queries, as it does for `cargo bench --bench tpch`.

Run `cargo bench --bench tpch` at the same scale first: it loads the data. The extensions
come from wheels because DuckDB cannot download them here; DuckDB checks their signatures
on LOAD.
"""

import glob
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time

import duckdb

SCALE = float(os.environ.get("IBARROW_BENCH_SF", "0.1"))
ROOT = pathlib.Path(__file__).resolve().parent.parent
PLACEMENT = {
    "pg": ["lineitem", "orders"],
    "maria": ["customer", "supplier", "nation"],
    "lite": ["part", "partsupp", "region"],
}


def remote_name(table: str) -> str:
    """Mirrors tests/support/tpch.rs: tpch_<t> at 0.01, tpch_sf0_1_<t> at 0.1, …"""
    if SCALE == 0.01:
        return f"tpch_{table}"
    return f"tpch_sf{('%g' % SCALE).replace('.', '_')}_{table}"


def queries():
    """(name, sql) of each TPC-H query file: the lines after `query` up to `----`."""
    for number in range(1, 23):
        name = f"q{number:02}"
        lines = (ROOT / f"tests/slt/tpch/{name}.slt").read_text().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("query")) + 1
        body = []
        for line in lines[start:]:
            if not line.strip() or line.strip() == "----":
                break
            body.append(line)
        yield name, "\n".join(body)


def load_extensions(con):
    site = pathlib.Path(duckdb.__file__).resolve().parent.parent
    tmp = pathlib.Path(tempfile.mkdtemp())
    for path in glob.glob(str(site / "duckdb_extension_*/extensions/*/*.duckdb_extension")):
        name = pathlib.Path(path).name
        # DuckDB finds the entry point by file name; the MySQL extension is `mysql_scanner`.
        if name == "mysql.duckdb_extension":
            name = "mysql_scanner.duckdb_extension"
        shutil.copy(path, tmp / name)
        con.execute(f"LOAD '{tmp / name}'")


def main():
    con = duckdb.connect()
    load_extensions(con)
    con.execute(
        "ATTACH 'host=127.0.0.1 port=5432 dbname=ibarrow_test user=ibarrow password=ibarrow' "
        "AS pg (TYPE postgres, READ_ONLY)"
    )
    con.execute(
        "ATTACH 'host=127.0.0.1 port=3306 database=ibarrow_test user=ibarrow password=ibarrow' "
        "AS maria (TYPE mysql, READ_ONLY)"
    )
    lite = pathlib.Path(tempfile.gettempdir()) / f"ibarrow_tpch_sf{'%g' % SCALE}.sqlite"
    if not lite.exists():
        sys.exit(f"{lite} is missing: run `cargo bench --bench tpch` at this scale first")
    con.execute(f"ATTACH '{lite}' AS lite (TYPE sqlite, READ_ONLY)")
    schema = {"pg": "public", "maria": "ibarrow_test", "lite": "main"}
    for db, tables in PLACEMENT.items():
        for table in tables:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM {db}.{schema[db]}.{remote_name(table)}"
            )

    print(f"DuckDB {duckdb.__version__}, TPC-H SF {SCALE}, {os.cpu_count()} cores")
    only = [n.strip() for n in os.environ.get("IBARROW_BENCH_ONLY", "").split(",") if n.strip()]
    total = 0.0
    for name, sql in queries():
        if only and name not in only:
            continue
        started = time.perf_counter()
        rows = con.execute(sql).fetchall()
        seconds = time.perf_counter() - started
        total += seconds
        title = re.sub(r"\s+", " ", sql)[:60]
        print(f"{name} {seconds:>7.3} s {len(rows):>6} rows  {title}")
    print(f"total {total:.2f} s")


if __name__ == "__main__":
    main()
