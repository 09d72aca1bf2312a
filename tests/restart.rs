//! Server restarts between and during queries. They run on a private PostgreSQL cluster
//! (initdb in a temporary folder, its own port) so that restarting it cannot disturb the
//! tests that share the machine's servers.

use std::time::{Duration, Instant};

use ibarrow::{Engine, SourceConfig};

#[path = "support/pg_cluster.rs"]
mod pg_cluster;
#[path = "support/background.rs"]
mod support;

use pg_cluster::PrivateCluster;

async fn engine_on(cluster: &PrivateCluster) -> Engine {
    let config = SourceConfig {
        connection_string: Some(cluster.connection_string()),
        ..SourceConfig::default()
    };
    Engine::builder()
        .source_config("db", config)
        .build()
        .await
        .expect("an engine on the private cluster")
}

async fn answer(engine: &Engine) -> ibarrow::Result<usize> {
    let sql = "SELECT * FROM query('db', 'SELECT 42 AS n')";
    let batches = engine.sql(sql).await?.collect().await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// Runs queries until one answers; how long that took.
async fn recovery_time(engine: &Engine, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match answer(engine).await {
            Ok(1) => return started.elapsed(),
            Ok(rows) => panic!("the probe returned {rows} rows"),
            Err(err) if started.elapsed() < limit => {
                eprintln!("not answering yet: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("no answer within {limit:?} of the restart: {err}"),
        }
    }
}

/// Connections the server holds for ibarrow, counted by the server itself.
async fn server_sessions(engine: &Engine) -> usize {
    let sql = "SELECT * FROM query('db', 'SELECT count(*)::int AS n FROM pg_stat_activity \
               WHERE usename = ''ibarrow'' AND backend_type = ''client backend''')";
    let batches = engine.sql(sql).await.unwrap().collect().await.unwrap();
    let text =
        datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_queries_is_survived() {
    let cluster = PrivateCluster::start();
    let engine = engine_on(&cluster).await;
    assert_eq!(answer(&engine).await.unwrap(), 1);
    cluster.pg_ctl("restart");
    // The pooled connection died with the server; the next query must not notice.
    let started = Instant::now();
    assert_eq!(answer(&engine).await.unwrap(), 1);
    eprintln!(
        "restart between queries: the next query answered in {:?}",
        started.elapsed()
    );
    let health = &engine.health(Duration::from_secs(5)).await[0];
    assert!(health.reachable && health.in_use == 0, "{health:?}");
    let pool_max = health.pool_max;
    // Nothing leaked: the server sees at most the pool's connections (the probe's included).
    let sessions = server_sessions(&engine).await;
    assert!((1..=pool_max).contains(&sessions), "{sessions} sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_query_ends_it_and_the_next_one_answers() {
    let cluster = PrivateCluster::start();
    let engine = engine_on(&cluster).await;
    let running = support::run_in_background(
        &engine,
        "SELECT * FROM query('db', 'SELECT 1 AS n FROM pg_sleep(3)')",
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.pg_ctl("restart");
    let (outcome, took) = running.await.unwrap();
    // Either the read was retried on a fresh connection once the server was back, or it
    // failed with a connection error; it never hangs or returns a wrong result.
    match &outcome {
        Ok(batches) => assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1),
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.contains("source `db`") && !text.contains("Pwd=unused"),
                "{text}"
            );
        }
    }
    eprintln!(
        "restart during a query: it ended after {took:?} ({})",
        if outcome.is_ok() { "retried" } else { "error" }
    );
    let recovered = recovery_time(&engine, Duration::from_secs(5)).await;
    eprintln!("restart during a query: next query answered after {recovered:?}");
    let health = &engine.health(Duration::from_secs(5)).await[0];
    assert!(health.reachable && health.in_use == 0, "{health:?}");
    let sessions = server_sessions(&engine).await;
    assert!(
        (1..=health.pool_max).contains(&sessions),
        "{sessions} sessions"
    );
}
