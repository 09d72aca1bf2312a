"""The work of `cargo bench --bench point_queries` through the network service: point lookups
on distinct keys and a repeated dashboard query from 1, 2, 8 and 32 concurrent clients, and
one cached lookup repeated, over Arrow Flight SQL (ADBC, a connection per client) and over the
HTTP API (a keep-alive connection per client). Prints p50/p99 latency and queries/s per line,
with the server's peak RSS during the line.

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install "adbc-driver-flightsql>=1.0" "adbc-driver-manager>=1.0" \
        "pyarrow>=15" "httpx>=0.27"
    cargo build --release -p ibarrow-repl
    cargo bench --bench point_queries        # makes the bench_points tables
    /tmp/benchvenv/bin/python benches/server_queries.py

IBARROW_BIN names the server binary (default: target/release/ibarrow under CARGO_TARGET_DIR,
else ./target); IBARROW_BENCH_QUERIES the queries per line (default 2000);
IBARROW_BENCH_JSON=<file> appends each line as JSON for `benches/query_chart.py`.
The clients run in this Python process, on the same two cores as the server and the
databases: their cost is in the figures, as it is for any client.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import httpx

ROWS = 100_000
QUERIES = int(os.environ.get("IBARROW_BENCH_QUERIES", "2000"))
ROOT = pathlib.Path(__file__).resolve().parent.parent
PG = os.environ.get(
    "IBARROW_TEST_POSTGRES",
    "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;"
    "Uid=ibarrow;Pwd=ibarrow;",
)
LITE = pathlib.Path(tempfile.gettempdir()) / "ibarrow_bench_points.sqlite"
DATABASES = [("PostgreSQL", "pg.public.bench_points"), ("SQLite", "lite.main.bench_points")]


def server_binary() -> str:
    if os.environ.get("IBARROW_BIN"):
        return os.environ["IBARROW_BIN"]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "release" / "ibarrow")


def lookup(table: str, n: int, first: int) -> str:
    """Mirrors benches/point_queries.rs: keys no earlier line asked for."""
    key = ((first + n) * 7919) % ROWS + 1
    return f"SELECT id, name FROM {table} WHERE id = {key}"


def dashboard(table: str) -> str:
    """Mirrors benches/point_queries.rs (`dashboard_statement`): 100 rows."""
    return (f"SELECT id % 100 AS bucket, count(*) AS n, min(name) AS first_name FROM {table} "
            f"WHERE id <= {ROWS // 10} GROUP BY id % 100 ORDER BY bucket")


class Server:
    """`ibarrow serve` on loopback ports the system chooses, with the result cache on."""

    def __init__(self, tmp: pathlib.Path):
        config = tmp / "bench.toml"
        config.write_text(f"""
[engine]
result_cache = {{ ttl_secs = 600 }}
pool_size = 32

[sources.pg]
connection_string = '{PG}'

[sources.lite]
connection_string = 'Driver={{SQLite3}};Database={LITE};'

[server]
flight_sql = "127.0.0.1:0"
http = "127.0.0.1:0"
shutdown_grace_secs = 2
""")
        self.stderr = (tmp / "server.stderr").open("w")
        self.process = subprocess.Popen([server_binary(), "serve", "--config", str(config)],
                                        stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("ibarrow serve:"):
            self.process.kill()
            sys.exit(f"the server did not start: {line!r}; see {tmp / 'server.stderr'}")
        self.flight = re.search(r"Flight SQL on (\S+?)(,|$)", line).group(1)
        self.http = re.search(r"HTTP on (\S+?)(,|$)", line).group(1)

    def reset_peak_rss(self) -> None:
        # Linux resets VmHWM to the current RSS on "5"; elsewhere the peak only overstates.
        try:
            pathlib.Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_rss_mb(self) -> float | None:
        for line in pathlib.Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


class FlightClient:
    def __init__(self, server: Server):
        self.connection = flight_sql.connect(server.flight, autocommit=True)
        self.cursor = self.connection.cursor()

    def rows(self, sql: str) -> int:
        self.cursor.execute(sql)
        return self.cursor.fetch_arrow_table().num_rows

    def close(self) -> None:
        self.cursor.close()
        self.connection.close()


class HttpClient:
    def __init__(self, server: Server):
        self.client = httpx.Client(base_url=server.http, timeout=60)

    def rows(self, sql: str) -> int:
        response = self.client.post("/v1/query", json={"sql": sql})
        response.raise_for_status()
        return len(response.json())

    def close(self) -> None:
        self.client.close()


def percentile(sorted_samples: list[float], p: float) -> float:
    return sorted_samples[round((len(sorted_samples) - 1) * p)] * 1000


def concurrent(server, client_type, label, database, work, clients, count, rows, statement):
    """`count` queries over `clients` threads, each with its own connection; query n is
    `statement(n)` and returns `rows` rows."""
    per_client = count // clients
    connections = [client_type(server) for _ in range(clients)]
    samples: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        mine = []
        try:
            for i in range(per_client):
                sql = statement(index * per_client + i)
                at = time.perf_counter()
                got = connections[index].rows(sql)
                mine.append(time.perf_counter() - at)
                assert got == rows, f"{sql}: {got} rows, not {rows}"
        except BaseException as failure:  # reported after the line
            failures.append(failure)
        with lock:
            samples.extend(mine)

    server.reset_peak_rss()
    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    if failures:
        raise failures[0]
    samples.sort()
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    rate = len(samples) / elapsed
    rss = server.peak_rss_mb()
    print(f"  {work}, {clients:>2} clients{'':<{24 - len(work)}} p50 {p50:>7.3f} ms   "
          f"p99 {p99:>7.3f} ms   {rate:>7.0f} queries/s   server peak RSS {rss or 0:>4.0f} MB",
          flush=True)
    if os.environ.get("IBARROW_BENCH_JSON"):
        with open(os.environ["IBARROW_BENCH_JSON"], "a") as out:
            out.write(json.dumps({
                "engine": label, "database": database, "work": work, "sessions": clients,
                "queries": len(samples), "p50_ms": p50, "p99_ms": p99,
                "queries_per_sec": rate, "peak_rss_mb": rss,
            }) + "\n")


def main() -> None:
    if not LITE.exists():
        sys.exit(f"{LITE} is missing: run `cargo bench --bench point_queries` first")
    server = Server(pathlib.Path(tempfile.mkdtemp(prefix="ibarrow-bench-serve-")))
    try:
        print(f"{QUERIES} queries per line, through the server", flush=True)
        # Every line asks for keys no earlier line asked for: none is a cache hit.
        first = 0
        for protocol, client_type in [("Flight SQL (ADBC)", FlightClient),
                                      ("HTTP (JSON)", HttpClient)]:
            label = f"ibarrow, {protocol}"
            for database, table in DATABASES:
                print(f"{database}, {protocol}", flush=True)
                for clients in [1, 2, 8, 32]:
                    start = first
                    concurrent(server, client_type, label, database, "point lookups", clients,
                               QUERIES, 1, lambda n, s=start: lookup(table, n, s))
                    first += QUERIES
                cached = lookup(table, 0, 0)
                warm = client_type(server)
                warm.rows(cached)  # the miss that fills the cache
                warm.close()
                concurrent(server, client_type, label, database, "cached lookup", 1, QUERIES,
                           1, lambda n: cached)
                for clients in [1, 2, 8, 32]:
                    concurrent(server, client_type, label, database, "dashboard query",
                               clients, QUERIES, 100, lambda n: dashboard(table))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
