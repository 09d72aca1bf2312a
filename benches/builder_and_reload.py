"""What the query builder and a configuration reload cost, on the embedded demo (SQLite):

- planning one cross-database query (filter, join, group, sort) from SQL text with
  `Engine.sql`, against building the same query step by step with `Engine.table(...)` and
  planning it (each step checked against the schema, then the plan governed and cached as
  SQL's is), median and p95 of many plannings, nothing run;
- running it both ways (the answers are compared);
- `Engine.reload` of the configuration with one source changed (a new pool and a new catalog
  listing), median of several.

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install maturin pyarrow polars
    (cd python && VIRTUAL_ENV=/tmp/benchvenv PATH=/tmp/benchvenv/bin:$PATH maturin develop --release)
    IBARROW_BIN=target/release/ibarrow /tmp/benchvenv/bin/python benches/builder_and_reload.py

`IBARROW_BIN` is an `ibarrow` binary (it writes the demo's configuration with
`ibarrow demo --write-config`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import ibarrow as ib

RUNS = int(os.environ.get("IBARROW_BENCH_RUNS", "300"))

SQL = """
SELECT r.name AS region, count(*) AS orders
FROM shop.main.orders o
JOIN crm.main.customers c ON c.customer_id = o.customer_id
JOIN crm.main.regions r ON r.region_id = c.region_id
WHERE o.status = 'delivered'
GROUP BY r.name
ORDER BY orders DESC, region
"""


def built(eng: ib.Engine) -> ib.Query:
    # The joins in the order the SQL writes them. Customers and regions both have a `name`:
    # the regions' side is named `r`.
    return (
        eng.table("shop.main.orders")
        .filter(ib.col("status") == "delivered")
        .join(eng.table("crm.main.customers"), on="customer_id")
        .join(eng.table("crm.main.regions").alias("r"), on="region_id")
        .group_by(ib.col("r.name").alias("region"))
        .agg(ib.count().alias("orders"))
        .sort(ib.col("orders").desc(nulls_first=True), "region")
    )


def timed(action, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(label: str, times: list[float]) -> None:
    times = sorted(times)
    p95 = times[int(len(times) * 0.95) - 1]
    print(f"{label:<52}{statistics.median(times):>10.3f}{p95:>10.3f}")


def main() -> None:
    binary = os.environ.get("IBARROW_BIN", "ibarrow")
    work = Path(tempfile.mkdtemp(prefix="ibarrow-builder-bench-"))
    env = {**os.environ, "IBARROW_DEMO_DIR": str(work / "demo")}
    subprocess.run([binary, "demo", "--write-config", "demo.toml"], cwd=work, env=env,
                   check=True, capture_output=True)
    config = work / "demo.toml"
    eng = ib.Engine.from_config(config)

    sql_rows = eng.sql(SQL).to_arrow().to_pylist()
    built_rows = built(eng).to_arrow().to_pylist()
    assert sql_rows == built_rows, (sql_rows, built_rows)
    print(f"answer: {len(sql_rows)} regions, the same both ways\n")

    print(f"{'milliseconds':<52}{'median':>10}{'p95':>10}")
    report("plan from SQL text (Engine.sql)", timed(lambda: eng.sql(SQL), RUNS))
    report("build the steps only", timed(lambda: built(eng), RUNS))
    report("build the steps and plan them",
           timed(lambda: built(eng)._inner, RUNS))
    report("run from SQL text", timed(lambda: eng.sql(SQL).to_arrow(), RUNS // 10))
    report("run the built query", timed(lambda: built(eng).to_arrow(), RUNS // 10))

    original = config.read_text()
    changed = original.replace("partitions = 2", "partitions = 2\npool_size = 3", 1)
    texts = [changed, original]
    reloads = []
    for round_ in range(10):
        config.write_text(texts[round_ % 2])
        started = time.perf_counter()
        result = eng.reload(config)
        reloads.append((time.perf_counter() - started) * 1000)
        assert len(result["changed"]) == 1, result
    report("reload with one source changed", reloads)


if __name__ == "__main__":
    main()
