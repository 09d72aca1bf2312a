//! Sources with replicas (src/config.rs `replicas`, providers/src/source/endpoints.rs): reads
//! spread over the endpoints, writes stay on the primary, a replica killed under load costs no
//! wrong row and at most the queries in flight, reads go on while the primary is down, a
//! recovered endpoint answers again after its breaker's probe, and a replica behind its
//! primary takes no reads.
//!
//! PostgreSQL: a private primary and a real streaming replica of it (tests/support/
//! pg_cluster.rs). MariaDB: the machine's server directly and through a TCP proxy that the test
//! kills (tests/support/proxy.rs). Expected answers come from the generator of the rows.

#[path = "../providers/tests/common/mod.rs"]
mod common;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/rows.rs"]
mod support_rows;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ibarrow::config::{BreakerConfig, RetryConfig};
use ibarrow::{Engine, SourceConfig};
use pg_cluster::PrivateCluster;
use proxy::Proxy;

/// Rows of the test table: `id` 1..=ROWS, `grp` = id % 7, `name` = `item <id>`.
const ROWS: i64 = 20_000;

/// What `GROUP_QUERY` must answer over ids 1..=rows: per group, its rows and their ids' sum.
fn expected_groups(rows: i64) -> Vec<String> {
    let mut groups: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for id in 1..=rows {
        let group = groups.entry(id % 7).or_default();
        group.0 += 1;
        group.1 += id;
    }
    groups
        .into_iter()
        .map(|(grp, (n, total))| format!("{grp}|{n}|{total}"))
        .collect()
}

const GROUP_QUERY: &str = "SELECT grp, count(*) AS n, sum(id) AS total FROM db.{schema}.{table} GROUP BY grp ORDER BY grp";

fn group_query(schema: &str, table: &str) -> String {
    GROUP_QUERY
        .replace("{schema}", schema)
        .replace("{table}", table)
}

/// The rows of `sql`, each as `a|b|c`.
async fn rows(engine: &Engine, sql: &str) -> ibarrow::Result<Vec<String>> {
    let batches = engine.sql(sql).await?.collect().await?;
    Ok(support_rows::batch_rows(&batches))
}

/// A primary with the test table and a streaming replica that has caught up with it.
fn primary_and_replica() -> (PrivateCluster, PrivateCluster) {
    let primary = PrivateCluster::start();
    primary.psql(&format!(
        "CREATE TABLE items (id integer PRIMARY KEY, grp integer NOT NULL, name text NOT NULL); \
         INSERT INTO items SELECT i, i % 7, 'item ' || i FROM generate_series(1, {ROWS}) AS i"
    ));
    let replica = PrivateCluster::replica_of(&primary);
    wait_for_replay(&replica, ROWS);
    (primary, replica)
}

/// Waits until the replica has replayed a table of `rows` rows.
fn wait_for_replay(replica: &PrivateCluster, rows: i64) {
    let started = Instant::now();
    loop {
        if replica.psql("SELECT count(*) FROM items") == rows.to_string() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the replica did not replay {rows} rows within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A source on `primary` with `replica`; quick breakers and retries so the test runs in
/// seconds.
fn source_config(primary: String, replicas: Vec<String>) -> SourceConfig {
    SourceConfig {
        connection_string: Some(primary),
        replicas: Some(replicas),
        connect_timeout_secs: Some(2),
        query_timeout_secs: Some(20),
        retry: Some(RetryConfig {
            attempts: Some(3),
            initial_backoff_ms: Some(50),
            max_backoff_ms: Some(200),
        }),
        breaker: Some(BreakerConfig {
            enabled: None,
            failure_rate: Some(0.5),
            window: Some(2),
            open_secs: Some(2),
        }),
        ..SourceConfig::default()
    }
}

/// [`source_config`] of a primary cluster and its replica.
fn pair_config(primary: &PrivateCluster, replica: &PrivateCluster) -> SourceConfig {
    source_config(
        primary.connection_string(),
        vec![replica.connection_string()],
    )
}

async fn engine_with(config: SourceConfig) -> Engine {
    Engine::builder()
        .source_config("db", config)
        .build()
        .await
        .expect("an engine on the source with replicas")
}

/// Routed calls that succeeded on each endpoint of source `db`, by label.
fn statements(engine: &Engine) -> BTreeMap<String, u64> {
    engine
        .source("db")
        .expect("source db")
        .endpoints()
        .iter()
        .map(|e| (e.label().to_string(), e.answered()))
        .collect()
}

fn grew(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, label: &str) -> u64 {
    after[label] - before[label]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_over_both_servers_and_writes_go_to_the_primary() {
    let (primary, replica) = primary_and_replica();
    let config = SourceConfig {
        read_from: Some("any".into()),
        balance: Some("round_robin".into()),
        writable: Some(true),
        partitions: Some(2),
        min_partition_rows: Some(1),
        ..pair_config(&primary, &replica)
    };
    let engine = engine_with(config).await;
    let query = group_query("public", "items");
    let expected = expected_groups(ROWS);
    let before = statements(&engine);
    for _ in 0..20 {
        assert_eq!(rows(&engine, &query).await.unwrap(), expected);
    }
    let after = statements(&engine);
    let (on_primary, on_replica) = (
        grew(&before, &after, "primary"),
        grew(&before, &after, "replica1"),
    );
    eprintln!("20 queries in turn: primary {on_primary} calls, replica1 {on_replica}");
    let total = on_primary + on_replica;
    assert!(
        on_primary * 10 >= total * 3 && on_replica * 10 >= total * 3,
        "round robin spreads calls: primary {on_primary}, replica1 {on_replica}"
    );

    // Each range partition of one scan starts on the next endpoint; EXPLAIN says where.
    let plan = rows(&engine, "EXPLAIN SELECT id, name FROM db.public.items")
        .await
        .unwrap()
        .join("\n");
    assert!(
        plan.contains("endpoints=pending (read_from=any, balance=round_robin)"),
        "{plan}"
    );
    let analyzed = rows(
        &engine,
        "EXPLAIN ANALYZE SELECT id, name FROM db.public.items",
    )
    .await
    .unwrap()
    .join("\n");
    let listed = analyzed
        .split("endpoints=[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no endpoints in {analyzed}"));
    let mut used: Vec<&str> = listed.split(", ").collect();
    used.sort();
    assert_eq!(used, ["primary", "replica1"], "{analyzed}");

    // A hot standby refuses writes, so the insert succeeding shows it ran on the primary.
    engine
        .sql("INSERT INTO db.public.items VALUES (20001, 0, 'written')")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        primary.psql("SELECT name FROM items WHERE id = 20001"),
        "written"
    );
    // A native statement that writes is sent to the primary as well.
    engine
        .sql("SELECT * FROM query('db', 'DELETE FROM items WHERE id = 20001 RETURNING id')")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        primary.psql("SELECT count(*) FROM items WHERE id = 20001"),
        "0"
    );
}

/// What one query of a load run ended with.
#[derive(Debug)]
enum Outcome {
    Right,
    Wrong(Vec<String>),
    Failed(String),
}

/// `workers` tasks running `query` until `until`; the outcomes with their start times.
async fn load(
    engine: &Engine,
    query: &str,
    expected: &[String],
    workers: usize,
    until: Instant,
) -> Vec<(Instant, Duration, Outcome)> {
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (engine, query, expected) = (engine.clone(), query.to_string(), expected.to_vec());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let outcome = match rows(&engine, &query).await {
                        Ok(rows) if rows == expected => Outcome::Right,
                        Ok(rows) => Outcome::Wrong(rows),
                        Err(err) => Outcome::Failed(err.to_string()),
                    };
                    outcomes.push((started, started.elapsed(), outcome));
                }
                outcomes
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a load worker"));
    }
    all
}

/// Four workers run `query` for `kill_after_ms` + 2 s while `kill` takes an endpoint down
/// after `kill_after_ms`; the outcomes, and when the kill began.
async fn load_and_kill(
    engine: &Engine,
    query: &str,
    expected: &[String],
    kill_after_ms: u64,
    kill: impl FnOnce(),
) -> (Vec<(Instant, Duration, Outcome)>, Instant) {
    let until = Instant::now() + Duration::from_millis(kill_after_ms + 2000);
    tokio::join!(load(engine, query, expected, LOAD_WORKERS, until), async {
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        let at = Instant::now();
        kill();
        at
    })
}

/// The tasks of a load run.
const LOAD_WORKERS: usize = 4;

/// No query of `outcomes` returned wrong rows; each that failed says which source and why,
/// within the query timeout; and at most the queries in flight when it happened (one per
/// worker) failed: a statement that already delivered rows is not moved.
fn check_load(outcomes: &[(Instant, Duration, Outcome)], killed_at: Instant) -> (usize, usize) {
    let mut failed = 0;
    for (started, took, outcome) in outcomes {
        match outcome {
            Outcome::Right => {}
            Outcome::Wrong(rows) => panic!("a query returned wrong rows: {rows:?}"),
            Outcome::Failed(message) => {
                failed += 1;
                eprintln!(
                    "a query started {:?} after the kill failed after {took:?}: {message}",
                    started.saturating_duration_since(killed_at)
                );
                assert!(
                    message.contains("`db`"),
                    "the error names the source: {message}"
                );
                assert!(
                    *took < Duration::from_secs(20),
                    "within the deadline: {took:?}"
                );
            }
        }
    }
    let total = outcomes.len();
    assert!(
        failed <= LOAD_WORKERS,
        "{failed} of {total} queries failed when one of two endpoints was killed"
    );
    (total, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_costs_no_rows_and_returns_after_its_probe() {
    let (primary, replica) = primary_and_replica();
    let config = SourceConfig {
        read_from: Some("any".into()),
        ..pair_config(&primary, &replica)
    };
    let engine = engine_with(config).await;
    let query = group_query("public", "items");
    let expected = expected_groups(ROWS);
    let (outcomes, killed) =
        load_and_kill(&engine, &query, &expected, 1500, || replica.kill()).await;
    let before = outcomes.iter().filter(|(s, _, _)| *s < killed).count();
    let (total, failed) = check_load(&outcomes, killed);
    eprintln!(
        "replica killed after {before} of {total} queries; {failed} failed; \
         calls per endpoint: {:?}",
        statements(&engine)
    );
    let health = &engine.health(Duration::from_secs(2)).await[0];
    assert!(health.reachable && health.degraded(), "{health:?}");
    assert!(!health.endpoints[1].reachable, "{health:?}");

    // Back: the replica restarts, and once its breaker lets a probe through, reads reach it.
    replica.pg_ctl("start");
    let back = Instant::now();
    let before = statements(&engine);
    loop {
        assert_eq!(rows(&engine, &query).await.unwrap(), expected);
        if grew(&before, &statements(&engine), "replica1") > 0 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "the replica took no reads within 20 s of its restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "the replica took reads again {:?} after its restart",
        back.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_while_the_primary_is_down_and_writes_fail_clearly() {
    let (primary, replica) = primary_and_replica();
    let config = SourceConfig {
        read_from: Some("primary".into()),
        writable: Some(true),
        ..pair_config(&primary, &replica)
    };
    let engine = engine_with(config).await;
    let query = group_query("public", "items");
    let expected = expected_groups(ROWS);
    for _ in 0..5 {
        assert_eq!(rows(&engine, &query).await.unwrap(), expected);
    }
    assert_eq!(statements(&engine)["replica1"], 0, "read_from = primary");

    primary.kill();
    let down = Instant::now();
    assert_eq!(rows(&engine, &query).await.unwrap(), expected);
    eprintln!(
        "the first read after the primary died answered in {:?}",
        down.elapsed()
    );
    for _ in 0..10 {
        assert_eq!(rows(&engine, &query).await.unwrap(), expected);
    }
    assert!(statements(&engine)["replica1"] >= 11);

    let err = engine
        .sql("INSERT INTO db.public.items VALUES (30001, 1, 'lost')")
        .await
        .unwrap()
        .collect()
        .await
        .expect_err("a write needs the primary");
    let message = err.to_string();
    eprintln!("a write with the primary down: {message}");
    assert!(message.contains("`db`"), "{message}");

    let health = &engine.health(Duration::from_secs(2)).await[0];
    assert!(health.reachable && health.degraded(), "{health:?}");
    assert!(!health.endpoints[0].reachable && health.endpoints[1].reachable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_its_primary_takes_no_reads_until_it_catches_up() {
    let (primary, replica) = primary_and_replica();
    // A transaction replayed, so the replica knows when it last caught up.
    primary.psql(&format!(
        "INSERT INTO items VALUES ({id}, {id} % 7, 'replayed')",
        id = ROWS + 1
    ));
    wait_for_replay(&replica, ROWS + 1);
    let config = SourceConfig {
        max_replica_lag_secs: Some(1),
        ..pair_config(&primary, &replica)
    };
    let engine = engine_with(config).await;
    let query = group_query("public", "items");
    let before = statements(&engine);
    for _ in 0..5 {
        assert_eq!(
            rows(&engine, &query).await.unwrap(),
            expected_groups(ROWS + 1)
        );
    }
    assert_eq!(
        grew(&before, &statements(&engine), "primary"),
        0,
        "read_from = replicas while the replica keeps up"
    );

    // Replay paused, the primary moves on: the replica falls behind.
    replica.psql("SELECT pg_wal_replay_pause()");
    primary.psql(&format!(
        "INSERT INTO items VALUES ({id}, {id} % 7, 'new')",
        id = ROWS + 2
    ));
    // Reads start lag readings (one is due every second here) until one sees the lag.
    let behind = Instant::now();
    loop {
        let _ = rows(&engine, &query).await.unwrap();
        let lag = engine.source("db").unwrap().endpoints()[1].lag();
        if matches!(lag, ibarrow::LagReading::Behind(lag) if lag > Duration::from_secs(1)) {
            break;
        }
        assert!(
            behind.elapsed() < Duration::from_secs(20),
            "no lag seen within 20 s: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = statements(&engine);
    for _ in 0..5 {
        assert_eq!(
            rows(&engine, &query).await.unwrap(),
            expected_groups(ROWS + 2),
            "the primary's rows, not the lagging replica's"
        );
    }
    assert_eq!(grew(&before, &statements(&engine), "replica1"), 0);
    let health = &engine.health(Duration::from_secs(2)).await[0];
    match health.endpoints[1].lag {
        Some(ibarrow::LagReading::Behind(lag)) => assert!(lag > Duration::from_secs(1)),
        other => panic!("the replica's lag should be read: {other:?}"),
    }

    replica.psql("SELECT pg_wal_replay_resume()");
    wait_for_replay(&replica, ROWS + 2);
    let caught_up = Instant::now();
    let before = statements(&engine);
    loop {
        assert_eq!(
            rows(&engine, &query).await.unwrap(),
            expected_groups(ROWS + 2)
        );
        if grew(&before, &statements(&engine), "replica1") > 0 {
            break;
        }
        assert!(
            caught_up.elapsed() < Duration::from_secs(10),
            "the replica took no reads within 10 s of catching up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_reads_balance_over_two_endpoints_and_survive_one_dying() {
    const MARIA_ROWS: i64 = 5_000;
    let table = common::OwnedTable::create(
        common::Profile::MariaDb,
        "replica_items",
        "id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, name VARCHAR(40) NOT NULL",
        |quoted| {
            vec![
                format!("SET SESSION max_recursive_iterations = {MARIA_ROWS}"),
                format!(
                    "INSERT INTO {quoted} (id, grp, name) WITH RECURSIVE seq(i) AS \
                     (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {MARIA_ROWS}) \
                     SELECT i, i % 7, CONCAT('item ', i) FROM seq"
                ),
            ]
        },
    );
    let proxy = Proxy::to("127.0.0.1:3306").await;
    let direct = table.db.connection_string.clone();
    let through_proxy = direct.replace("Port=3306", &format!("Port={}", proxy.port));
    assert_ne!(direct, through_proxy, "the test's MariaDB is on port 3306");
    let config = SourceConfig {
        read_from: Some("any".into()),
        balance: Some("round_robin".into()),
        // Not a replica: MariaDB reports no lag, so it stays in use.
        max_replica_lag_secs: Some(30),
        ..source_config(direct, vec![through_proxy])
    };
    let engine = engine_with(config).await;
    let query = group_query("ibarrow_test", &table.name);
    let expected = expected_groups(MARIA_ROWS);
    let before = statements(&engine);
    for _ in 0..10 {
        assert_eq!(rows(&engine, &query).await.unwrap(), expected);
    }
    let after = statements(&engine);
    assert!(
        grew(&before, &after, "primary") >= 3 && grew(&before, &after, "replica1") >= 3,
        "{before:?} → {after:?}"
    );
    let health = &engine.health(Duration::from_secs(2)).await[0];
    assert_eq!(
        health.endpoints[1].lag,
        Some(ibarrow::LagReading::Behind(Duration::ZERO)),
        "{health:?}"
    );

    let (outcomes, killed) = load_and_kill(&engine, &query, &expected, 1000, || proxy.kill()).await;
    let (total, failed) = check_load(&outcomes, killed);
    eprintln!(
        "MariaDB: {total} queries, {failed} failed; calls per endpoint: {:?}",
        statements(&engine)
    );
    let after_kill: Vec<_> = outcomes
        .iter()
        .filter(|(started, _, _)| *started > killed + Duration::from_millis(200))
        .collect();
    assert!(!after_kill.is_empty());
    assert!(
        after_kill
            .iter()
            .all(|(_, _, outcome)| matches!(outcome, Outcome::Right)),
        "queries started after the proxy died all answer: {after_kill:?}"
    );
}
