//! Sources are read-only unless configured `writable`, on PostgreSQL, MariaDB and SQLite: a
//! read-only source refuses INSERT and native statements that write, and its sessions are
//! read-only in the database too; a writable source takes `INSERT INTO … SELECT` from another
//! database, all rows or none.

#[path = "../providers/tests/common/mod.rs"]
mod common;

use common::{Profile, TestDb};
use ibarrow::{Engine, SourceConfig};
use test_case::test_case;

const COLUMNS: &str = "id INTEGER PRIMARY KEY, name VARCHAR(40), amount DECIMAL(12,2), \
                       day DATE, score {double}";

/// Rows of the larger origin table, ids 1001 … 1000 + MANY.
const MANY: i64 = 2500;

/// Rows of the SQLite table the inserts copy from (NULLs included).
const SOURCE_ROWS: &str = "(1, 'alpha', 10.50, '2024-01-31', 0.25), \
                           (2, NULL, -3.75, '1999-12-31', NULL), \
                           (3, 'γάμμα ''quoted''', NULL, NULL, 1e10), \
                           (4, '', 0.00, '2000-02-29', -2.5)";

async fn engine(target: &TestDb, writable: bool, origin: &TestDb) -> Engine {
    Engine::builder()
        .source_config(
            "target",
            SourceConfig {
                connection_string: Some(target.connection_string.clone()),
                writable: Some(writable),
                // One connection: every statement of a test meets the state the last one left.
                pool_size: Some(1),
                ..SourceConfig::default()
            },
        )
        .source("origin", &origin.connection_string)
        .build()
        .await
        .expect("engine")
}

/// The rows of `sql` as text, one line each.
async fn lines(engine: &Engine, sql: &str) -> Vec<String> {
    let batches = engine.sql(sql).await.unwrap().collect().await;
    let batches = batches.unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    common::table_text(&batches)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The error `sql` ends with, planning included.
async fn error(engine: &Engine, sql: &str) -> ibarrow::Error {
    match engine.sql(sql).await {
        Ok(frame) => ibarrow::Error::from(frame.collect().await.expect_err(sql)),
        Err(err) => err,
    }
}

fn origin_with_rows() -> TestDb {
    let origin = Profile::Sqlite.open();
    let columns = COLUMNS.replace("{double}", "DOUBLE");
    origin.execute(&[
        &format!("CREATE TABLE people ({columns})"),
        &format!("INSERT INTO people VALUES {SOURCE_ROWS}"),
        // Enough rows for several round trips of the INSERT (1000 rows each).
        &format!("CREATE TABLE many ({columns})"),
        &format!(
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < \
             {MANY}) INSERT INTO many SELECT n + 1000, 'row ' || n, n * 0.5, '2020-01-01', n \
             FROM seq"
        ),
    ]);
    origin
}

/// The flag each database reads its session's read-only mode from, as a passthrough query.
fn read_only_flag(profile: Profile) -> &'static str {
    match profile {
        Profile::Postgres => "SELECT current_setting('transaction_read_only') AS flag",
        Profile::MariaDb => "SELECT @@session.tx_read_only AS flag",
        Profile::Sqlite => "SELECT query_only AS flag FROM pragma_query_only",
    }
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_read_only_unless_writable(profile: Profile) {
    let target = profile.open();
    let table = common::unique_name("guarded");
    let _guard = target.create_table(&table, &COLUMNS.replace("{double}", profile.double()));
    let quoted = profile.quote(&table);
    target.execute(&[&format!(
        "INSERT INTO {quoted} (id, name) VALUES (1, 'kept'), (2, 'kept too')"
    )]);
    let origin = origin_with_rows();
    let schema = profile.schema();
    let qualified = format!("target.{schema}.{table}");

    let engine = engine(&target, false, &origin).await;
    let insert = format!("INSERT INTO {qualified} SELECT * FROM origin.main.people");
    let err = error(&engine, &insert).await;
    assert_eq!(err.kind(), ibarrow::ErrorKind::Input, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("source `target` is read-only") && message.contains("writable = true"),
        "{message}"
    );
    // Native statements that write are refused before they reach the database.
    for native in [
        format!("DELETE FROM {quoted}"),
        format!("SELECT 1 AS one; DELETE FROM {quoted}"),
        format!("WITH d AS (DELETE FROM {quoted} RETURNING id) SELECT id FROM d"),
    ] {
        let sql = format!(
            "SELECT * FROM query('target', '{}')",
            native.replace('\'', "''")
        );
        let message = error(&engine, &sql).await.to_string();
        assert!(message.contains("is read-only"), "{native}: {message}");
    }
    // ... and the database itself holds the session read-only.
    let flag = format!(
        "SELECT CAST(flag AS VARCHAR) AS flag FROM query('target', '{}')",
        read_only_flag(profile).replace('\'', "''")
    );
    let shown = lines(&engine, &flag).await.join("\n").to_lowercase();
    assert!(shown.contains("| on ") || shown.contains("| 1 "), "{shown}");
    assert_eq!(
        lines(&engine, &format!("SELECT count(*) AS n FROM {qualified}")).await[3],
        "| 2 |"
    );

    let writable = self::engine(&target, true, &origin).await;
    let shown = lines(&writable, &flag).await.join("\n").to_lowercase();
    assert!(
        shown.contains("| off ") || shown.contains("| 0 "),
        "{shown}"
    );
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_into_a_writable_source_copies_every_row(profile: Profile) {
    let target = profile.open();
    let table = common::unique_name("copied");
    let _guard = target.create_table(&table, &COLUMNS.replace("{double}", profile.double()));
    let origin = origin_with_rows();
    let engine = engine(&target, true, &origin).await;
    let qualified = format!("target.{}.{table}", profile.schema());

    let inserted = lines(
        &engine,
        &format!("INSERT INTO {qualified} SELECT * FROM origin.main.people"),
    )
    .await;
    assert_eq!(inserted[3], "| 4     |", "{inserted:?}");
    // Printed tables show NULL and '' alike: `name IS NULL` tells them apart.
    let read = "SELECT id, name, name IS NULL AS no_name, amount, day, score FROM {t} ORDER BY id";
    let copied = lines(&engine, &read.replace("{t}", &qualified)).await;
    let original = lines(&engine, &read.replace("{t}", "origin.main.people")).await;
    assert_eq!(copied, original);
    assert!(original.iter().any(|l| l.contains("γάμμα 'quoted'")));

    // The last of 2500 rows breaks the primary key, after two round trips went through:
    // the whole statement is rolled back, nothing of it stays.
    target.execute(&[&format!(
        "INSERT INTO {} (id, name) VALUES ({}, 'taken')",
        profile.quote(&table),
        1000 + MANY
    )]);
    let clash = format!("INSERT INTO {qualified} SELECT * FROM origin.main.many");
    let err = error(&engine, &clash).await;
    assert_eq!(err.kind(), ibarrow::ErrorKind::Sql, "{err}");
    assert_eq!(target_count(&target, &table), 5, "{err}");
    assert_autocommit(profile, &engine, &target, &table).await;
    let single = format!("INSERT INTO {qualified} VALUES (100, 'one more', 1.5, NULL, NULL)");
    assert_eq!(lines(&engine, &single).await[3], "| 1     |");
    assert_eq!(
        target_count(&target, &table),
        6,
        "the insert is committed and visible to other connections"
    );
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserted_values_are_converted_to_the_column_types(profile: Profile) {
    use datafusion::common::ScalarValue;
    let target = profile.open();
    let table = common::unique_name("widths");
    let _guard = target.create_table(&table, &COLUMNS.replace("{double}", profile.double()));
    let origin = origin_with_rows();
    let engine = engine(&target, true, &origin).await;
    let qualified = format!("target.{}.{table}", profile.schema());
    // Network clients bind 64-bit integers to placeholders of 32-bit columns.
    let frame = engine
        .sql(&format!(
            "INSERT INTO {qualified} VALUES ($1, $2, NULL, NULL, NULL)"
        ))
        .await
        .unwrap()
        .with_param_values(vec![
            ScalarValue::Int64(Some(7)),
            ScalarValue::Utf8(Some("seven".into())),
        ])
        .unwrap();
    frame.collect().await.unwrap();
    assert_eq!(target_count(&target, &table), 1);
    let read = format!("SELECT id, name FROM {qualified}");
    assert_eq!(lines(&engine, &read).await[3], "| 7  | seven |");
}

/// The source's one pooled connection is back in autocommit after a failed insert: no
/// transaction stays open behind the next statements.
async fn assert_autocommit(profile: Profile, engine: &Engine, target: &TestDb, table: &str) {
    match profile {
        Profile::MariaDb => {
            let shown = lines(
                engine,
                "SELECT CAST(a AS VARCHAR) AS a FROM query('target', 'SELECT @@autocommit AS a')",
            )
            .await;
            assert_eq!(shown[3], "| 1 |", "{shown:?}");
        }
        // Outside a transaction every statement starts one of its own: now() (its start) is
        // the statement's own time, also for the second of two statements.
        Profile::Postgres => {
            let fresh = "SELECT CAST(fresh AS VARCHAR) AS fresh FROM query('target', \
                         'SELECT now() = statement_timestamp() AS fresh')";
            for _ in 0..2 {
                let shown = lines(engine, fresh).await;
                assert_eq!(shown[3], "| true  |", "{shown:?}");
            }
        }
        // An open SQLite transaction that read would still let others write, one that wrote
        // would not: another connection writes and reads the table.
        Profile::Sqlite => {
            lines(
                engine,
                &format!("SELECT count(*) AS n FROM target.main.{table}"),
            )
            .await;
            target.execute(&[&format!(
                "DELETE FROM {} WHERE id = 0",
                profile.quote(table)
            )]);
        }
    }
}

/// Rows of `table` counted over a connection of its own, outside ibarrow.
fn target_count(db: &TestDb, table: &str) -> i64 {
    use odbc_api::{ConnectionOptions, Cursor};
    let env = odbc_api::environment().expect("ODBC environment");
    let conn = env
        .connect_with_connection_string(&db.connection_string, ConnectionOptions::default())
        .expect("connect");
    let sql = format!("SELECT count(*) FROM {}", db.db.quote(table));
    let mut cursor = conn.execute(&sql, (), None).unwrap().expect("a result set");
    let mut row = cursor.next_row().unwrap().expect("one row");
    let mut count = 0i64;
    row.get_data(1, &mut count).unwrap();
    count
}
