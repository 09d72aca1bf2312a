"""What `benches/server_queries.py` and `benches/duckdb_queries.py` share: the statements of
`benches/point_queries.rs`, and one line of concurrent queries timed and reported (printed, and
appended as JSON to IBARROW_BENCH_JSON for `benches/query_chart.py`)."""

import json
import os
import pathlib
import tempfile
import threading
import time

ROWS = 100_000
QUERIES = int(os.environ.get("IBARROW_BENCH_QUERIES", "2000"))
# The SQLite file `cargo bench --bench point_queries` makes.
LITE = pathlib.Path(tempfile.gettempdir()) / "ibarrow_bench_points.sqlite"
DATABASES = [("PostgreSQL", "pg.public.bench_points"), ("SQLite", "lite.main.bench_points")]


def lookup(table: str, n: int, first: int) -> str:
    """Mirrors benches/point_queries.rs: query n from `first` on asks for a key no earlier
    line asked for."""
    key = ((first + n) * 7919) % ROWS + 1
    return f"SELECT id, name FROM {table} WHERE id = {key}"


def dashboard(table: str) -> str:
    """Mirrors benches/point_queries.rs (`dashboard_statement`): 100 rows."""
    return (f"SELECT id % 100 AS bucket, count(*) AS n, min(name) AS first_name FROM {table} "
            f"WHERE id <= {ROWS // 10} GROUP BY id % 100 ORDER BY bucket")


def reset_peak_rss(pid: str) -> None:
    """Linux resets VmHWM to the current RSS on "5"; elsewhere the peak only overstates."""
    try:
        pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb(pid: str) -> float | None:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def percentile(sorted_samples: list[float], p: float) -> float:
    return sorted_samples[round((len(sorted_samples) - 1) * p)] * 1000


def concurrent(clients: list, line: dict, count: int, rows: int, statement, rss_pid: str) -> None:
    """`count` queries over one thread per client (an object with `rows(sql)` and `close()`):
    query n is `statement(n)` and returns `rows` rows. `line` names the line (engine,
    database, work); `rss_pid` is the process whose peak RSS is reported."""
    per_client = max(1, count // len(clients))
    samples: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        mine = []
        try:
            for i in range(per_client):
                sql = statement(index * per_client + i)
                at = time.perf_counter()
                got = clients[index].rows(sql)
                mine.append(time.perf_counter() - at)
                assert got == rows, f"{sql}: {got} rows, not {rows}"
        except BaseException as failure:  # reported after the line
            failures.append(failure)
        with lock:
            samples.extend(mine)

    reset_peak_rss(rss_pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    if failures:
        raise failures[0]
    samples.sort()
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    rate = len(samples) / elapsed
    rss = peak_rss_mb(rss_pid)
    work, sessions = line["work"], len(clients)
    print(f"  {work}, {sessions:>2} sessions{'':<{24 - len(work)}} p50 {p50:>7.3f} ms   "
          f"p99 {p99:>7.3f} ms   {rate:>7.0f} queries/s   peak RSS {rss or 0:>4.0f} MB",
          flush=True)
    if os.environ.get("IBARROW_BENCH_JSON"):
        with open(os.environ["IBARROW_BENCH_JSON"], "a") as out:
            out.write(json.dumps({
                **line, "sessions": sessions, "queries": len(samples), "p50_ms": p50,
                "p99_ms": p99, "queries_per_sec": rate, "peak_rss_mb": rss,
            }) + "\n")
