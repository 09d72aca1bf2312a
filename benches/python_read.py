"""Rows per second of a full read of a 1M-row PostgreSQL table into a pyarrow Table:
`ibarrow.Engine.sql(...).to_arrow()` (1 and 2 range partitions) and the query builder
(`Engine.table(...).select(...)`) against the `arrow-odbc` and `pyodbc` PyPI packages over the
same ODBC driver (pyodbc's rows turned into columns), measured in one run, with peak memory per
reader. A reader whose package is not installed is left out.

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install maturin pyarrow arrow-odbc pyodbc
    (cd python && VIRTUAL_ENV=/tmp/benchvenv PATH=/tmp/benchvenv/bin:$PATH maturin develop --release)
    /tmp/benchvenv/bin/python benches/python_read.py

The table `bench_read_1m` (id BIGINT key, an INTEGER, a NUMERIC(12,2), a DATE, a VARCHAR(32)
and a DOUBLE) is created in the test database on first use. Each reader runs in its own
process so that its peak RSS is its own.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

ROWS = int(os.environ.get("IBARROW_BENCH_ROWS", "1000000"))
TABLE = "bench_read_1m"
CONN = os.environ.get(
    "IBARROW_TEST_POSTGRES",
    "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;",
)
QUERY = f"SELECT id, qty, price, shipped, label, ratio FROM {TABLE}"


def psql(sql: str) -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "ibarrow", "-d", "ibarrow_test", "-tAq", "-c", sql],
        check=True, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "ibarrow"},
    ).stdout.strip()


def ensure_table() -> None:
    if psql(f"SELECT count(*) FROM pg_tables WHERE tablename = '{TABLE}'") == "1":
        if psql(f"SELECT count(*) FROM {TABLE}") == str(ROWS):
            return
        psql(f"DROP TABLE {TABLE}")
    psql(
        f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, qty INTEGER, price NUMERIC(12,2), "
        f"shipped DATE, label VARCHAR(32), ratio DOUBLE PRECISION); "
        f"INSERT INTO {TABLE} SELECT g, g % 50, (g % 100000) / 100.0, DATE '1995-01-01' + g % 2500, "
        f"'label ' || (g % 977), g / 7.0 FROM generate_series(1, {ROWS}) g; ANALYZE {TABLE}"
    )


def read_ibarrow(partitions: int) -> int:
    import ibarrow

    engine_config = f"/tmp/ibarrow_bench_{partitions}.toml"
    with open(engine_config, "w") as f:
        f.write(f'[sources.pg]\nconnection_string = "{CONN}"\npartitions = {partitions}\n')
    engine = ibarrow.Engine.from_config(engine_config)
    return engine.sql(QUERY.replace(TABLE, f"pg.public.{TABLE}")).to_arrow().num_rows


def read_ibarrow_builder(partitions: int) -> int:
    import ibarrow

    engine_config = f"/tmp/ibarrow_bench_{partitions}.toml"
    with open(engine_config, "w") as f:
        f.write(f'[sources.pg]\nconnection_string = "{CONN}"\npartitions = {partitions}\n')
    engine = ibarrow.Engine.from_config(engine_config)
    table = engine.table(f"pg.public.{TABLE}")
    return table.select("id", "qty", "price", "shipped", "label", "ratio").to_arrow().num_rows


def read_pyodbc() -> int:
    import pyarrow as pa
    import pyodbc

    with pyodbc.connect(CONN) as conn:
        rows = conn.cursor().execute(QUERY).fetchall()
    names = ["id", "qty", "price", "shipped", "label", "ratio"]
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    return pa.table({name: pa.array(values) for name, values in zip(names, columns)}).num_rows


def read_arrow_odbc() -> int:
    import pyarrow as pa
    from arrow_odbc import read_arrow_batches_from_odbc

    reader = read_arrow_batches_from_odbc(query=QUERY, connection_string=CONN, batch_size=8192)
    return pa.Table.from_batches(list(reader)).num_rows


def child(reader: str) -> None:
    started = time.perf_counter()
    if reader.startswith("ibarrow-builder"):
        rows = read_ibarrow_builder(int(reader.split(":")[1]))
    elif reader.startswith("ibarrow"):
        rows = read_ibarrow(int(reader.split(":")[1]))
    elif reader == "pyodbc":
        rows = read_pyodbc()
    else:
        rows = read_arrow_odbc()
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{rows} {elapsed:.3f} {peak_mb:.0f}")


def main() -> None:
    if len(sys.argv) == 2:
        child(sys.argv[1])
        return
    ensure_table()
    print(f"full read of {ROWS} rows (6 columns) from PostgreSQL into a pyarrow Table")
    print(f"{'reader':<28}{'seconds':>9}{'rows/s':>12}{'peak MB':>9}")
    readers = ["ibarrow:1", "ibarrow:2", "ibarrow-builder:2"]
    for package, reader in (("arrow_odbc", "arrow-odbc"), ("pyodbc", "pyodbc")):
        try:
            __import__(package)
            readers.insert(0, reader)
        except ImportError:
            print(f"({package} is not installed: {reader} left out)")
    for reader in readers * 2:
        out = subprocess.run([sys.executable, __file__, reader], check=True,
                             capture_output=True, text=True).stdout.split()
        rows, seconds, peak = int(out[0]), float(out[1]), out[2]
        assert rows == ROWS, f"{reader} read {rows} rows"
        label = reader.replace("ibarrow-builder:", "ibarrow builder, partitions=")
        label = label.replace("ibarrow:", "ibarrow, partitions=")
        print(f"{label:<28}{seconds:>9.2f}{rows / seconds:>12,.0f}{peak:>9}")


if __name__ == "__main__":
    main()
