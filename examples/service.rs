//! A lookup service embedding the engine: it opens the sources once, prepares its one query
//! once, and answers lookups concurrently from tasks, each run binding new values to the same
//! plan. The query joins the shop's orders with the CRM's customers and regions: two databases.
//!
//! `cargo run --example service -- [CONFIG] [CUSTOMER_ID ...]`
//!
//! CONFIG is a configuration with the demo's sources `shop` and `crm` (default: demo.toml, which
//! `ibarrow demo --write-config demo.toml` writes); the customer ids default to a few of the
//! demo's 5 000. A real service would take its lookups from requests; here they are tasks
//! started together.

use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;
use ibarrow::{Engine, PreparedStatement};

/// The latest orders of one customer, with the customer's name and region.
const LATEST_ORDERS: &str = "SELECT o.order_id, o.order_date, o.status, c.name AS customer, \
                             r.name AS region \
                             FROM shop.main.orders o \
                             JOIN crm.main.customers c ON c.customer_id = o.customer_id \
                             JOIN crm.main.regions r ON r.region_id = c.region_id \
                             WHERE o.customer_id = $1 \
                             ORDER BY o.order_date DESC, o.order_id DESC LIMIT 3";

/// One lookup: binds `customer` to the prepared plan and reads the whole answer.
async fn lookup(
    statement: PreparedStatement,
    customer: i64,
) -> ibarrow::Result<(Vec<RecordBatch>, Duration)> {
    let started = Instant::now();
    let stream = statement
        .stream(vec![ScalarValue::Int64(Some(customer))])
        .await?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    Ok((batches, started.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let config = args.next().unwrap_or_else(|| "demo.toml".to_string());
    let mut customers: Vec<i64> = args.map(|id| id.parse()).collect::<Result<_, _>>()?;
    if customers.is_empty() {
        customers = vec![7, 42, 1234, 2500, 4711, 4999];
    }

    let engine = Engine::from_config_file(&config).await?;
    for health in engine.health(Duration::from_secs(5)).await {
        match (health.reachable, health.latency) {
            (true, Some(latency)) => println!("source {}: up, ping {latency:?}", health.source),
            _ => println!("source {}: DOWN: {:?}", health.source, health.error),
        }
    }

    // Quotas, the query log and the metrics count the service's queries under these names.
    let session = engine.session("lookup-service", "service-example");
    let started = Instant::now();
    let statement = session.prepare(LATEST_ORDERS).await?;
    println!(
        "prepared once in {:?}; placeholders: {:?}",
        started.elapsed(),
        statement.parameter_types()?
    );

    // Every task gets a clone of the statement: clones share the plan.
    let tasks: Vec<_> = customers
        .iter()
        .map(|&customer| (customer, tokio::spawn(lookup(statement.clone(), customer))))
        .collect();
    for (customer, task) in tasks {
        match task.await? {
            Ok((batches, took)) => {
                println!("customer {customer} ({took:?}):");
                println!("{}", pretty_format_batches(&batches)?);
            }
            // A failed lookup is that request's error, not the service's end.
            Err(err) => eprintln!("customer {customer}: {} error: {err}", err.kind().as_str()),
        }
    }

    let metrics = engine.metrics();
    println!(
        "queries by outcome: {:?}; rows read per source: {:?}",
        metrics.queries, metrics.rows_by_source
    );
    Ok(())
}
