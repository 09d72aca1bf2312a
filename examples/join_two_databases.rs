//! Joins a PostgreSQL table with a SQLite table in one SQL statement.
//!
//! `cargo run --example join_two_databases` (PostgreSQL from IBARROW_TEST_POSTGRES or the
//! local test server; the SQLite file is created in the temp folder).

use datafusion::arrow::util::pretty::print_batches;
use ibarrow::Engine;
use odbc_api::ConnectionOptions;

fn setup(connection_string: &str, statements: &[&str]) -> Result<(), odbc_api::Error> {
    let env = odbc_api::environment()?;
    let conn =
        env.connect_with_connection_string(connection_string, ConnectionOptions::default())?;
    for sql in statements {
        conn.execute(sql, (), None)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pg = std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let lite = format!(
        "Driver={{SQLite3}};Database={};",
        std::env::temp_dir()
            .join("ibarrow_example_crm.sqlite")
            .display()
    );
    setup(
        &pg,
        &[
            "DROP TABLE IF EXISTS example_orders",
            "CREATE TABLE example_orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total NUMERIC(10,2))",
            "INSERT INTO example_orders VALUES (1, 1, 19.99), (2, 2, 5.00), (3, 1, 42.50), (4, 3, 7.25)",
        ],
    )?;
    setup(
        &lite,
        &[
            "DROP TABLE IF EXISTS customers",
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)",
            "INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger')",
        ],
    )?;

    let engine = Engine::builder()
        .source("pg", &pg)
        .source("crm", &lite)
        .build()
        .await?;
    let query = "SELECT c.name, count(*) AS orders, sum(o.total) AS spent \
                 FROM pg.public.example_orders o JOIN crm.main.customers c ON c.id = o.customer_id \
                 WHERE o.total > 6 GROUP BY c.name ORDER BY spent DESC";
    print_batches(&engine.sql(query).await?.collect().await?)?;
    print_batches(
        &engine
            .sql(&format!("EXPLAIN {query}"))
            .await?
            .collect()
            .await?,
    )?;
    Ok(())
}
