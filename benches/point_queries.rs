//! Latency and throughput of small queries in-process: point lookups on distinct keys (each one
//! goes to the database), the same query repeated with the result cache (each one a hit), and
//! point lookups from 1, 2, 8 and 32 concurrent sessions. Prints p50/p99 latency and
//! queries/s per database, and where a lookup's time goes, planned from text and prepared once.
//!
//! `cargo bench --bench point_queries` (IBARROW_BENCH_QUERIES lookups per figure, default
//! 2000). Reads the local PostgreSQL of `scripts/test-services` (IBARROW_TEST_POSTGRES) and a
//! SQLite file it creates; the 100 000-row table `bench_points` is made once per database.

use std::time::{Duration, Instant};

use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;
use ibarrow::{Config, Engine, Session};
use odbc_api::ConnectionOptions;

const ROWS: i64 = 100_000;

fn execute(connection_string: &str, statements: &[&str]) {
    let env = odbc_api::environment().expect("ODBC environment");
    let conn = env
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
        .expect("connect (run scripts/test-services first)");
    for sql in statements {
        conn.execute(sql, (), None)
            .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    }
}

async fn run(session: &Session, sql: &str) -> usize {
    let frame = session.sql(sql).await.expect("plan");
    let batches: Vec<_> = session
        .execute(frame, sql)
        .await
        .expect("run")
        .try_collect()
        .await
        .expect("rows");
    batches.iter().map(|b| b.num_rows()).sum()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn report(label: &str, mut samples: Vec<Duration>, elapsed: Duration) {
    samples.sort();
    println!(
        "{label:<34} p50 {:>7.3} ms   p99 {:>7.3} ms   {:>7.0} queries/s",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len() as f64 / elapsed.as_secs_f64()
    );
}

/// `count` lookups spread over `sessions` concurrent sessions, key `n * 7919 % ROWS + 1` for
/// n from `first`: keys no earlier line asked for, so none is a cache hit.
async fn lookups(engine: &Engine, table: &str, sessions: usize, count: usize, first: usize) {
    let started = Instant::now();
    let per_session = count / sessions;
    let tasks = (0..sessions).map(|s| {
        let session = engine.session(&format!("bench{s}"), "bench");
        let table = table.to_string();
        tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_session);
            for i in 0..per_session {
                let key = ((first + s * per_session + i) as i64 * 7919) % ROWS + 1;
                let sql = format!("SELECT id, name FROM {table} WHERE id = {key}");
                let at = Instant::now();
                assert_eq!(run(&session, &sql).await, 1);
                samples.push(at.elapsed());
            }
            samples
        })
    });
    let mut samples = Vec::new();
    for task in futures::future::join_all(tasks).await {
        samples.extend(task.expect("lookup task"));
    }
    report(
        &format!("  distinct keys, {sessions:>2} sessions"),
        samples,
        started.elapsed(),
    );
}

/// Where one point lookup's time goes, single session: SQL to logical plan (parse, analyze,
/// access checks, cache look-up), to physical plan (optimize, scan statements), and running it
/// (pool, the database, the fetch). Keys from `first` on, none cached.
async fn breakdown(engine: &Engine, table: &str, count: usize, first: usize) {
    let session = engine.session("bench", "bench");
    let (mut logical, mut physical, mut running) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        let key = ((first + i) as i64 * 7919) % ROWS + 1;
        let sql = format!("SELECT id, name FROM {table} WHERE id = {key}");
        let at = Instant::now();
        let frame = session.sql(&sql).await.expect("plan");
        logical.push(at.elapsed());
        let (plan_time, run_time) = physical_and_run(&session, frame, &sql).await;
        physical.push(plan_time);
        running.push(run_time);
    }
    print_breakdown("one lookup", logical, physical, running);
}

/// [`breakdown`] of a statement prepared once: each run binds its key (instead of parsing,
/// checking and planning the text), then plans physically and runs.
async fn prepared_breakdown(engine: &Engine, table: &str, count: usize, first: usize) {
    let session = engine.session("bench", "bench");
    let sql = format!("SELECT id, name FROM {table} WHERE id = $1");
    let prepared = session.prepare(&sql).await.expect("prepare");
    let (mut bound, mut physical, mut running) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    let mut totals = Vec::with_capacity(count);
    for i in 0..count {
        let key = ((first + i) as i64 * 7919) % ROWS + 1;
        let at = Instant::now();
        let frame = prepared
            .bind(vec![ScalarValue::Int64(Some(key))])
            .await
            .expect("bind");
        bound.push(at.elapsed());
        let (plan_time, run_time) = physical_and_run(&session, frame, &sql).await;
        physical.push(plan_time);
        running.push(run_time);
        totals.push(at.elapsed());
    }
    print_breakdown("one prepared lookup", bound, physical, running);
    report(
        "  prepared, distinct keys, 1 session",
        totals,
        started.elapsed(),
    );
}

async fn physical_and_run(
    session: &Session,
    frame: datafusion::dataframe::DataFrame,
    sql: &str,
) -> (Duration, Duration) {
    let at = Instant::now();
    let query = session.physical_plan(frame).await.expect("physical plan");
    let planned = at.elapsed();
    let at = Instant::now();
    let batches: Vec<_> = session
        .execute_plan(query, sql)
        .expect("run")
        .try_collect()
        .await
        .expect("rows");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    (planned, at.elapsed())
}

fn print_breakdown(
    what: &str,
    logical: Vec<Duration>,
    physical: Vec<Duration>,
    running: Vec<Duration>,
) {
    let median = |mut samples: Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2].as_secs_f64() * 1000.0
    };
    println!(
        "  {what}, median: {:.3} ms to a logical plan, {:.3} ms to a physical plan, \
         {:.3} ms running",
        median(logical),
        median(physical),
        median(running)
    );
}

async fn repeated(engine: &Engine, table: &str, count: usize) {
    let session = engine.session("bench", "bench");
    let sql = format!("SELECT id, name FROM {table} WHERE id = 4242");
    assert_eq!(run(&session, &sql).await, 1);
    let started = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let at = Instant::now();
        assert_eq!(run(&session, &sql).await, 1);
        samples.push(at.elapsed());
    }
    assert_eq!(engine.recent_queries()[0].cache, "hit");
    report(
        "  one query repeated, cache hits",
        samples,
        started.elapsed(),
    );
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("IBARROW_BENCH_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let pg = std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let lite_path = std::env::temp_dir().join("ibarrow_bench_points.sqlite");
    let lite = format!("Driver={{SQLite3}};Database={};", lite_path.display());
    execute(
        &pg,
        &[
            "DROP TABLE IF EXISTS bench_points",
            &format!(
                "CREATE TABLE bench_points AS SELECT g AS id, 'name ' || g AS name \
                 FROM generate_series(1, {ROWS}) g"
            ),
            "ALTER TABLE bench_points ADD PRIMARY KEY (id)",
            "ANALYZE bench_points",
        ],
    );
    execute(
        &lite,
        &[
            "DROP TABLE IF EXISTS bench_points",
            "CREATE TABLE bench_points (id INTEGER PRIMARY KEY, name TEXT)",
            &format!(
                "INSERT INTO bench_points WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL \
                 SELECT g + 1 FROM s WHERE g < {ROWS}) SELECT g, 'name ' || g FROM s"
            ),
        ],
    );
    let config = format!(
        "[engine]\nresult_cache = {{ ttl_secs = 600 }}\npool_size = 32\n\
         [sources.pg]\nconnection_string = '{pg}'\n[sources.lite]\nconnection_string = '{lite}'\n"
    );
    let engine = Engine::from_config(Config::parse(&config, "bench").expect("config"))
        .await
        .expect("engine");
    println!("{count} queries per line, in-process");
    for (name, table) in [
        ("PostgreSQL", "pg.public.bench_points"),
        ("SQLite", "lite.main.bench_points"),
    ] {
        println!("{name}");
        for (line, sessions) in [1, 2, 8, 32].into_iter().enumerate() {
            lookups(&engine, table, sessions, count, line * count).await;
        }
        breakdown(&engine, table, count, 4 * count).await;
        prepared_breakdown(&engine, table, count, 5 * count).await;
        repeated(&engine, table, count).await;
    }
}
