"""A sales dashboard over two databases: orders from the shop, customers and regions from the CRM.

    python examples/dashboard.py [CONFIG] [SINCE]

CONFIG is a configuration with the demo's sources `shop` and `crm` (default: demo.toml, which
`ibarrow demo --write-config demo.toml` writes); SINCE is the first day counted (default:
2025-01-01). Needs the `ibarrow` package and polars (docs/python.md).

The revenue table is one SQL statement with bound parameters; the segment table is built with
the query builder. Both join tables of the two databases, and both print as polars DataFrames.
"""

from __future__ import annotations

import datetime
import sys

import polars as pl

import ibarrow as ib

REVENUE_BY_REGION = """
    SELECT r.name AS region,
           count(DISTINCT o.order_id) AS orders,
           sum(l.quantity * l.unit_price * (1 - l.discount)) AS revenue
    FROM shop.main.orders o
    JOIN shop.main.order_lines l ON l.order_id = o.order_id
    JOIN crm.main.customers c ON c.customer_id = o.customer_id
    JOIN crm.main.regions r ON r.region_id = c.region_id
    WHERE o.status = $status AND o.order_date >= $since
    GROUP BY r.name
"""


def revenue_by_region(eng: ib.Engine, since: datetime.date) -> pl.DataFrame:
    """Delivered revenue per region since `since`, with each region's share of the total."""
    frame = eng.sql(REVENUE_BY_REGION, params={"status": "delivered", "since": since}).to_polars()
    revenue = pl.col("revenue").cast(pl.Float64)
    return (
        frame.with_columns(
            (revenue / revenue.sum() * 100).round(1).alias("share_pct"),
            (revenue / pl.col("orders")).round(2).alias("per_order"),
        )
        .sort("revenue", descending=True)
    )


def orders_by_segment(eng: ib.Engine) -> pl.DataFrame:
    """Orders per customer segment and status, one column per status."""
    customers = eng.table("crm.main.customers").select("customer_id", "segment")
    counts = (
        eng.table("shop.main.orders")
        .filter(ib.col("status") != "cancelled")
        .join(customers, on="customer_id")
        .group_by("segment", "status")
        .agg(ib.count().alias("orders"))
        .sort("segment", "status")
    )
    return counts.to_polars().pivot(on="status", index="segment", values="orders")


def main() -> int:
    config = sys.argv[1] if len(sys.argv) > 1 else "demo.toml"
    since = datetime.date(2025, 1, 1)
    if len(sys.argv) > 2:
        since = datetime.date.fromisoformat(sys.argv[2])
    try:
        eng = ib.Engine.from_config(config, client="dashboard")
    except ib.Error as err:
        print(f"dashboard: cannot open {config}: {err}", file=sys.stderr)
        return 2
    with pl.Config(tbl_rows=20, tbl_cols=10):
        print(f"Delivered revenue by region since {since}:")
        print(revenue_by_region(eng, since))
        print()
        print("Orders by customer segment and status (cancelled left out):")
        print(orders_by_segment(eng))
    return 0


if __name__ == "__main__":
    sys.exit(main())
