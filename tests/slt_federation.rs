//! Runs the `.slt` files of `tests/slt` against TPC-H data (scale 0.01) split over
//! PostgreSQL, MariaDB and SQLite. Each query's federated answer must equal DataFusion's
//! answer over the same rows held in memory, and the expected rows where a file gives them.
//!
//! The file format is the `query` subset of sqllogictest: `query [rowsort]`, the SQL, and
//! optionally `----` followed by the expected rows (values separated by spaces).

use std::path::Path;
use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use ibarrow::{Engine, SourceConfig};

#[path = "support/tpch.rs"]
mod tpch;

use tpch::{
    MARIADB_TABLES, POSTGRES_TABLES, SQLITE_TABLES, load, parse_slt, register_plain_names,
    result_rows,
};

const SCALE: f64 = 0.01;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files_answer_like_local_datafusion() {
    let pg = std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let maria = std::env::var("IBARROW_TEST_MARIADB").unwrap_or_else(|_| {
        "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let dir = tempfile::tempdir().unwrap();
    let lite = format!(
        "Driver={{SQLite3}};Database={};",
        dir.path().join("tpch.sqlite").display()
    );
    load(&pg, POSTGRES_TABLES, SCALE);
    load(&maria, MARIADB_TABLES, SCALE);
    load(&lite, SQLITE_TABLES, SCALE);

    // Large PostgreSQL tables are read as two key ranges, so the suite covers split scans.
    let split = SourceConfig {
        connection_string: Some(pg),
        partitions: Some(2),
        min_partition_rows: Some(10_000),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("pg", split)
        .source("maria", &maria)
        .source("lite", &lite)
        .target_partitions(2)
        .build()
        .await
        .unwrap();
    let local = SessionContext::new();
    for (name, remote) in register_plain_names(&engine, SCALE).await {
        let rows = engine
            .sql(&format!("SELECT * FROM {remote}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mem = MemTable::try_new(rows[0].schema(), vec![rows]).unwrap();
        local.register_table(name, Arc::new(mem)).unwrap();
    }

    let slt_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&slt_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut ran = 0;
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "slt"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        for query in parse_slt(&text) {
            let place = format!("{}:{}", file.display(), query.line);
            let federated = engine
                .sql(&query.sql)
                .await
                .unwrap_or_else(|e| panic!("{place}: planning failed: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{place}: federated run failed: {e}"));
            let reference = local
                .sql(&query.sql)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let federated = result_rows(&federated, query.rowsort);
            assert_eq!(federated, result_rows(&reference, query.rowsort), "{place}");
            assert!(
                !federated.is_empty(),
                "{place}: no rows; the query tests nothing"
            );
            if let Some(expected) = &query.expected {
                assert_eq!(&federated, expected, "{place}: expected rows");
            }
            ran += 1;
        }
    }
    assert!(ran >= 14, "only {ran} queries ran");
}
