//! Without `partitions`, a source reads a large table in one range per `min_partition_rows` of
//! its row estimate, up to the cores, and EXPLAIN says so; a configured `partitions` wins; a
//! lookup that pins the primary key is one statement either way. On PostgreSQL, MariaDB and
//! SQLite; the sums and values come from the generator.

#[path = "../providers/tests/common/mod.rs"]
mod common;

use common::{OwnedTable, Profile};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::physical_plan::displayable;
use futures::TryStreamExt;
use ibarrow::{Config, Engine};
use test_case::test_case;

const ROWS: i64 = 250_000;

fn fill(profile: Profile, table: &str) -> String {
    let rows = match profile {
        Profile::Postgres => format!("SELECT g, g FROM generate_series(1::bigint, {ROWS}) g"),
        Profile::MariaDb => format!("SELECT seq, seq FROM seq_1_to_{ROWS}"),
        Profile::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {ROWS}) \
             SELECT g, g FROM s"
        ),
    };
    format!("INSERT INTO {table} {rows}")
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_table_is_split_over_the_cores_unless_configured(profile: Profile) {
    let table = OwnedTable::create(
        profile,
        "auto_parts",
        "id BIGINT PRIMARY KEY, v BIGINT",
        |t| vec![fill(profile, t)],
    );
    // The row estimate comes from the database's statistics.
    if let Some(analyze) = profile.analyze(&table.name) {
        table.db.execute(&[&analyze]);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // 250 000 rows, one range per 100 000: two, on a machine of two cores or more.
    let expected = cores.min(2);
    let conn = table.db.connection_string.replace('\\', "\\\\");
    for (setting, statements) in [("", expected), ("partitions = 1", 1)] {
        let text = format!("[sources.db]\nconnection_string = \"{conn}\"\n{setting}\n");
        let engine = Engine::from_config(Config::parse(&text, "test").unwrap())
            .await
            .expect("engine");
        let session = engine.session("test", "partitions");
        // An aggregate would be pushed into one statement: read the rows, sum them here.
        let rows_sql = format!("SELECT v FROM {} WHERE v > 0", table.in_source("db"));
        let (sent, shown, values) = run(&session, &rows_sql).await;
        assert_eq!(sent.len(), statements, "{profile:?} `{setting}`: {sent:?}");
        assert_eq!(
            shown.contains("partitioning=(automatic: ~"),
            setting.is_empty(),
            "{profile:?} `{setting}`: {shown}"
        );
        let sum: i64 = values.iter().sum();
        assert_eq!(sum, ROWS * (ROWS + 1) / 2, "{profile:?} `{setting}`");

        // A lookup that pins the primary key is one statement whatever the setting, and
        // EXPLAIN says why where the table is split otherwise; the generator made v = id.
        let pins = [
            ("id = 4242", vec![4242]),
            ("id IN (1, 250000)", vec![1, 250_000]),
        ];
        for (pin, mut expected) in pins {
            let sql = format!("SELECT v FROM {} WHERE {pin}", table.in_source("db"));
            let (sent, shown, mut values) = run(&session, &sql).await;
            assert_eq!(sent.len(), 1, "{profile:?} `{setting}` {pin}: {sent:?}");
            let reason = format!("partitioning=(at most {} row", expected.len());
            assert_eq!(
                shown.contains(&reason),
                statements > 1,
                "{profile:?} `{setting}` {pin}: {shown}"
            );
            values.sort();
            expected.sort();
            assert_eq!(values, expected, "{profile:?} `{setting}` {pin}");
        }
    }
}

/// Plans and runs `sql` (one BIGINT column): the statements its scan sends, its plan as
/// EXPLAIN shows it, and the values.
async fn run(session: &ibarrow::Session, sql: &str) -> (Vec<String>, String, Vec<i64>) {
    let query = session
        .physical_plan(session.sql(sql).await.unwrap())
        .await
        .unwrap();
    let plan = std::sync::Arc::clone(query.plan());
    let shown = displayable(plan.as_ref()).indent(true).to_string();
    let batches: Vec<_> = session
        .execute_plan(query, sql)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let values = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    (common::remote_sql(&plan), shown, values)
}
