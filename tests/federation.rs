//! One DataFusion session joining tables that live in PostgreSQL, MariaDB and SQLite, checked
//! against the same join over the same rows held in memory.

use std::sync::Arc;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use ibarrow::{OdbcSource, SourceOptions};
use odbc_api::ConnectionOptions;

fn connection_string(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_across_three_databases_equals_the_local_join() {
    let suffix = std::process::id();
    let pg = connection_string(
        "IBARROW_TEST_POSTGRES",
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;",
    );
    let maria = connection_string(
        "IBARROW_TEST_MARIADB",
        "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;",
    );
    let dir = tempfile::tempdir().unwrap();
    let lite = format!(
        "Driver={{SQLite3}};Database={};",
        dir.path().join("crm.sqlite").display()
    );

    let orders = format!("fed_orders_{suffix}");
    let customers = format!("fed_customers_{suffix}");
    let regions = format!("fed_regions_{suffix}");
    let mut order_rows = Vec::new();
    for i in 1..=300 {
        order_rows.push(format!("({i}, {}, {}.{:02})", i % 37, i * 3, i % 100));
    }
    execute(
        &pg,
        &[
            format!("DROP TABLE IF EXISTS {orders}"),
            format!(
                "CREATE TABLE {orders} (id INTEGER PRIMARY KEY, customer_id INTEGER, total NUMERIC(10,2))"
            ),
            format!("INSERT INTO {orders} VALUES {}", order_rows.join(", ")),
        ],
    );
    let customer_rows: Vec<String> = (0..40)
        .map(|i| format!("({i}, 'customer {i}', {})", i % 4))
        .collect();
    execute(
        &maria,
        &[
            format!("DROP TABLE IF EXISTS {customers}"),
            format!(
                "CREATE TABLE {customers} (id INT PRIMARY KEY, name VARCHAR(40), region_id INT)"
            ),
            format!(
                "INSERT INTO {customers} VALUES {}",
                customer_rows.join(", ")
            ),
        ],
    );
    execute(
        &lite,
        &[
            format!("CREATE TABLE {regions} (id INTEGER PRIMARY KEY, name TEXT)"),
            format!(
                "INSERT INTO {regions} VALUES (0, 'north'), (1, 'south'), (2, 'east'), (3, 'west')"
            ),
        ],
    );

    let remote = SessionContext::new();
    let local = SessionContext::new();
    for (conn, schema, table, alias) in [
        (&pg, "public", &orders, "orders"),
        (&maria, "ibarrow_test", &customers, "customers"),
        (&lite, "main", &regions, "regions"),
    ] {
        let source = OdbcSource::connect(alias, conn, SourceOptions::default())
            .await
            .unwrap();
        let provider = source.table(schema, table).await.unwrap();
        remote.register_table(alias, provider.clone()).unwrap();
        let rows = remote
            .sql(&format!("SELECT * FROM {alias}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mem = MemTable::try_new(rows[0].schema(), vec![rows]).unwrap();
        local.register_table(alias, Arc::new(mem)).unwrap();
    }

    let query = "SELECT r.name AS region, count(*) AS orders, sum(o.total) AS revenue \
                 FROM orders o JOIN customers c ON o.customer_id = c.id \
                 JOIN regions r ON c.region_id = r.id \
                 WHERE o.id > 10 AND r.name <> 'east' \
                 GROUP BY r.name ORDER BY r.name";
    let federated = remote.sql(query).await.unwrap().collect().await.unwrap();
    let expected = local.sql(query).await.unwrap().collect().await.unwrap();
    let federated = pretty_format_batches(&federated).unwrap().to_string();
    assert_eq!(
        federated,
        pretty_format_batches(&expected).unwrap().to_string()
    );
    assert!(
        federated.contains("north") && !federated.contains("east"),
        "{federated}"
    );

    let plan = remote
        .sql(&format!("EXPLAIN {query}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let plan = pretty_format_batches(&plan).unwrap().to_string();
    assert_eq!(plan.matches("OdbcExec").count(), 3, "{plan}");
    assert!(
        plan.contains("WHERE (\"id\" > 10)"),
        "filter pushed to PostgreSQL: {plan}"
    );

    execute(&pg, &[format!("DROP TABLE {orders}")]);
    execute(&maria, &[format!("DROP TABLE {customers}")]);
}
