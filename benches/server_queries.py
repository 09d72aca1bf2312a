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

import os
import pathlib
import re
import subprocess
import sys
import tempfile

import adbc_driver_flightsql.dbapi as flight_sql
import httpx

from small_queries import DATABASES, LITE, QUERIES, concurrent, dashboard, lookup

ROOT = pathlib.Path(__file__).resolve().parent.parent
PG = os.environ.get(
    "IBARROW_TEST_POSTGRES",
    "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;"
    "Uid=ibarrow;Pwd=ibarrow;",
)


def server_binary() -> str:
    if os.environ.get("IBARROW_BIN"):
        return os.environ["IBARROW_BIN"]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "release" / "ibarrow")


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

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


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


def main() -> None:
    if not LITE.exists():
        sys.exit(f"{LITE} is missing: run `cargo bench --bench point_queries` first")
    server = Server(pathlib.Path(tempfile.mkdtemp(prefix="ibarrow-bench-serve-")))
    pid = str(server.process.pid)
    try:
        print(f"{QUERIES} queries per line, through the server (its peak RSS)", flush=True)
        # Every line asks for keys no earlier line asked for: none is a cache hit.
        first = 0
        for protocol, client_type in [("Flight SQL (ADBC)", FlightClient),
                                      ("HTTP (JSON)", HttpClient)]:
            engine = f"ibarrow, {protocol}"
            for database, table in DATABASES:
                print(f"{database}, {protocol}", flush=True)

                def line(work):
                    return {"engine": engine, "database": database, "work": work}

                def clients(count):
                    return [client_type(server) for _ in range(count)]

                for sessions in [1, 2, 8, 32]:
                    concurrent(clients(sessions), line("point lookups"), QUERIES, 1,
                               lambda n, s=first: lookup(table, n, s), pid)
                    first += QUERIES
                cached = lookup(table, 0, 0)
                warm = client_type(server)
                warm.rows(cached)  # the miss that fills the cache
                warm.close()
                concurrent(clients(1), line("cached lookup"), QUERIES, 1, lambda n: cached, pid)
                for sessions in [1, 2, 8, 32]:
                    concurrent(clients(sessions), line("dashboard query"), QUERIES, 100,
                               lambda n: dashboard(table), pid)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
