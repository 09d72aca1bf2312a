//! Reads a 1M-row table (id BIGINT PRIMARY KEY, qty INTEGER, price DECIMAL(12,2), day DATE, note VARCHAR(40))
//! from PostgreSQL, MariaDB and SQLite through ibarrow, with 1, 2 and 4 range partitions,
//! and prints rows/s.
//!
//! `cargo run --release --example read_throughput` (connection strings as in the tests:
//! IBARROW_TEST_POSTGRES, IBARROW_TEST_MARIADB; the tables are created on first run).

use std::time::Instant;

use datafusion::prelude::SessionContext;
use futures::StreamExt;
use ibarrow::providers::RangePartitioning;
use ibarrow::{OdbcSource, SourceOptions};
use odbc_api::ConnectionOptions;

const ROWS: u64 = 1_000_000;
const TABLE: &str = "ibarrow_bench_1m";

fn prepare(connection_string: &str, fill: &str) -> Result<(), Box<dyn std::error::Error>> {
    let env = odbc_api::environment()?;
    let conn =
        env.connect_with_connection_string(connection_string, ConnectionOptions::default())?;
    let exists = conn
        .execute(&format!("SELECT count(*) FROM {TABLE}"), (), None)
        .is_ok();
    if !exists {
        conn.execute(
            &format!("CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, qty INTEGER, price DECIMAL(12,2), day DATE, note VARCHAR(40))"),
            (),
            None,
        )?;
        conn.execute(&fill.replace("{TABLE}", TABLE), (), None)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sqlite_path = std::env::temp_dir().join("ibarrow_bench.sqlite");
    let databases = [
        (
            "postgres",
            std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()),
            "public",
            "INSERT INTO {TABLE} SELECT g, g % 50, (g % 100000) / 100.0, DATE '2020-01-01' + (g % 1000), 'note ' || g FROM generate_series(1, 1000000) g",
        ),
        (
            "mariadb",
            std::env::var("IBARROW_TEST_MARIADB").unwrap_or_else(|_| "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()),
            "ibarrow_test",
            "INSERT INTO {TABLE} SELECT seq, seq % 50, (seq % 100000) / 100.0, DATE '2020-01-01' + INTERVAL (seq % 1000) DAY, CONCAT('note ', seq) FROM seq_1_to_1000000",
        ),
        (
            "sqlite",
            format!("Driver={{SQLite3}};Database={};", sqlite_path.display()),
            "main",
            "INSERT INTO {TABLE} WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 1000000) SELECT g, g % 50, (g % 100000) / 100.0, date('2020-01-01', '+' || (g % 1000) || ' days'), 'note ' || g FROM s",
        ),
    ];
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>14}",
        "database", "partitions", "rows", "seconds", "rows/s"
    );
    for (name, connection_string, schema, fill) in databases {
        prepare(&connection_string, fill)?;
        for partitions in [1, 2, 4] {
            let options = SourceOptions {
                partitioning: RangePartitioning {
                    column: Some("id".into()),
                    partitions,
                    min_rows: 0,
                    automatic: false,
                },
                ..SourceOptions::default()
            };
            let source = OdbcSource::connect(name, &connection_string, options).await?;
            let ctx = SessionContext::new();
            ctx.register_table("t", source.table(schema, TABLE).await?)?;
            let started = Instant::now();
            // Partitions are read concurrently; DataFusion merges their streams.
            let mut stream = ctx.sql("SELECT * FROM t").await?.execute_stream().await?;
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                rows += batch?.num_rows() as u64;
            }
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(rows, ROWS);
            println!(
                "{name:<10} {partitions:>10} {rows:>10} {seconds:>10.2} {:>14.0}",
                rows as f64 / seconds
            );
        }
    }
    Ok(())
}
