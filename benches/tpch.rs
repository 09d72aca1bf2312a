//! TPC-H over three databases: lineitem and orders in PostgreSQL; customer, supplier and
//! nation in MariaDB; part, partsupp and region in SQLite. Prints each query's time (the 22
//! queries of tests/slt/tpch/q01.slt … q22.slt) and the rows/s of a full `lineitem` read with 1, 2 and 4
//! range partitions, with PostgreSQL's rows packed and (1 and 2 partitions) column by column.
//!
//! `cargo bench --bench tpch` (scale factor from IBARROW_BENCH_SF, default 0.1; the data is
//! generated with the tpchgen crate and loaded once per scale). To look into some queries:
//! IBARROW_BENCH_ONLY=<query files, comma-separated: q05,q18> skips the lineitem reads and the other
//! queries, IBARROW_BENCH_EXPLAIN=1 prints each query's EXPLAIN ANALYZE after its run, and
//! IBARROW_BENCH_SET="<option> = <value>; …" sets DataFusion options for the queries.
//! IBARROW_BENCH_CLUSTER=df://HOST:PORT runs the queries on that Ballista cluster instead, whose
//! processes read the same sources (docs/performance.md, "Running the benchmarks").
//! IBARROW_BENCH_SORT_LIMIT_MB=<MB> instead sorts all of `lineitem` (every column, by ship
//! date, order and line) under `memory_limit` = that many MB, checks the order and the row
//! count while streaming, and prints the time, the query's peak memory and the process's
//! peak RSS; it reads the tables an earlier run loaded at that scale.

use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use ibarrow::{Engine, SourceConfig};

#[path = "../tests/support/tpch.rs"]
mod tpch;

use tpch::{
    MARIADB_TABLES, POSTGRES_TABLES, SQLITE_TABLES, load, query_statements, register_plain_names,
    split_placement,
};

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn engine(
    pg: &str,
    maria: &str,
    lite: &str,
    partitions: usize,
    packed_rows: bool,
    scale: f64,
) -> Engine {
    let pg_config = SourceConfig {
        connection_string: Some(pg.to_string()),
        partitions: Some(partitions),
        min_partition_rows: Some(0),
        packed_rows: Some(packed_rows),
        ..SourceConfig::default()
    };
    let mut builder = Engine::builder()
        .source_config("pg", pg_config)
        .source("maria", maria)
        .source("lite", lite);
    if let Ok(url) = std::env::var("IBARROW_BENCH_CLUSTER") {
        builder = builder.cluster(&url);
    }
    let engine = builder
        .build()
        .await
        .expect("connect the three databases (run scripts/test-services first)");
    register_plain_names(&engine, scale, split_placement()).await;
    engine
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::var("IBARROW_BENCH_SF")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let pg = std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let maria = std::env::var("IBARROW_TEST_MARIADB").unwrap_or_else(|_| {
        "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let lite = format!(
        "Driver={{SQLite3}};Database={};",
        std::env::temp_dir()
            .join(format!("ibarrow_tpch_sf{scale}.sqlite"))
            .display()
    );
    // The sort runs on data loaded by an earlier run at this scale: generating the tables
    // to check them would set the process's peak RSS.
    if let Some(limit_mb) = std::env::var("IBARROW_BENCH_SORT_LIMIT_MB")
        .ok()
        .and_then(|mb| mb.parse::<u64>().ok())
    {
        sort_under_limit(&pg, &maria, &lite, scale, limit_mb).await;
        return;
    }

    let started = Instant::now();
    load(&pg, POSTGRES_TABLES, scale);
    load(&maria, MARIADB_TABLES, scale);
    load(&lite, SQLITE_TABLES, scale);
    println!(
        "TPC-H SF {scale}: data ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let only: Option<Vec<String>> = std::env::var("IBARROW_BENCH_ONLY").ok().map(|names| {
        names
            .split(',')
            .map(|name| name.trim().to_string())
            .collect()
    });
    let explain = std::env::var("IBARROW_BENCH_EXPLAIN").is_ok_and(|v| v == "1");

    // On a cluster the scheduler's configuration decides the ranges: the reads are local only.
    let clustered = std::env::var("IBARROW_BENCH_CLUSTER").is_ok();
    let reads: &[(usize, bool)] = if only.is_some() || clustered {
        &[]
    } else {
        &[(1, true), (2, true), (4, true), (1, false), (2, false)]
    };
    println!("\nfull lineitem read (all 16 columns) from PostgreSQL");
    println!(
        "{:>10} {:>12} {:>10} {:>10} {:>12}",
        "partitions", "packed rows", "rows", "seconds", "rows/s"
    );
    for &(partitions, packed) in reads {
        let engine = engine(&pg, &maria, &lite, partitions, packed, scale).await;
        let started = Instant::now();
        let mut stream = engine.stream("SELECT * FROM lineitem").await.unwrap();
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            rows += batch.unwrap().num_rows();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{partitions:>10} {packed:>12} {rows:>10} {seconds:>10.2} {:>12.0}",
            rows as f64 / seconds
        );
    }

    // IBARROW_BENCH_PACKED=0 runs the queries with PostgreSQL rows read column by column.
    let packed = std::env::var("IBARROW_BENCH_PACKED").map_or(true, |v| v != "0");
    println!("\nqueries (2 partitions for PostgreSQL tables, packed rows: {packed})");
    let engine = engine(&pg, &maria, &lite, 2, packed, scale).await;
    // IBARROW_BENCH_SET="<option> = <value>; …" sets DataFusion options for the queries.
    for setting in std::env::var("IBARROW_BENCH_SET")
        .unwrap_or_default()
        .split(';')
        .filter(|s| !s.trim().is_empty())
    {
        engine
            .context()
            .sql(&format!("SET {setting}"))
            .await
            .unwrap_or_else(|e| panic!("IBARROW_BENCH_SET `{setting}`: {e}"));
    }
    let mut total = 0.0;
    for number in 1..=22 {
        let name = format!("q{number:02}");
        if only.as_ref().is_some_and(|only| !only.contains(&name)) {
            continue;
        }
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/slt/tpch/{name}.slt"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let [sql] = &query_statements(&file)[..] else {
            panic!("{}: expected one query", file.display());
        };
        let started = Instant::now();
        let batches = engine.sql(sql).await.unwrap().collect().await.unwrap();
        let seconds = started.elapsed().as_secs_f64();
        total += seconds;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let title = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ");
        println!("{name} {seconds:>7.3} s {rows:>6} rows  {title:.60}");
        if explain {
            let plan = engine
                .sql(&format!("EXPLAIN ANALYZE {sql}"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            println!(
                "{}",
                datafusion::arrow::util::pretty::pretty_format_batches(&plan).unwrap()
            );
        }
    }
    println!(
        "total {total:.2} s; peak RSS {:.0} MB",
        peak_rss_mb().unwrap_or(0.0)
    );
}

/// The whole of `lineitem` sorted under a memory limit of `limit_mb` MB (2 range partitions):
/// it must spill. The rows arrive in order and all of them, or the bench panics.
async fn sort_under_limit(pg: &str, maria: &str, lite: &str, scale: f64, limit_mb: u64) {
    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Date32Type, Int64Type};
    let pg_config = SourceConfig {
        connection_string: Some(pg.to_string()),
        partitions: Some(2),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("pg", pg_config)
        .source("maria", maria)
        .source("lite", lite)
        .memory_limit(limit_mb * 1_000_000)
        .build()
        .await
        .expect("connect the three databases");
    register_plain_names(&engine, scale, split_placement()).await;
    let expected: i64 = engine
        .sql("SELECT count(*) FROM lineitem")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0);
    let sql = "SELECT * FROM lineitem ORDER BY l_shipdate, l_orderkey, l_linenumber";
    let session = engine.session("bench", "sort");
    let started = Instant::now();
    let mut stream = session.stream(sql).await.expect("plan the sort");
    let int64 = datafusion::arrow::datatypes::DataType::Int64;
    let mut rows = 0i64;
    let mut last = None;
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch =
            batch.unwrap_or_else(|e| panic!("the sort under {limit_mb} MB failed: {e}"));
        let column = |name: &str| {
            let column = batch.column(batch.schema().index_of(name).unwrap());
            datafusion::arrow::compute::cast(column, &int64).unwrap()
        };
        let ship = batch.column(batch.schema().index_of("l_shipdate").unwrap());
        let ship = ship.as_primitive::<Date32Type>();
        let (order, line) = (column("l_orderkey"), column("l_linenumber"));
        let (order, line) = (
            order.as_primitive::<Int64Type>(),
            line.as_primitive::<Int64Type>(),
        );
        for row in 0..batch.num_rows() {
            let current = (ship.value(row), order.value(row), line.value(row));
            assert!(
                last.is_none_or(|last| last <= current),
                "rows out of order at {rows}"
            );
            last = Some(current);
            rows += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(rows, expected, "rows lost or doubled");
    let record = &engine.recent_queries()[0];
    println!(
        "sort of lineitem ({rows} rows, every column) under memory_limit = {limit_mb} MB: \
         {seconds:.1} s, query peak {:.0} MB, process peak RSS {:.0} MB",
        record.peak_memory_bytes as f64 / 1e6,
        peak_rss_mb().unwrap_or(0.0)
    );
}
