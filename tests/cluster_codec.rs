//! The cluster codecs (src/cluster/) on real sources: a planned PostgreSQL scan in key ranges
//! and a SQLite scan travel as bytes that hold no connection string, decode on the receiving
//! side's source of the same name, and read the same rows there; a logical plan naming the
//! tables decodes against another engine's catalogs and runs there.
#![cfg(feature = "cluster")]

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use ibarrow::cluster::{self, ClusterSources, SplitScansIntoTasks};
use ibarrow::providers::OdbcExec;
use ibarrow::{Engine, SourceConfig};
use odbc_api::ConnectionOptions;

const PG: &str = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;";

fn execute(connection_string: &str, statements: &[String]) {
    let env = odbc_api::environment().unwrap();
    let conn = env
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
        .unwrap();
    for sql in statements {
        conn.execute(sql, (), None)
            .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    }
}

/// A table of 5 000 generated rows in PostgreSQL and the same in SQLite; the engine reads the
/// PostgreSQL one in two key ranges.
struct Tables {
    pg_table: String,
    lite: String,
    _dir: tempfile::TempDir,
}

/// `tag` keeps the tests of this file, which run at once, on tables of their own.
fn tables(tag: &str) -> Tables {
    let pg_table = format!("cluster_codec_{tag}_{}", std::process::id());
    let rows: Vec<String> = (1..=5000)
        .map(|id| format!("({id}, 'name {id}', {}.25)", id % 97))
        .collect();
    let create = |name: &str| {
        vec![
            format!("DROP TABLE IF EXISTS {name}"),
            format!(
                "CREATE TABLE {name} (id INTEGER PRIMARY KEY, name VARCHAR(40), amount DECIMAL(10,2))"
            ),
            format!("INSERT INTO {name} VALUES {}", rows.join(", ")),
        ]
    };
    execute(PG, &create(&pg_table));
    execute(PG, &[format!("ANALYZE {pg_table}")]);
    let dir = tempfile::tempdir().unwrap();
    let lite = format!(
        "Driver={{SQLite3}};Database={};",
        dir.path().join("codec.sqlite").display()
    );
    execute(&lite, &create("items"));
    Tables {
        pg_table,
        lite,
        _dir: dir,
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        execute(PG, &[format!("DROP TABLE IF EXISTS {}", self.pg_table)]);
    }
}

async fn engine(tables: &Tables) -> Engine {
    let pg = SourceConfig {
        connection_string: Some(PG.to_string()),
        partitions: Some(2),
        min_partition_rows: Some(1000),
        ..SourceConfig::default()
    };
    Engine::builder()
        .source_config("pg", pg)
        .source("lite", &tables.lite)
        .target_partitions(2)
        .build()
        .await
        .expect("PostgreSQL and SQLite (scripts/test-services starts PostgreSQL)")
}

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// The scans of a physical plan.
fn scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<dyn ExecutionPlan>> {
    let mut found = Vec::new();
    if plan.downcast_ref::<OdbcExec>().is_some() {
        found.push(Arc::clone(plan));
    }
    for child in plan.children() {
        found.extend(scans(child));
    }
    found
}

/// No part of a connection string is in `bytes`.
fn assert_no_connection_string(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    for secret in ["Pwd=", "Uid=", "Driver=", "ibarrow;"] {
        assert!(!text.contains(secret), "{what} holds `{secret}`: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_travel_planned_and_read_the_same_rows_on_the_other_side() {
    let tables = tables("scans");
    let sender = engine(&tables).await;
    // The receiving side opens the same sources from its own configuration.
    let receiver = engine(&tables).await;
    let sources = ClusterSources::new(receiver.clone(), "executor test", BTreeMap::new());
    let codec = cluster::physical_codec(&sources);
    let queries = [
        format!(
            "SELECT id, name, amount FROM pg.public.{} WHERE id > 10 ORDER BY id",
            tables.pg_table
        ),
        "SELECT id, amount FROM lite.main.items WHERE name LIKE 'name 1%' ORDER BY id".to_string(),
    ];
    for sql in &queries {
        let frame = sender.sql(sql).await.unwrap();
        let plan = frame.create_physical_plan().await.unwrap();
        let planned = scans(&plan);
        assert_eq!(planned.len(), 1, "{sql}");
        let scan = planned[0].downcast_ref::<OdbcExec>().unwrap();
        if sql.contains("pg.public") {
            assert_eq!(scan.statements().len(), 2, "two key ranges: {sql}");
        }
        let bytes =
            physical_plan_to_bytes_with_extension_codec(Arc::clone(&plan), codec.as_ref()).unwrap();
        assert_no_connection_string(&bytes, sql);
        let task = receiver.context().task_ctx();
        let decoded =
            physical_plan_from_bytes_with_extension_codec(&bytes, &task, codec.as_ref()).unwrap();
        let decoded_scans = scans(&decoded);
        let decoded_scan = decoded_scans[0].downcast_ref::<OdbcExec>().unwrap();
        assert_eq!(decoded_scan.statements(), scan.statements(), "{sql}");
        assert_eq!(decoded_scan.schema(), scan.schema(), "{sql}");
        assert!(
            Arc::ptr_eq(
                decoded_scan.source(),
                &receiver.source(scan.source().name()).unwrap()
            ),
            "the receiver's own source runs the scan"
        );
        let sent = collect(Arc::clone(&plan), sender.context().task_ctx())
            .await
            .unwrap();
        let received = collect(decoded, Arc::clone(&task)).await.unwrap();
        assert_eq!(text(&received), text(&sent), "{sql}");
        assert!(!sent.is_empty(), "{sql}");
        // As a scheduler sends it: each scan reads the ranges its input names.
        let split = SplitScansIntoTasks
            .optimize(plan, &ConfigOptions::default())
            .unwrap();
        assert!(
            format!("{}", displayable(split.as_ref()).indent(false))
                .contains("ranges of each task"),
            "{sql}"
        );
        let bytes = physical_plan_to_bytes_with_extension_codec(split, codec.as_ref()).unwrap();
        assert_no_connection_string(&bytes, sql);
        let decoded =
            physical_plan_from_bytes_with_extension_codec(&bytes, &task, codec.as_ref()).unwrap();
        let received = collect(decoded, task).await.unwrap();
        assert_eq!(text(&received), text(&sent), "split into tasks: {sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_travel_by_name_and_plan_on_the_receiving_side() {
    let tables = tables("names");
    let client = engine(&tables).await;
    let scheduler = engine(&tables).await;
    let sources = ClusterSources::new(scheduler.clone(), "scheduler", BTreeMap::new());
    let join = format!(
        "SELECT p.id, l.name FROM pg.public.{} p JOIN lite.main.items l ON p.id = l.id \
         WHERE p.amount > 90 ORDER BY p.id",
        tables.pg_table
    );
    // A pushed aggregate whose decimal AVG is finished by ibarrow's `decimal_average`.
    let average = format!(
        "SELECT name, avg(amount) AS a FROM pg.public.{} WHERE id <= 30 GROUP BY name \
         ORDER BY name",
        tables.pg_table
    );
    for sql in [&join, &average] {
        let frame = client.sql(sql).await.unwrap();
        let plan = frame.clone().into_optimized_plan().unwrap();
        let bytes = logical_plan_to_bytes_with_extension_codec(
            &plan,
            cluster::client_logical_codec().as_ref(),
        )
        .unwrap();
        assert_no_connection_string(&bytes, "the logical plan");
        let decoded = logical_plan_from_bytes_with_extension_codec(
            &bytes,
            &scheduler.context().task_ctx(),
            cluster::logical_codec(&sources).as_ref(),
        )
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let on_scheduler = scheduler
            .context()
            .execute_logical_plan(decoded)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let local = frame.collect().await.unwrap();
        assert_eq!(text(&on_scheduler), text(&local), "{sql}");
        if sql == &join {
            // amount is (id mod 97) + 0.25, so amount > 90 keeps the remainders 90..=96.
            let expected = (1..=5000).filter(|id| id % 97 >= 90).count();
            let rows: usize = local.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows, expected);
        } else {
            assert!(
                format!("{}", plan.display_indent()).contains("decimal_average"),
                "the average is pushed: {}",
                plan.display_indent()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_the_receiver_cannot_open_is_named() {
    let tables = tables("unopened");
    let sender = engine(&tables).await;
    let receiver = Engine::builder().build().await.unwrap();
    let unavailable = BTreeMap::from([("pg".to_string(), "connection refused".to_string())]);
    let sources = ClusterSources::new(receiver.clone(), "executor 10.0.0.9:50051", unavailable);
    let codec = cluster::physical_codec(&sources);
    let plan = sender
        .sql(&format!("SELECT id FROM pg.public.{}", tables.pg_table))
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let bytes = physical_plan_to_bytes_with_extension_codec(plan, codec.as_ref()).unwrap();
    // The plan decodes (the executor takes the task); running it fails with the reason.
    let task = receiver.context().task_ctx();
    let decoded =
        physical_plan_from_bytes_with_extension_codec(&bytes, &task, codec.as_ref()).unwrap();
    let err = collect(decoded, task).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("executor 10.0.0.9:50051 cannot reach source `pg`: connection refused"),
        "{err}"
    );
}
