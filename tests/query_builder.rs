//! The query builder (src/query.rs) on PostgreSQL, MariaDB and SQLite through their ODBC
//! drivers, joined with a second database (SQLite). The rows are written by the test, so the
//! answers are computed here from the same constants, not by ibarrow: a filter, a join on
//! equal names, a grouping and an order give the expected rows; an unknown column or table is
//! an error naming the close match; a type that does not fit is refused at its step; the
//! access policy applies to built queries as to SQL; the SQL form runs to the same answer.

#[path = "../providers/tests/common/mod.rs"]
mod common;
#[path = "support/rows.rs"]
mod rows;

use std::collections::BTreeMap;

use common::{OwnedTable, Profile};
use datafusion::arrow::array::RecordBatch;
use ibarrow::prelude::*;
use ibarrow::{Config, ErrorKind};
use rows::batch_rows;
use test_case::test_case;

/// (order_id, customer_id, status, amount in cents) as the test writes them.
const ORDERS: [(i64, i64, &str, i64); 8] = [
    (1, 10, "open", 1250),
    (2, 10, "paid", 900),
    (3, 11, "open", 4000),
    (4, 12, "open", 125),
    (5, 12, "cancelled", 700),
    (6, 13, "open", 10000),
    (7, 11, "paid", 333),
    (8, 14, "open", 50),
];

/// (customer_id, name, region) in the second database.
const CUSTOMERS: [(i64, &str, &str); 5] = [
    (10, "Ada", "EU"),
    (11, "Grace", "US"),
    (12, "Linus", "EU"),
    (13, "Margaret", "US"),
    (14, "Barbara", "APAC"),
];

struct Fixture {
    orders: OwnedTable,
    customers: OwnedTable,
}

impl Fixture {
    fn create(profile: Profile) -> Self {
        let orders = OwnedTable::create(
            profile,
            "builder_orders",
            "order_id INTEGER PRIMARY KEY, customer_id INTEGER, status VARCHAR(20), \
             amount INTEGER, secret VARCHAR(20)",
            |quoted| {
                ORDERS
                    .iter()
                    .map(|(id, customer, status, amount)| {
                        format!(
                            "INSERT INTO {quoted} VALUES ({id}, {customer}, '{status}', {amount}, 's{id}')"
                        )
                    })
                    .collect()
            },
        );
        let customers = OwnedTable::create(
            Profile::Sqlite,
            "builder_customers",
            "customer_id INTEGER PRIMARY KEY, name VARCHAR(20), region VARCHAR(10)",
            |quoted| {
                CUSTOMERS
                    .iter()
                    .map(|(id, name, region)| {
                        format!("INSERT INTO {quoted} VALUES ({id}, '{name}', '{region}')")
                    })
                    .collect()
            },
        );
        Fixture { orders, customers }
    }

    fn orders_table(&self) -> String {
        self.orders.in_source("db")
    }

    fn customers_table(&self) -> String {
        self.customers.in_source("lite")
    }

    fn config(&self, extra: &str) -> Config {
        let text = format!(
            r#"
            [sources.db]
            connection_string = "{db}"
            [sources.lite]
            connection_string = "{lite}"
            {extra}
            "#,
            db = self.orders.db.connection_string.replace('\\', "\\\\"),
            lite = self.customers.db.connection_string.replace('\\', "\\\\"),
        );
        Config::parse(&text, "test").unwrap()
    }

    async fn engine(&self, extra: &str) -> Engine {
        Engine::from_config(self.config(extra))
            .await
            .expect("engine")
    }
}

/// Open orders per region: (region, orders, total amount), by region.
fn open_orders_by_region() -> Vec<String> {
    let region: BTreeMap<i64, &str> = CUSTOMERS.iter().map(|(id, _, r)| (*id, *r)).collect();
    let mut totals: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (_, customer, status, amount) in ORDERS {
        if status == "open" {
            let entry = totals.entry(region[&customer]).or_default();
            entry.0 += 1;
            entry.1 += amount;
        }
    }
    totals
        .into_iter()
        .map(|(region, (n, total))| format!("{region}|{n}|{total}"))
        .collect()
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_query_joins_two_databases_and_answers_as_computed(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let session = engine.session("analyst", "test");
    let orders = session.table(&fixture.orders_table()).await.unwrap();
    let customers = session.table(&fixture.customers_table()).await.unwrap();
    let query = orders
        .filter(col("status").eq(lit("open")))
        .unwrap()
        .join_using(customers, JoinType::Inner, &["customer_id"])
        .unwrap()
        .aggregate(
            vec![col("region")],
            vec![
                count(lit(1)).alias("orders"),
                sum(col("amount")).alias("total"),
            ],
        )
        .unwrap()
        .sort(vec![col("region").sort(true, false)])
        .unwrap();
    assert_eq!(
        query
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["region", "orders", "total"]
    );
    let expected = open_orders_by_region();
    let sql = query.to_sql().unwrap();
    assert_eq!(
        batch_rows(&query.clone().collect().await.unwrap()),
        expected
    );

    // The SQL form is a statement DataFusion plans to the same answer.
    let frame = session
        .sql(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches: Vec<RecordBatch> =
        futures::TryStreamExt::try_collect(session.execute(frame, &sql).await.unwrap())
            .await
            .unwrap();
    assert_eq!(batch_rows(&batches), expected, "{sql}");

    // The filter ran in the database, and the run is in the query log under its SQL form.
    let explained = query.explain(false, false).await.unwrap();
    assert!(
        explained
            .lines()
            .any(|line| line.contains("OdbcExec: source=db") && line.contains("WHERE")),
        "{explained}"
    );
    assert!(
        engine
            .recent_queries()
            .iter()
            .any(|q| q.sql.contains("region") && q.user == "analyst"),
        "{:?}",
        engine.recent_queries()
    );
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_select_compute_order_and_limit_as_written(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let customers = engine.table(&fixture.customers_table()).await.unwrap();
    let query = engine
        .table(&fixture.orders_table())
        .await
        .unwrap()
        .with_column("doubled", col("amount") * lit(2))
        .unwrap()
        .join(
            customers,
            JoinType::Left,
            &["customer_id"],
            &["customer_id"],
        )
        .unwrap()
        .select(vec![col("order_id"), col("name"), col("doubled")])
        .unwrap()
        .sort(vec![col("doubled").sort(false, false)])
        .unwrap()
        .limit(1, Some(3))
        .unwrap();
    let mut expected: Vec<(i64, i64, &str)> = ORDERS
        .iter()
        .map(|(id, customer, _, amount)| {
            let name = CUSTOMERS.iter().find(|c| c.0 == *customer).unwrap().1;
            (amount * 2, *id, name)
        })
        .collect();
    expected.sort_by_key(|row| std::cmp::Reverse(row.0));
    let expected: Vec<String> = expected[1..4]
        .iter()
        .map(|(doubled, id, name)| format!("{id}|{name}|{doubled}"))
        .collect();
    assert_eq!(batch_rows(&query.collect().await.unwrap()), expected);

    let statuses = engine
        .table(&fixture.orders_table())
        .await
        .unwrap()
        .select_columns(&["status"])
        .unwrap()
        .distinct()
        .unwrap()
        .sort(vec![col("status").sort(true, false)])
        .unwrap();
    let mut expected: Vec<String> = ORDERS.iter().map(|o| o.2.to_string()).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(batch_rows(&statuses.collect().await.unwrap()), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_refused_with_the_close_matches() {
    let fixture = Fixture::create(Profile::Sqlite);
    let engine = fixture.engine("").await;
    let orders = engine.table(&fixture.orders_table()).await.unwrap();

    let err = orders
        .clone()
        .filter(col("stauts").eq(lit("open")))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input);
    let message = err.to_string();
    assert!(
        message.contains("no column `stauts`")
            && message.contains("did you mean `status`")
            && message.contains(&fixture.orders.name),
        "{message}"
    );
    match &err {
        ibarrow::Error::UnknownName { close, .. } => assert_eq!(close[0], "status"),
        other => panic!("{other:?}"),
    }

    // After a grouping, only its columns are there.
    let grouped = orders
        .clone()
        .aggregate(vec![col("status")], vec![count(lit(1)).alias("n")])
        .unwrap();
    let message = grouped
        .filter(col("amount").gt(lit(1)))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no column `amount`") && message.contains("aggregate"),
        "{message}"
    );

    let typo = fixture
        .orders_table()
        .replace("builder_orders", "builder_ordres");
    let message = engine.table(&typo).await.unwrap_err().to_string();
    assert!(
        message.contains("no table") && message.contains(&fixture.orders.name),
        "{message}"
    );
    let message = engine.table("lite.mian.x").await.unwrap_err().to_string();
    assert!(message.contains("did you mean `main`"), "{message}");
    let message = engine.table("lit.main.x").await.unwrap_err().to_string();
    assert!(message.contains("did you mean `lite`"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_that_do_not_fit_are_refused_at_their_step() {
    let fixture = Fixture::create(Profile::Sqlite);
    let engine = fixture.engine("").await;
    let orders = engine.table(&fixture.orders_table()).await.unwrap();

    let err = orders.clone().filter(col("amount")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input);
    assert!(err.to_string().starts_with("filter:"), "{err}");

    let err = orders
        .clone()
        .select(vec![col("status") - lit(1)])
        .unwrap_err();
    assert!(err.to_string().starts_with("select:"), "{err}");

    let customers = engine.table(&fixture.customers_table()).await.unwrap();
    let err = orders
        .clone()
        .join(
            customers.clone(),
            JoinType::Inner,
            &["order_id", "status"],
            &["customer_id"],
        )
        .unwrap_err();
    assert!(err.to_string().contains("key columns"), "{err}");
    let err = orders
        .clone()
        .join_using(customers, JoinType::Inner, &["region"])
        .unwrap_err();
    assert!(err.to_string().contains("no column `region`"), "{err}");
    let err = orders
        .clone()
        .join_using(orders.clone(), JoinType::Inner, &["order_id"])
        .unwrap_err();
    assert!(err.to_string().contains("`alias`"), "{err}");
    let self_join = orders
        .clone()
        .join_using(
            orders.alias("again").unwrap(),
            JoinType::Inner,
            &["order_id"],
        )
        .unwrap();
    assert_eq!(
        self_join
            .collect()
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        ORDERS.len()
    );
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_policy_applies_to_built_queries(profile: Profile) {
    let fixture = Fixture::create(profile);
    let orders = fixture.orders_table();
    let engine = fixture
        .engine(&format!(
            r#"
            [roles.clerk]
            read = ["{orders}"]
            deny_columns = ["{orders}.secret"]
            row_filters = {{ "{orders}" = "status = 'open'" }}
            [users.bob]
            roles = ["clerk"]
            "#
        ))
        .await;
    let bob = engine.session("bob", "test");

    // Row filters apply: bob sees open orders only.
    let rows = bob
        .table(&orders)
        .await
        .unwrap()
        .select_columns(&["order_id"])
        .unwrap()
        .sort(vec![col("order_id").sort(true, false)])
        .unwrap()
        .collect()
        .await
        .unwrap();
    let expected: Vec<String> = ORDERS
        .iter()
        .filter(|o| o.2 == "open")
        .map(|o| o.0.to_string())
        .collect();
    assert_eq!(batch_rows(&rows), expected);

    // His view of the table has no denied column, as `\d` shows it: naming it is an unknown
    // column, and the whole table reads without it.
    let his_orders = bob.table(&orders).await.unwrap();
    let columns: Vec<String> = his_orders
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(columns, ["order_id", "customer_id", "status", "amount"]);
    let err = his_orders.clone().select_columns(&["secret"]).unwrap_err();
    assert!(
        err.to_string().contains("no column `secret`") && !err.to_string().contains("s1"),
        "{err}"
    );
    let all = his_orders.collect().await.unwrap();
    assert_eq!(batch_rows(&all).len(), expected.len());

    // A table outside the grants is refused when it is named, naming the missing grant, as in
    // SQL; a typo is offered only the names he may list.
    let err = bob.table(&fixture.customers_table()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    let typo = fixture
        .customers_table()
        .replace("builder_customers", "builder_customrs");
    let message = bob.table(&typo).await.unwrap_err().to_string();
    assert!(!message.contains(&fixture.customers.name), "{message}");
}
