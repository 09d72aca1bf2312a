"""The examples in examples/ run as their headers say, on the embedded demo: the polars
dashboard, the Rust service (built by `cargo test`) and the nightly copy job, whose copied rows
are checked against SQLite's own answer over the same files and which copies nothing twice."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "ibarrow-target"))


def ibarrow_bin() -> Path:
    binary = Path(os.environ.get("IBARROW_BIN", target_dir() / "debug" / "ibarrow"))
    if not binary.exists():
        pytest.fail(f"no ibarrow binary at {binary}: build it (cargo test) or set IBARROW_BIN")
    return binary


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A directory with demo.toml, and the environment naming the demo's directory."""
    work = tmp_path_factory.mktemp("examples")
    env = {**os.environ, "IBARROW_DEMO_DIR": str(work / "demo")}
    subprocess.run(
        [ibarrow_bin(), "demo", "--write-config", "demo.toml"],
        cwd=work, env=env, check=True, timeout=TIMEOUT,
    )
    return work, env


def run(command: list, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_the_dashboard_prints_both_tables(demo) -> None:
    work, env = demo
    out = run([sys.executable, ROOT / "examples" / "dashboard.py", "demo.toml"], work, env)
    assert out.count("shape:") >= 2, out


def test_the_service_answers_its_lookups(demo) -> None:
    work, env = demo
    service = target_dir() / "debug" / "examples" / "service"
    if not service.exists():
        pytest.fail(f"no {service}: `cargo test` builds the examples")
    customers = [7, 42, 2500]
    out = run([service, "demo.toml", *map(str, customers)], work, env)
    # Each customer's latest three orders, as SQLite answers over the same file.
    shop = Path(env["IBARROW_DEMO_DIR"]) / "shop-v1.sqlite"
    with sqlite3.connect(shop) as conn:
        for customer in customers:
            expected = [row[0] for row in conn.execute(
                "SELECT order_id FROM orders WHERE customer_id = ? "
                "ORDER BY order_date DESC, order_id DESC LIMIT 3", (customer,))]
            section = out.split(f"customer {customer} (", 1)[1].split("\ncustomer ", 1)[0]
            shown = [int(line.split("|")[1]) for line in section.splitlines()
                     if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
            assert expected and shown == expected, (customer, section)


def test_the_nightly_copy_copies_each_day_once(demo) -> None:
    work, env = demo
    demo_dir = Path(env["IBARROW_DEMO_DIR"])
    warehouse = demo_dir / "warehouse.sqlite"
    with sqlite3.connect(warehouse) as conn:
        conn.execute(
            "CREATE TABLE daily_revenue (day DATE NOT NULL, region VARCHAR(30) NOT NULL, "
            "category VARCHAR(20) NOT NULL, orders INTEGER NOT NULL, "
            "revenue DECIMAL(12,2) NOT NULL, PRIMARY KEY (day, region, category))"
        )
    command = [ibarrow_bin(), "--config", ROOT / "examples" / "nightly_copy.toml",
               "-f", ROOT / "examples" / "nightly_copy.sql"]
    run(command, work, env)

    # SQLite's own answer over the same files.
    with sqlite3.connect(demo_dir / "shop-v1.sqlite") as conn:
        conn.execute(f"ATTACH DATABASE '{demo_dir / 'crm-v1.sqlite'}' AS crm")
        expected = conn.execute(
            "SELECT o.order_date, r.name, p.category, count(DISTINCT o.order_id), "
            "round(sum(l.quantity * l.unit_price * (1 - l.discount)), 2) "
            "FROM orders o JOIN order_lines l ON l.order_id = o.order_id "
            "JOIN products p ON p.product_id = l.product_id "
            "JOIN crm.customers c ON c.customer_id = o.customer_id "
            "JOIN crm.regions r ON r.region_id = c.region_id "
            "WHERE o.status = 'delivered' AND o.order_date < date('now') "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()
    with sqlite3.connect(warehouse) as conn:
        copied = conn.execute(
            "SELECT day, region, category, orders, revenue FROM daily_revenue "
            "ORDER BY 1, 2, 3"
        ).fetchall()
    assert len(copied) == len(expected) > 0
    for got, want in zip(copied, expected):
        assert got[:4] == want[:4], (got, want)
        assert abs(Decimal(str(got[4])) - Decimal(str(want[4]))) <= Decimal("0.01"), (got, want)

    # A second run finds nothing new to copy.
    run(command, work, env)
    with sqlite3.connect(warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM daily_revenue").fetchone()[0] == len(copied)
