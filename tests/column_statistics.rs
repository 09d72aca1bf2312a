//! Column statistics from each database's own catalog (PostgreSQL `pg_stats`, MariaDB's index
//! cardinality and average row length, SQLite's `sqlite_stat1`) reach DataFusion as the remote
//! scan's statistics: distinct values, NULLs and, where the database knows value widths, a
//! total byte size. The expected values come from the generator below, which each database's
//! SQL reproduces; the databases sample (InnoDB's estimate of 100 keys was 201 here), so counts are checked within
//! a factor of 3.

#[path = "../providers/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{OwnedTable, Profile};
use datafusion::common::stats::Precision;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use ibarrow::{Config, Engine};
use ibarrow_providers::OdbcExec;
use test_case::test_case;

/// id 1..=ROWS, k = id % KEYS (KEYS distinct values), and `note` NULL on every fourth row.
const ROWS: i64 = 20_000;
const KEYS: i64 = 100;

fn fill(profile: Profile, table: &str) -> Vec<String> {
    let source = match profile {
        Profile::Postgres => format!(
            "SELECT g, g % {KEYS}, CASE WHEN g % 4 = 0 THEN NULL ELSE 'note' END \
             FROM generate_series(1, {ROWS}) g"
        ),
        Profile::MariaDb => format!(
            "SELECT seq, seq % {KEYS}, CASE WHEN seq % 4 = 0 THEN NULL ELSE 'note' END \
             FROM seq_1_to_{ROWS}"
        ),
        Profile::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {ROWS}) \
             SELECT g, g % {KEYS}, CASE WHEN g % 4 = 0 THEN NULL ELSE 'note' END FROM s"
        ),
    };
    let index = table.replace(['"', '`'], "") + "_k";
    let analyze = match profile {
        Profile::Postgres => format!("ANALYZE {table}"),
        Profile::MariaDb => format!("ANALYZE TABLE {table}"),
        Profile::Sqlite => "ANALYZE".to_string(),
    };
    vec![
        format!("INSERT INTO {table} {source}"),
        format!("CREATE INDEX {index} ON {table} (k)"),
        analyze,
    ]
}

fn odbc_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if plan.is::<OdbcExec>() {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(odbc_scan)
}

fn near(value: &Precision<usize>, expected: usize) -> bool {
    value
        .get_value()
        .is_some_and(|v| *v >= expected / 3 && *v <= expected * 3)
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_carries_the_databases_column_statistics(profile: Profile) {
    let table = OwnedTable::create(
        profile,
        "stats_rows",
        "id INTEGER PRIMARY KEY, k INTEGER NOT NULL, note VARCHAR(10)",
        |quoted| fill(profile, quoted),
    );
    let conn = table.db.connection_string.replace('\\', "\\\\");
    let text = format!("[sources.a]\nconnection_string = \"{conn}\"\npartitions = 1\n");
    let engine = Engine::from_config(Config::parse(&text, "test").unwrap())
        .await
        .expect("engine");
    let session = engine.session("test", "stats");
    let sql = format!("SELECT id, k, note FROM {}", table.in_source("a"));
    let query = session
        .physical_plan(session.sql(&sql).await.expect("plan"))
        .await
        .expect("physical plan");
    let scan = odbc_scan(query.plan()).expect("a remote scan");
    let statistics = StatisticsContext::new()
        .compute(scan.as_ref(), &StatisticsArgs::new())
        .expect("statistics");
    let rows = ROWS as usize;
    assert!(
        near(&statistics.num_rows, rows),
        "{profile:?}: rows {:?}",
        statistics.num_rows
    );
    let [id, k, note] = statistics.column_statistics.as_slice() else {
        panic!("{profile:?}: three columns expected");
    };
    // The one-column primary key: as many distinct values as rows, on every database.
    assert!(
        near(&id.distinct_count, rows),
        "{profile:?}: id {:?}",
        id.distinct_count
    );
    assert!(
        near(&k.distinct_count, KEYS as usize),
        "{profile:?}: k {:?}",
        k.distinct_count
    );
    match profile {
        // pg_stats knows NULLs and widths of every column.
        Profile::Postgres => {
            assert!(
                near(&note.null_count, rows / 4),
                "{profile:?}: note nulls {:?}",
                note.null_count
            );
            assert!(
                statistics.total_byte_size.get_value().is_some(),
                "{profile:?}: no byte size"
            );
        }
        // MariaDB spreads its average row length over the columns.
        Profile::MariaDb => assert!(
            statistics.total_byte_size.get_value().is_some(),
            "{profile:?}: no byte size"
        ),
        Profile::Sqlite => {}
    }
}
