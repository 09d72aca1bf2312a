//! Parameters and prepared statements on PostgreSQL, MariaDB and SQLite through their ODBC
//! drivers. The rows are written straight through odbc-api with bound parameters, so what a
//! query should find is known without ibarrow: hostile text (quotes, comment markers,
//! statement separators, backslashes) bound as a parameter finds exactly its own row and
//! changes nothing; values are cast to the column's type; a prepared statement runs with new
//! values and follows a reloaded access policy; and with the result cache on, concurrent runs
//! of one text with different values each get their own rows.

#[path = "../providers/tests/common/mod.rs"]
mod common;
#[path = "support/rows.rs"]
mod rows;

use common::{OwnedTable, Profile};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use ibarrow::{Config, Engine, ErrorKind, Session};
use rows::rows_of;
use test_case::test_case;

/// (id, name, day, amount) as the test writes them.
const ROWS: [(i64, &str, &str, &str); 5] = [
    (1, "plain", "2024-01-01", "1.50"),
    (2, "O'Brien'; DROP TABLE x; --", "2024-02-29", "2.25"),
    (
        3,
        r#"back\slash "quoted" %_ /* not a comment */"#,
        "2024-12-31",
        "1000.00",
    ),
    (4, "ünïcödé ✓", "2025-06-15", "0.01"),
    (5, "x' OR '1'='1", "2025-07-01", "7.00"),
];

struct Fixture {
    table: OwnedTable,
}

impl Fixture {
    fn create(profile: Profile) -> Self {
        let table = OwnedTable::create(
            profile,
            "param_rows",
            "id INTEGER PRIMARY KEY, name VARCHAR(60), day DATE, amount DECIMAL(10,2)",
            |_| Vec::new(),
        );
        let quoted = table.quoted();
        for (id, name, day, amount) in ROWS {
            table.db.execute_with_text(
                &format!(
                    "INSERT INTO {quoted} (id, name, day, amount) VALUES ({id}, ?, '{day}', {amount})"
                ),
                Some(name),
            );
        }
        Fixture { table }
    }

    fn name(&self) -> String {
        self.table.in_source("db")
    }

    async fn engine(&self, extra: &str) -> Engine {
        Engine::from_config(self.config(extra))
            .await
            .expect("engine")
    }

    fn config(&self, extra: &str) -> Config {
        let conn = self.table.db.connection_string.replace('\\', "\\\\");
        let text = format!(
            r#"
            {extra}
            [sources.db]
            connection_string = "{conn}"
            "#
        );
        Config::parse(&text, "test").unwrap()
    }
}

async fn with_params(session: &Session, sql: &str, params: impl Into<ParamValues>) -> Vec<String> {
    let frame = session
        .sql_with_params(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows_of(session, frame, sql).await
}

fn text(value: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(value.to_string()))
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_bound_as_a_value_and_finds_only_its_row(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let session = engine.session("tester", "test");
    let sql = format!("SELECT id FROM {} WHERE name = $1", fixture.name());
    for (id, name, _, _) in ROWS {
        assert_eq!(
            with_params(&session, &sql, vec![text(name)]).await,
            [id.to_string()],
            "{profile:?}: {name}"
        );
    }
    // Text that would widen or end the statement if it were spliced in finds nothing.
    for hostile in [
        "' OR '1'='1",
        "1; DELETE FROM x",
        "plain' --",
        "plain\\",
        "%",
    ] {
        assert!(
            with_params(&session, &sql, vec![text(hostile)])
                .await
                .is_empty(),
            "{profile:?}: {hostile}"
        );
    }
    // LIKE takes the value as a pattern, and only as one.
    let like = format!(
        "SELECT id FROM {} WHERE name LIKE $1 ORDER BY id",
        fixture.name()
    );
    assert_eq!(
        with_params(&session, &like, vec![text("O'Brien%")]).await,
        ["2"]
    );
    let count = format!("SELECT count(*) FROM {}", fixture.name());
    let frame = session.sql(&count).await.unwrap();
    assert_eq!(rows_of(&session, frame, &count).await, ["5"], "{profile:?}");
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_take_the_type_of_their_column_and_names_work_too(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let session = engine.session("tester", "test");
    let table = fixture.name();
    // A 64-bit integer for an INTEGER column, text for a DATE, an integer for a DECIMAL.
    let by_id = format!("SELECT name FROM {table} WHERE id = $1");
    assert_eq!(
        with_params(&session, &by_id, vec![ScalarValue::Int64(Some(4))]).await,
        [ROWS[3].1]
    );
    let by_day = format!("SELECT id FROM {table} WHERE day = $1");
    assert_eq!(
        with_params(&session, &by_day, vec![text("2024-02-29")]).await,
        ["2"]
    );
    let by_amount = format!("SELECT id FROM {table} WHERE amount > $1 ORDER BY id");
    assert_eq!(
        with_params(&session, &by_amount, vec![ScalarValue::Int64(Some(2))]).await,
        ["2", "3", "5"]
    );
    let named = format!("SELECT id FROM {table} WHERE day >= $from AND id <> $skip ORDER BY id");
    assert_eq!(
        with_params(
            &session,
            &named,
            vec![
                ("from", text("2024-12-31")),
                ("skip", ScalarValue::Int64(Some(4)))
            ]
        )
        .await,
        ["3", "5"]
    );
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_runs_again_with_new_values(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let session = engine.session("tester", "test");
    let sql = format!("SELECT name, day FROM {} WHERE id = $1", fixture.name());
    let prepared = session.prepare(&sql).await.unwrap();
    let types = prepared.parameter_types().unwrap();
    assert_eq!(types.len(), 1, "{types:?}");
    assert_eq!(types[0].0, "$1");
    assert!(
        types[0].1.as_ref().is_some_and(DataType::is_integer),
        "{types:?}"
    );
    for (id, name, day, _) in ROWS.iter().rev() {
        let frame = prepared
            .bind(vec![ScalarValue::Int64(Some(*id))])
            .await
            .unwrap();
        assert_eq!(
            rows_of(&session, frame, &sql).await,
            [format!("{name}|{day}")],
            "{profile:?}"
        );
    }
    // Each run is a query of its own in the log, under the prepared text.
    let recent = engine.recent_queries();
    assert_eq!(recent.iter().filter(|q| q.sql == sql).count(), ROWS.len());
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_unconvertible_values_are_refused_with_what_to_do(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let session = engine.session("tester", "test");
    let sql = format!(
        "SELECT name FROM {} WHERE id = $1 AND day = $2",
        fixture.name()
    );
    let err = session
        .sql_with_params(&sql, vec![ScalarValue::Int64(Some(1))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    assert!(
        err.to_string().contains("one value per placeholder"),
        "{err}"
    );
    let err = session
        .sql_with_params(&sql, vec![ScalarValue::Int64(Some(1)), text("not a date")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("$2") && message.contains("Date32"),
        "{message}"
    );
    // A conversion that would change the value is refused, not rounded.
    let by_id = format!("SELECT name FROM {} WHERE id = $1", fixture.name());
    let err = session
        .sql_with_params(&by_id, vec![ScalarValue::Float64(Some(1.5))])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("would change the value"), "{err}");
    let by_amount = format!("SELECT id FROM {} WHERE amount = $1", fixture.name());
    let err = session
        .sql_with_params(&by_amount, vec![ScalarValue::Decimal128(Some(1005), 4, 3)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("would change the value"), "{err}");
    let err = session
        .sql_with_params(&by_amount, vec![text("1.005")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("would change the value"), "{err}");
    // Widening keeps the value: 2.0 is the integer 2.
    let frame = session
        .sql_with_params(&by_id, vec![ScalarValue::Float64(Some(2.0))])
        .await
        .unwrap();
    assert_eq!(rows_of(&session, frame, &by_id).await, [ROWS[1].1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_sees_a_refreshed_table() {
    let fixture = Fixture::create(Profile::Sqlite);
    let engine = fixture.engine("").await;
    let session = engine.session("tester", "test");
    let sql = format!("SELECT * FROM {} WHERE id = $1", fixture.name());
    let prepared = session.prepare(&sql).await.unwrap();
    assert_eq!(prepared.schema().fields().len(), 4);
    fixture.table.db.execute(&[&format!(
        "ALTER TABLE {} ADD COLUMN note VARCHAR(10)",
        fixture.table.quoted()
    )]);
    engine.refresh("db").await.unwrap();
    let frame = prepared
        .bind(vec![ScalarValue::Int64(Some(1))])
        .await
        .unwrap();
    assert_eq!(
        frame.schema().fields().len(),
        5,
        "planned again after the refresh"
    );
    assert_eq!(
        prepared.schema().fields().len(),
        5,
        "and the new plan is kept"
    );
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_of_one_text_with_the_cache_on_keep_their_own_rows(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture
        .engine("[engine]\nresult_cache = { ttl_secs = 600 }")
        .await;
    let sql = format!("SELECT id, name FROM {} WHERE id = $1", fixture.name());
    let prepared = engine
        .session("tester", "test")
        .prepare(&sql)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let (engine, sql, prepared) = (engine.clone(), sql.clone(), prepared.clone());
            tokio::spawn(async move {
                // One session per task, all of the same user: same text, same grants.
                let session = engine.session("tester", "test");
                for round in 0..20i64 {
                    let (id, name, _, _) = ROWS[((task + round) % ROWS.len() as i64) as usize];
                    let values = vec![ScalarValue::Int64(Some(id))];
                    let frame = if round % 2 == 0 {
                        session.sql_with_params(&sql, values).await.unwrap()
                    } else {
                        prepared.bind(values).await.unwrap()
                    };
                    assert_eq!(
                        rows_of(&session, frame, &sql).await,
                        [format!("{id}|{name}")]
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task failed");
    }
    let labels: Vec<&str> = engine.recent_queries().iter().map(|q| q.cache).collect();
    assert!(
        labels.contains(&"hit"),
        "no run was answered from the cache: {labels:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_follows_a_reloaded_access_policy() {
    let fixture = Fixture::create(Profile::Sqlite);
    let table = fixture.name();
    let roles = |deny: &str| {
        format!(
            "[roles.reader]\nread = [\"db.*.*\"]\ndeny_columns = [{deny}]\n\
             [users.alice]\nroles = [\"reader\"]"
        )
    };
    let engine = fixture.engine(&roles("")).await;
    let session = engine.session("alice", "test");
    let sql = format!("SELECT name FROM {table} WHERE id = $1");
    let prepared = session.prepare(&sql).await.unwrap();
    let frame = prepared
        .bind(vec![ScalarValue::Int64(Some(1))])
        .await
        .unwrap();
    assert_eq!(rows_of(&session, frame, &sql).await, ["plain"]);

    engine
        .reload(&fixture.config(&roles(&format!("\"{table}.name\""))))
        .await
        .unwrap();
    let err = prepared
        .bind(vec![ScalarValue::Int64(Some(1))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
}
