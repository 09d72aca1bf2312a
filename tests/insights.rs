//! Query insights and index advice on PostgreSQL, MariaDB and SQLite through their ODBC
//! drivers: lookups through a filter on a column no index covers get a `CREATE INDEX`
//! suggestion, which goes away once the database has that index (created here through odbc-api,
//! not through ibarrow); lookups on the primary key never get one; the statements, users and
//! sources add up to what the test ran.

#[path = "../providers/tests/common/mod.rs"]
mod common;

use common::{OwnedTable, Profile};
use futures::TryStreamExt;
use ibarrow::{Config, Engine, Session};
use test_case::test_case;

/// Rows of the table; `customer` takes each of 1 000 values this many times / 1 000.
const ROWS: i64 = 20_000;
const CUSTOMERS: i64 = 1_000;

fn create(profile: Profile) -> OwnedTable {
    let table = OwnedTable::create(
        profile,
        "advised",
        "id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, amount INTEGER NOT NULL",
        |quoted| {
            (0..ROWS / 1_000)
                .map(|chunk| {
                    let values: Vec<String> = (chunk * 1_000 + 1..=(chunk + 1) * 1_000)
                        .map(|id| format!("({id}, {}, {})", id % CUSTOMERS, id % 97))
                        .collect();
                    format!("INSERT INTO {quoted} VALUES {}", values.join(", "))
                })
                .collect()
        },
    );
    // The databases' row estimates, which advice weighs the returned rows against.
    let quoted = table.quoted();
    match profile {
        Profile::Postgres => table.db.execute(&[&format!("ANALYZE {quoted}")]),
        Profile::MariaDb => table.db.execute(&[&format!("ANALYZE TABLE {quoted}")]),
        Profile::Sqlite => {}
    }
    table
}

async fn run(session: &Session, sql: &str) -> usize {
    let frame = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches: Vec<_> = session
        .execute(frame, sql)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    batches.iter().map(|b| b.num_rows()).sum()
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_filters_on_unindexed_columns_get_index_advice(profile: Profile) {
    let table = create(profile);
    let conn = table.db.connection_string.replace('\\', "\\\\");
    let config = format!("[sources.db]\nconnection_string = \"{conn}\"\npartitions = 1\n");
    let engine = Engine::from_config(Config::parse(&config, "test").unwrap())
        .await
        .unwrap();
    let session = engine.session("tester", "insights");
    let name = table.in_source("db");
    for customer in [7, 8, 9] {
        let sql = format!("SELECT id, amount FROM {name} WHERE customer = {customer}");
        assert_eq!(
            run(&session, &sql).await as i64,
            ROWS / CUSTOMERS,
            "{profile:?}"
        );
    }
    for id in [5, 6] {
        let sql = format!("SELECT customer FROM {name} WHERE id = {id}");
        assert_eq!(run(&session, &sql).await, 1);
    }

    let insights = engine.insights().await;
    let lookups = format!("SELECT id, amount FROM {name} WHERE customer = ?");
    let statement = insights
        .statements_by_total_time
        .iter()
        .find(|s| s.statement == lookups)
        .unwrap_or_else(|| panic!("{profile:?}: {:?}", insights.statements_by_total_time));
    assert_eq!(
        (statement.runs, statement.rows),
        (3, 3 * (ROWS / CUSTOMERS) as u64)
    );
    let user = insights.users.iter().find(|u| u.user == "tester").unwrap();
    assert_eq!(user.queries, 5);
    let source = insights.sources.iter().find(|s| s.source == "db").unwrap();
    assert_eq!(source.rows, 3 * (ROWS / CUSTOMERS) as u64 + 2);
    assert!(source.driver_ms > 0.0);

    assert_eq!(
        insights.index_advice.len(),
        1,
        "{profile:?}: {:?}",
        insights.index_advice
    );
    let advice = &insights.index_advice[0];
    assert_eq!(advice.columns, ["customer"]);
    assert_eq!((advice.scans, advice.rows_returned), (3, 60));
    assert!(advice.table_rows as i64 >= ROWS / 2, "{advice:?}");
    assert!(
        advice.create_index.starts_with("CREATE INDEX ")
            && advice.create_index.contains(&table.name)
            && advice
                .create_index
                .ends_with(&format!("({})", profile.quote("customer"))),
        "{}",
        advice.create_index
    );

    // Once the database has the index, the advice goes.
    table.db.execute(&[&advice.create_index]);
    let after = engine.insights().await;
    assert!(
        after.index_advice.is_empty(),
        "{profile:?}: {:?}",
        after.index_advice
    );
}
