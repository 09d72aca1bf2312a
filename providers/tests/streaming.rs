//! Streaming: bounded batches over a million rows, stopping early, pool limits, truncation.

mod common;

use std::time::Duration;

use common::{Profile, TestDb, unique_name};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use ibarrow_providers::{OdbcError, PoolOptions, ScanOptions, SourceOptions};
use test_case::test_case;

/// Fills `table (id BIGINT)` with 1..=rows in the database itself.
fn fill_sequence(test_db: &TestDb, table: &str, rows: u64) {
    let t = test_db.db.quote(table);
    let sql = match test_db.db {
        Profile::Postgres => format!("INSERT INTO {t} SELECT g FROM generate_series(1, {rows}) g"),
        Profile::MariaDb => format!("INSERT INTO {t} SELECT seq FROM seq_1_to_{rows}"),
        Profile::Sqlite => format!(
            "INSERT INTO {t} WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) SELECT n FROM s"
        ),
    };
    test_db.execute(&[&sql]);
}

fn small_batches(pool_size: usize) -> SourceOptions {
    SourceOptions {
        pool: PoolOptions {
            max_size: pool_size,
            acquire_timeout: Duration::from_millis(500),
            ..PoolOptions::default()
        },
        scan: ScanOptions {
            batch_rows: 100,
            ..ScanOptions::default()
        },
    }
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_stream_in_bounded_batches(db: Profile) {
    let test_db = db.open();
    let name = unique_name("million");
    let _table = test_db.create_table(&name, "id BIGINT");
    fill_sequence(&test_db, &name, 1_000_000);
    let source = test_db.source().await;
    let batch_rows = source.options().scan.batch_rows;
    let ctx = SessionContext::new();
    ctx.register_table("t", source.table(db.schema(), &name).await.unwrap())
        .unwrap();

    let mut stream = ctx
        .sql("SELECT id FROM t")
        .await
        .unwrap()
        .execute_stream()
        .await
        .unwrap();
    let (mut rows, mut sum, mut batches, mut largest) = (0u64, 0i64, 0, 0);
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch.unwrap();
        largest = largest.max(batch.num_rows());
        rows += batch.num_rows() as u64;
        batches += 1;
        sum += batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .sum::<i64>();
    }
    assert_eq!(rows, 1_000_000, "{db:?}");
    assert_eq!(sum, 500_000_500_000, "{db:?}: every row exactly once");
    assert!(largest <= batch_rows, "{db:?}: a batch of {largest} rows");
    assert!(
        batches >= 1_000_000 / batch_rows,
        "{db:?}: {batches} batches"
    );
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_gives_the_connection_back(db: Profile) {
    let test_db = db.open();
    let name = unique_name("dropped");
    let _table = test_db.create_table(&name, "id BIGINT");
    fill_sequence(&test_db, &name, 100_000);
    let source = test_db.source_with(small_batches(1)).await;
    let ctx = SessionContext::new();
    ctx.register_table("t", source.table(db.schema(), &name).await.unwrap())
        .unwrap();

    for _ in 0..3 {
        let mut stream = ctx
            .sql("SELECT id FROM t")
            .await
            .unwrap()
            .execute_stream()
            .await
            .unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.num_rows(), 100);
        drop(stream);
    }
    // The single pooled connection is free again: a full query runs.
    let counted = ctx
        .sql("SELECT count(*) FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        counted[0].column(0).as_primitive::<Int64Type>().value(0),
        100_000,
        "{db:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while source.pool().in_use() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the connection returns to the pool");
    assert_eq!(source.pool().idle_count(), 1, "{db:?}: reused, not leaked");
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_times_out_with_advice(db: Profile) {
    let test_db = db.open();
    let name = unique_name("exhausted");
    let _table = test_db.create_table(&name, "id BIGINT");
    fill_sequence(&test_db, &name, 10_000);
    let source = test_db.source_with(small_batches(1)).await;
    let ctx = SessionContext::new();
    ctx.register_table("t", source.table(db.schema(), &name).await.unwrap())
        .unwrap();

    // The first stream holds the only connection while its fetch thread waits for room.
    let mut holder = ctx
        .sql("SELECT id FROM t")
        .await
        .unwrap()
        .execute_stream()
        .await
        .unwrap();
    holder.next().await.unwrap().unwrap();
    let err = ctx
        .sql("SELECT id FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no connection became free") && text.contains("pool"),
        "{db:?}: {text}"
    );
    drop(holder);
    let rows: usize = ctx
        .sql("SELECT id FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 10_000);
}

#[test_case(Profile::Postgres, "TEXT"; "postgres")]
#[test_case(Profile::MariaDb, "TEXT"; "mariadb")]
#[test_case(Profile::Sqlite, "TEXT"; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_longer_than_the_buffer_are_an_error_naming_the_column(
    db: Profile,
    text_type: &str,
) {
    let test_db = db.open();
    let name = unique_name("long");
    let _table = test_db.create_table(&name, &format!("id INTEGER, body {text_type}"));
    let quoted = db.quote(&name);
    test_db.execute_with_text(
        &format!("INSERT INTO {quoted} VALUES (1, ?)"),
        Some(&"x".repeat(64)),
    );
    test_db.execute_with_text(
        &format!("INSERT INTO {quoted} VALUES (2, ?)"),
        Some(&"y".repeat(300)),
    );
    let options = SourceOptions {
        scan: ScanOptions {
            max_text_size: 100,
            ..ScanOptions::default()
        },
        ..SourceOptions::default()
    };
    let source = test_db.source_with(options).await;
    let ctx = SessionContext::new();
    ctx.register_table("t", source.table(db.schema(), &name).await.unwrap())
        .unwrap();
    let short = ctx
        .sql("SELECT body FROM t WHERE id = 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        short[0].column(0).as_string::<i32>().value(0).len(),
        64,
        "{db:?}"
    );
    let err = ctx
        .sql("SELECT body FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`body`") && text.contains("max_text_size"),
        "{db:?}: {text}"
    );
    let is_truncation = matches!(
        err.find_root(),
        datafusion::error::DataFusionError::External(e) if matches!(e.downcast_ref::<OdbcError>(), Some(OdbcError::Truncated { .. }))
    );
    assert!(is_truncation, "{db:?}: {err:?}");
}
