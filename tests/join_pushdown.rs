//! Same-source join pushdown on PostgreSQL, MariaDB and SQLite: which joins run remotely as
//! one statement, and that every answer equals the one DataFusion computes from plain scans
//! (the same engine with join pushdown switched off).

#[path = "../providers/tests/common/mod.rs"]
mod common;

use common::{Profile, TestDb, run, table_text, unique_name};
use ibarrow::{Engine, SourceConfig};
use test_case::test_case;

struct Shop<'a> {
    db: &'a TestDb,
    pushed: Engine,
    local: Engine,
    names: [String; 3],
    _tables: Vec<common::DropGuard<'a>>,
}

/// customers, orders (some without customer, some for unknown customers) and order lines,
/// with text codes that differ only in case and trailing blanks.
async fn shop(db: &TestDb) -> Shop<'_> {
    let names = [unique_name("jc"), unique_name("jo"), unique_name("jl")];
    let date = |day: i64| match db.db {
        Profile::Sqlite => format!("'2024-01-{:02}'", 1 + day % 28),
        _ => format!("DATE '2024-01-{:02}'", 1 + day % 28),
    };
    let customers = db.create_table(
        &names[0],
        "id INTEGER PRIMARY KEY, name VARCHAR(20), code VARCHAR(10), since DATE, credit DECIMAL(8,2)",
    );
    let orders = db.create_table(
        &names[1],
        "id INTEGER PRIMARY KEY, customer_id INTEGER, code VARCHAR(10), day DATE, total DECIMAL(8,2), \
         big_customer BIGINT",
    );
    let lines = db.create_table(
        &names[2],
        "id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, qty INTEGER NOT NULL",
    );
    let q = |n: &str| db.db.quote(n);
    let customer_rows: Vec<String> = (1..=12)
        .map(|i| {
            let code = ["ab", "AB", "cd", "cd "][i % 4];
            format!("({i}, 'c{i}', '{code}', {}, {}.50)", date(i as i64), i * 10)
        })
        .collect();
    let order_rows: Vec<String> = (1..=60)
        .map(|i| {
            let customer = match i % 10 {
                0 => "NULL".to_string(),
                9 => "99".to_string(),
                _ => (1 + i % 14).to_string(),
            };
            let code = ["ab", "Ab", "cd", "xy"][i % 4];
            format!(
                "({i}, {customer}, '{code}', {}, {}.25, {customer})",
                date(i as i64 / 2),
                i * 3
            )
        })
        .collect();
    let line_rows: Vec<String> = (1..=150)
        .map(|i| format!("({i}, {}, {})", 1 + i % 70, 1 + i % 4))
        .collect();
    db.execute(&[
        &format!(
            "INSERT INTO {} VALUES {}",
            q(&names[0]),
            customer_rows.join(", ")
        ),
        &format!(
            "INSERT INTO {} VALUES {}",
            q(&names[1]),
            order_rows.join(", ")
        ),
        &format!(
            "INSERT INTO {} VALUES {}",
            q(&names[2]),
            line_rows.join(", ")
        ),
    ]);
    let engine = |pushdown: bool| {
        let config = SourceConfig {
            connection_string: Some(db.connection_string.clone()),
            pushdown_joins: Some(pushdown),
            pushdown_aggregates: Some(false),
            ..SourceConfig::default()
        };
        Engine::builder().source_config("db", config).build()
    };
    Shop {
        db,
        pushed: engine(true).await.expect("engine with join pushdown"),
        local: engine(false).await.expect("engine without join pushdown"),
        names,
        _tables: vec![customers, orders, lines],
    }
}

impl Shop<'_> {
    /// `query` over `customers`, `orders`, `lines`: the answers with and without pushdown
    /// (which must be equal), and the remote statements of the pushed plan.
    async fn check(&self, query: &str) -> (String, Vec<String>) {
        let schema = self.db.db.schema();
        let sql = query
            .replace("customers", &format!("db.{schema}.{}", self.names[0]))
            .replace("orders", &format!("db.{schema}.{}", self.names[1]))
            .replace("lines", &format!("db.{schema}.{}", self.names[2]));
        let (pushed, statements) = run(self.pushed.context(), &sql).await;
        let (local, local_statements) = run(self.local.context(), &sql).await;
        assert!(
            local_statements.iter().all(|s| !s.contains(" JOIN ")),
            "{local_statements:?}"
        );
        let shown = table_text(&pushed);
        assert_eq!(shown, table_text(&local), "{sql}\nremote: {statements:?}");
        (shown, statements)
    }
}

fn joined_remotely(statements: &[String]) -> bool {
    statements.len() == 1 && statements[0].contains(" JOIN ")
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_key_joins_run_as_one_statement(profile: Profile) {
    let db = profile.open();
    let shop = shop(&db).await;

    let (rows, statements) = shop
        .check(
            "SELECT c.name, o.id, o.total FROM orders o JOIN customers c ON o.customer_id = c.id \
             WHERE o.total > 30 AND c.id <> 3 ORDER BY o.id",
        )
        .await;
    assert!(joined_remotely(&statements), "{statements:?}");
    assert!(statements[0].contains("INNER JOIN"), "{statements:?}");
    assert!(rows.contains("| c"), "{rows}");

    // Three tables of one source: the whole join is one statement.
    let (_, statements) = shop
        .check(
            "SELECT c.name, sum(l.qty) AS qty, count(*) AS n FROM lines l \
             JOIN orders o ON l.order_id = o.id JOIN customers c ON o.customer_id = c.id \
             GROUP BY c.name ORDER BY c.name",
        )
        .await;
    assert!(joined_remotely(&statements), "{statements:?}");
    assert_eq!(statements[0].matches(" JOIN ").count(), 2, "{statements:?}");

    // LEFT JOIN keeps orders without a (known) customer; NULL keys never match.
    let (rows, statements) = shop
        .check(
            "SELECT count(*) AS n, count(c.id) AS matched FROM orders o LEFT JOIN customers c \
             ON o.customer_id = c.id",
        )
        .await;
    assert!(joined_remotely(&statements), "{statements:?}");
    assert!(statements[0].contains("LEFT JOIN"), "{statements:?}");
    assert!(rows.contains("| 60 |"), "every order is kept:\n{rows}");
    let (rows, _) = shop
        .check(
            "SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON o.customer_id = c.id \
             WHERE o.id IN (10, 19) ORDER BY o.id",
        )
        .await;
    assert!(
        rows.contains("| 10 |      |") && rows.contains("| 19 |      |"),
        "{rows}"
    );
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_compared_differently_by_the_database_stay_local(profile: Profile) {
    let db = profile.open();
    let shop = shop(&db).await;

    // Strings: MariaDB matches 'ab' with 'AB' and 'cd' with 'cd '; only PostgreSQL compares
    // them as DataFusion does.
    let (_, statements) = shop
        .check(
            "SELECT c.id, o.id AS order_id FROM customers c JOIN orders o ON o.code = c.code \
             ORDER BY c.id, o.id",
        )
        .await;
    assert_eq!(
        joined_remotely(&statements),
        profile == Profile::Postgres,
        "{statements:?}"
    );

    // Dates and decimals: SQLite keeps them as text and floating point.
    let (_, statements) = shop
        .check(
            "SELECT c.id, o.id AS order_id FROM customers c JOIN orders o ON o.day = c.since \
             ORDER BY c.id, o.id",
        )
        .await;
    assert_eq!(
        joined_remotely(&statements),
        profile != Profile::Sqlite,
        "{statements:?}"
    );

    // Keys of different types (INTEGER and BIGINT) are cast by DataFusion; SQLite reads both
    // as 64-bit integers, so there the join does go remote.
    let (_, statements) = shop
        .check(
            "SELECT c.id, o.id AS order_id FROM customers c JOIN orders o \
             ON o.big_customer = c.id ORDER BY c.id, o.id",
        )
        .await;
    assert_eq!(
        joined_remotely(&statements),
        profile == Profile::Sqlite,
        "{statements:?}"
    );

    // A join with a non-equality condition between the sides is not taken, also inside EXISTS.
    for query in [
        "SELECT c.id, o.id AS order_id FROM customers c JOIN orders o \
         ON o.customer_id = c.id AND o.total > c.credit ORDER BY c.id, o.id",
        "SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o \
         WHERE o.customer_id = c.id AND o.total > c.credit) ORDER BY c.id",
    ] {
        let (_, statements) = shop.check(query).await;
        assert_eq!(statements.len(), 2, "{query}: {statements:?}");
    }
}

fn exists_remotely(statements: &[String], exists: &str) -> bool {
    statements.len() == 1 && statements[0].contains(exists)
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_and_anti_joins_run_as_exists(profile: Profile) {
    let db = profile.open();
    let shop = shop(&db).await;

    // EXISTS and IN (subquery): customers with orders, each once; the subquery's own filter
    // goes along.
    for query in [
        "SELECT c.id, c.name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o \
         WHERE o.customer_id = c.id AND o.total > 150) ORDER BY c.id",
        "SELECT c.id, c.name FROM customers c WHERE c.id IN (SELECT o.customer_id FROM orders o \
         WHERE o.total > 150) ORDER BY c.id",
    ] {
        let (rows, statements) = shop.check(query).await;
        assert!(
            exists_remotely(&statements, " WHERE EXISTS (SELECT 1 FROM ("),
            "{query}: {statements:?}"
        );
        assert!(rows.contains("| c2 ") && !rows.contains("| c5 "), "{rows}");
    }

    // NOT EXISTS keeps the orders whose customer is NULL (order 10) or unknown (order 9).
    let (rows, statements) = shop
        .check(
            "SELECT o.id FROM orders o WHERE NOT EXISTS (SELECT 1 FROM customers c \
             WHERE c.id = o.customer_id) ORDER BY o.id",
        )
        .await;
    assert!(
        exists_remotely(&statements, " WHERE NOT EXISTS (SELECT 1 FROM ("),
        "{statements:?}"
    );
    assert!(rows.contains("| 9  |") && rows.contains("| 10 |"), "{rows}");

    // NOT IN answers nothing when the subquery holds a NULL (orders 50 and 60 have no
    // customer), where NOT EXISTS would answer customers 4 to 9: kept local.
    let (rows, statements) = shop
        .check(
            "SELECT c.id FROM customers c WHERE c.id NOT IN (SELECT o.customer_id FROM orders o \
             WHERE o.total > 150) ORDER BY c.id",
        )
        .await;
    assert_eq!(statements.len(), 2, "{statements:?}");
    assert!(!rows.chars().any(|c| c.is_ascii_digit()), "{rows}");

    // A semi join over a pushed join, as in TPC-H Q4: one statement for the three tables.
    let (rows, statements) = shop
        .check(
            "SELECT c.name, count(*) AS n FROM orders o JOIN customers c ON o.customer_id = c.id \
             WHERE EXISTS (SELECT 1 FROM lines l WHERE l.order_id = o.id AND l.qty > 2) \
             GROUP BY c.name ORDER BY c.name",
        )
        .await;
    assert!(
        exists_remotely(&statements, "INNER JOIN") && statements[0].contains("EXISTS"),
        "{statements:?}"
    );
    assert!(rows.contains("| c"), "{rows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_of_different_sources_are_never_joined_remotely() {
    // Two sources on the same PostgreSQL database are still two sources.
    let db = Profile::Postgres.open();
    let shop = shop(&db).await;
    let other = Engine::builder()
        .source("a", &db.connection_string)
        .source("b", &db.connection_string)
        .build()
        .await
        .unwrap();
    let sql = format!(
        "SELECT count(*) FROM a.public.{} o JOIN b.public.{} c ON o.customer_id = c.id",
        shop.names[1], shop.names[0]
    );
    let (_, statements) = run(other.context(), &sql).await;
    assert_eq!(statements.len(), 2, "{statements:?}");
}

/// A pushed sub-plan carries PostgreSQL's estimate of its rows (from EXPLAIN, at planning)
/// so that joins above it pick their build side; other databases give none.
#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_sub_plans_carry_postgresql_row_estimates(profile: Profile) {
    use datafusion::common::stats::Precision;
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

    let db = profile.open();
    let shop = shop(&db).await;
    let schema = profile.schema();
    let sql = format!(
        "SELECT o.id, c.name FROM db.{schema}.{} o JOIN db.{schema}.{} c \
         ON o.customer_id = c.id",
        shop.names[1], shop.names[0]
    );
    let plan = shop
        .pushed
        .context()
        .sql(&sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let statements = common::remote_sql(&plan);
    assert!(joined_remotely(&statements), "{statements:?}");
    let rows = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .unwrap()
        .num_rows;
    match profile {
        Profile::Postgres => assert!(
            matches!(rows, Precision::Inexact(rows) if rows > 0),
            "{rows:?}"
        ),
        _ => assert_eq!(rows, Precision::Absent, "{profile:?}"),
    }
}
