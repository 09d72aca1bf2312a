//! Latency and throughput of small queries in-process: point lookups on distinct keys (each one
//! goes to the database) and a repeated dashboard query (an aggregate the result cache answers
//! after its first run), each from 1, 2, 8 and 32 concurrent sessions, with the process's peak
//! RSS during each line. Prints p50/p99 latency and queries/s per database, and where a
//! lookup's time goes, planned from text and prepared once.
//!
//! `cargo bench --bench point_queries` (IBARROW_BENCH_QUERIES lookups per figure, default
//! 2000). Reads the local PostgreSQL of `scripts/test-services` (IBARROW_TEST_POSTGRES) and a
//! SQLite file it creates; the 100 000-row table `bench_points` is made once per database.
//! IBARROW_BENCH_JSON=<file> also appends each line to that file as JSON, for
//! `benches/query_chart.py` (which draws them beside `benches/server_queries.py`'s and
//! `benches/duckdb_queries.py`'s).

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

/// The process's peak RSS since [`reset_peak_rss`], in MB (Linux's VmHWM).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Starts a new peak-RSS window (Linux resets VmHWM to the current RSS on "5").
fn reset_peak_rss() {
    // Without it (another kernel) the peak is the process's so far, which only overstates.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// What one line measured: printed, and appended as JSON to IBARROW_BENCH_JSON when set.
struct Line<'a> {
    database: &'a str,
    work: &'a str,
    sessions: usize,
    samples: Vec<Duration>,
    elapsed: Duration,
}

fn report(line: Line) {
    let Line {
        database,
        work,
        sessions,
        mut samples,
        elapsed,
    } = line;
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    let rate = samples.len() as f64 / elapsed.as_secs_f64();
    let rss = peak_rss_mb();
    println!(
        "  {work}, {sessions:>2} sessions{:<w$} p50 {p50:>7.3} ms   p99 {p99:>7.3} ms   \
         {rate:>7.0} queries/s   peak RSS {:>4.0} MB",
        "",
        rss.unwrap_or(0.0),
        w = 24usize.saturating_sub(work.len()),
    );
    if let Ok(path) = std::env::var("IBARROW_BENCH_JSON") {
        let record = serde_json::json!({
            "engine": "ibarrow, in-process",
            "database": database,
            "work": work,
            "sessions": sessions,
            "queries": samples.len(),
            "p50_ms": p50,
            "p99_ms": p99,
            "queries_per_sec": rate,
            "peak_rss_mb": rss,
        });
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("IBARROW_BENCH_JSON {path}: {e}"));
        writeln!(file, "{record}").unwrap_or_else(|e| panic!("IBARROW_BENCH_JSON {path}: {e}"));
    }
}

/// `count` queries spread over `sessions` concurrent sessions: query n is `statement(n)` and
/// returns `rows` rows.
async fn concurrent(
    engine: &Engine,
    (database, work): (&str, &str),
    sessions: usize,
    count: usize,
    rows: usize,
    statement: impl Fn(usize) -> String + Clone + Send + 'static,
) {
    reset_peak_rss();
    let started = Instant::now();
    let per_session = count / sessions;
    let tasks = (0..sessions).map(|s| {
        let session = engine.session(&format!("bench{s}"), "bench");
        let statement = statement.clone();
        tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_session);
            for i in 0..per_session {
                let sql = statement(s * per_session + i);
                let at = Instant::now();
                assert_eq!(run(&session, &sql).await, rows, "{sql}");
                samples.push(at.elapsed());
            }
            samples
        })
    });
    let mut samples = Vec::new();
    for task in futures::future::join_all(tasks).await {
        samples.extend(task.expect("query task"));
    }
    report(Line {
        database,
        work,
        sessions,
        samples,
        elapsed: started.elapsed(),
    });
}

/// Point lookups on distinct keys: key `n * 7919 % ROWS + 1` for n from `first`, keys no
/// earlier line asked for, so none is a cache hit.
async fn lookups(
    engine: &Engine,
    (database, table): (&str, &str),
    sessions: usize,
    count: usize,
    first: usize,
) {
    let table = table.to_string();
    let statement = move |n: usize| {
        let key = ((first + n) as i64 * 7919) % ROWS + 1;
        format!("SELECT id, name FROM {table} WHERE id = {key}")
    };
    concurrent(
        engine,
        (database, "point lookups"),
        sessions,
        count,
        1,
        statement,
    )
    .await;
}

/// The statement of a dashboard tile: an aggregate over a tenth of the table, 100 rows.
fn dashboard_statement(table: &str) -> String {
    format!(
        "SELECT id % 100 AS bucket, count(*) AS n, min(name) AS first_name FROM {table} \
         WHERE id <= {} GROUP BY id % 100 ORDER BY bucket",
        ROWS / 10
    )
}

/// The dashboard query repeated by every session: after its first run, result cache hits.
async fn dashboard(
    engine: &Engine,
    (database, table): (&str, &str),
    sessions: usize,
    count: usize,
) {
    let sql = dashboard_statement(table);
    concurrent(
        engine,
        (database, "dashboard query"),
        sessions,
        count,
        100,
        move |_| sql.clone(),
    )
    .await;
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
async fn prepared_breakdown(
    engine: &Engine,
    (database, table): (&str, &str),
    count: usize,
    first: usize,
) {
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
    report(Line {
        database,
        work: "prepared lookups",
        sessions: 1,
        samples: totals,
        elapsed: started.elapsed(),
    });
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

async fn repeated(engine: &Engine, (database, table): (&str, &str), count: usize) {
    let session = engine.session("bench", "bench");
    let sql = format!("SELECT id, name FROM {table} WHERE id = 4242");
    assert_eq!(run(&session, &sql).await, 1);
    reset_peak_rss();
    let started = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let at = Instant::now();
        assert_eq!(run(&session, &sql).await, 1);
        samples.push(at.elapsed());
    }
    assert_eq!(engine.recent_queries()[0].cache, "hit");
    report(Line {
        database,
        work: "cached lookup",
        sessions: 1,
        samples,
        elapsed: started.elapsed(),
    });
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
    for (database, table) in [
        ("PostgreSQL", "pg.public.bench_points"),
        ("SQLite", "lite.main.bench_points"),
    ] {
        println!("{database}");
        for (line, sessions) in [1, 2, 8, 32].into_iter().enumerate() {
            lookups(&engine, (database, table), sessions, count, line * count).await;
        }
        breakdown(&engine, table, count, 4 * count).await;
        prepared_breakdown(&engine, (database, table), count, 5 * count).await;
        repeated(&engine, (database, table), count).await;
        for sessions in [1, 2, 8, 32] {
            dashboard(&engine, (database, table), sessions, count).await;
        }
    }
}
