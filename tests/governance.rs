//! What the engine refuses before planning, end to end on a SQLite source through its ODBC
//! driver: text over the size limit, control characters, invalid UTF-8, several statements
//! in one call, and statements that are neither queries nor INSERTs.

#[path = "../providers/tests/common/mod.rs"]
mod common;
#[path = "support/background.rs"]
mod support;

use common::Profile;
use ibarrow::{Config, Engine, SourceConfig};

async fn engine_with_limit(max_sql_bytes: Option<usize>) -> (Engine, common::TestDb) {
    let db = Profile::Sqlite.open();
    db.execute(&[
        "CREATE TABLE t (x INTEGER)",
        "INSERT INTO t VALUES (1), (2), (3)",
    ]);
    let mut config = Config::default();
    config.engine.max_sql_bytes = max_sql_bytes;
    config.sources.insert(
        "lite".into(),
        SourceConfig {
            connection_string: Some(db.connection_string.clone()),
            ..SourceConfig::default()
        },
    );
    (Engine::from_config(config).await.unwrap(), db)
}

async fn refusal(engine: &Engine, sql: &str) -> String {
    match engine.sql(sql).await {
        Ok(_) => panic!("`{sql}` was accepted"),
        Err(err) => {
            assert!(
                matches!(err, ibarrow::Error::InputRejected(_)),
                "`{sql}`: {err}"
            );
            err.to_string()
        }
    }
}

#[tokio::test]
async fn the_size_limit_holds_at_and_over_its_boundary() {
    let (engine, _db) = engine_with_limit(Some(64)).await;
    let at_limit = format!("{:<64}", "SELECT sum(x) AS s FROM lite.main.t");
    assert_eq!(at_limit.len(), 64);
    let batches = engine
        .sql(&at_limit)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(batches[0].num_rows(), 1);
    let over = format!("{at_limit} ");
    let err = refusal(&engine, &over).await;
    assert!(
        err.contains("65 bytes") && err.contains("limit of 64"),
        "{err}"
    );
}

#[tokio::test]
async fn control_characters_and_invalid_utf8_are_refused() {
    let (engine, _db) = engine_with_limit(None).await;
    let err = refusal(&engine, "SELECT x FROM lite.main.t WHERE x = 1\u{0}").await;
    assert!(err.contains("U+0000"), "{err}");
    assert!(engine.sql("SELECT x\n\tFROM lite.main.t\r\n").await.is_ok());
    let err = engine
        .sql_bytes(b"SELECT '\xc3' AS broken")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid UTF-8 (at byte 8)"), "{err}");
}

#[tokio::test]
async fn one_statement_per_call_unless_a_script_is_asked_for() {
    let (engine, _db) = engine_with_limit(None).await;
    let two = "SELECT 1 AS a; SELECT x FROM lite.main.t";
    let err = refusal(&engine, two).await;
    assert!(
        err.contains("one statement per call") && err.contains("holds 2"),
        "{err}"
    );
    let frames = engine.script(two).await.unwrap();
    assert_eq!(frames.len(), 2);
    let mut rows = Vec::new();
    for frame in frames {
        rows.push(frame.count().await.unwrap());
    }
    assert_eq!(rows, [1, 3]);
}

#[tokio::test]
async fn only_queries_run() {
    let (engine, db) = engine_with_limit(None).await;
    for sql in [
        "SELECT x FROM lite.main.t",
        "WITH y AS (SELECT x FROM lite.main.t) SELECT * FROM y",
        "EXPLAIN SELECT x FROM lite.main.t",
        "SHOW TABLES",
        "DESCRIBE lite.main.t",
    ] {
        let frame = engine
            .sql(sql)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
        frame
            .collect()
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
    for sql in [
        "DELETE FROM lite.main.t",
        "UPDATE lite.main.t SET x = 0",
        "DROP TABLE lite.main.t",
        "CREATE TABLE local_copy AS SELECT * FROM lite.main.t",
        "CREATE VIEW v AS SELECT 1",
        "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/ibarrow-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
        "EXPLAIN DELETE FROM lite.main.t",
    ] {
        let err = refusal(&engine, sql).await;
        assert!(
            err.contains("is refused: ibarrow runs queries"),
            "{sql}: {err}"
        );
    }
    // INSERT is planned, and refused by the table: the source is not writable.
    let insert = "INSERT INTO lite.main.t VALUES (4)";
    let err = match engine.sql(insert).await {
        Ok(frame) => ibarrow::Error::from(frame.collect().await.expect_err(insert)),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ibarrow::ErrorKind::Input, "{err}");
    assert!(err.to_string().contains("is read-only"), "{err}");
    // EXPLAIN shows the refusal as its physical plan.
    let explained = engine
        .sql(&format!("EXPLAIN {insert}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let explained = datafusion::arrow::util::pretty::pretty_format_batches(&explained)
        .unwrap()
        .to_string();
    assert!(explained.contains("is read-only"), "{explained}");
    // Nothing reached the database: still its three rows.
    let rows = engine
        .sql("SELECT x FROM lite.main.t")
        .await
        .unwrap()
        .count()
        .await;
    assert_eq!(rows.unwrap(), 3);
    drop(db);
}

#[tokio::test]
async fn rate_limits_hold_within_a_few_percent_over_a_bounded_run() {
    let mut config = Config::default();
    config.engine.rate_limits = Some(ibarrow::RateLimitConfig {
        per_user_per_minute: Some(120),
        ..Default::default()
    });
    let engine = Engine::from_config(config).await.unwrap();
    let alice = engine.session("alice", "tests");
    let started = std::time::Instant::now();
    let run = std::time::Duration::from_secs(3);
    let (mut allowed, mut refused) = (0u32, 0u32);
    while started.elapsed() < run {
        match alice.sql("SELECT 1 AS one").await {
            Ok(_) => allowed += 1,
            Err(ibarrow::Error::RateLimited {
                message,
                retry_after,
            }) => {
                refused += 1;
                assert!(
                    retry_after <= std::time::Duration::from_millis(500),
                    "{message}"
                );
                assert!(message.contains("user `alice`") && message.contains("retry in"));
                // Keep trying, without flooding the log of the test running beside this one.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Err(other) => panic!("{other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A burst of 120, then one query every 0.5 s.
    let expected = 120.0 + elapsed / 0.5;
    let deviation = (f64::from(allowed) - expected).abs() / expected;
    eprintln!(
        "rate limit 120/min over {elapsed:.2} s: {allowed} allowed (expected {expected:.1}, \
         {:.1} % off), {refused} refused",
        deviation * 100.0
    );
    assert!(
        deviation < 0.03,
        "{allowed} allowed, expected {expected:.1}"
    );
    assert!(refused > 0);
    // Another user has a quota of their own.
    assert!(engine.session("bob", "tests").sql("SELECT 1").await.is_ok());
}

const PASSWORD: &str = "Sekr1t-Pa55";
const LITERAL: &str = "lit3ral-s3cret";

/// One test owns the process's log subscriber (JSON, as `--log-format json` writes it) and
/// checks, over a known mix of queries: exact counters, one JSON object per log line with
/// the query's identity, and neither the password nor a masked literal anywhere in the
/// logs, the errors or EXPLAIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exact_and_logs_errors_and_plans_keep_secrets() {
    use futures::TryStreamExt;
    let log = support::CapturedLog::default();
    let subscriber =
        ibarrow::logging::subscriber(ibarrow::logging::LogFormat::Json, "info", log.clone())
            .unwrap();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let db = Profile::Postgres.open();
    let table = common::unique_name("governed");
    let _guard = db.create_table(&table, "id INTEGER PRIMARY KEY, name VARCHAR(40)");
    db.execute(&[&format!(
        "INSERT INTO {table} SELECT g, 'name ' || g FROM generate_series(1, 50) g"
    )]);
    // The local PostgreSQL trusts 127.0.0.1, so any password logs in: a known one to look for.
    let connection_string = db
        .connection_string
        .replace("Pwd=ibarrow", &format!("Pwd={PASSWORD}"));
    assert!(connection_string.contains(PASSWORD));
    let mut config = Config::default();
    config.engine.log_mask_literals = Some(true);
    config.sources.insert(
        "pg".into(),
        SourceConfig {
            connection_string: Some(connection_string),
            ..SourceConfig::default()
        },
    );
    let engine = Engine::from_config(config).await.unwrap();
    let session = engine.session("carol", "governance-test");

    let mut texts = Vec::new();
    let mut remote_rows = 0u64;
    for limit in [10, 20, 30] {
        let sql = format!(
            "SELECT name FROM pg.public.{table} WHERE name <> '{LITERAL}' AND id <= {limit}"
        );
        let batches: Vec<_> = session
            .stream(&sql)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        remote_rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        let plan = engine
            .sql(&format!("EXPLAIN {sql}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        texts.push(
            datafusion::arrow::util::pretty::pretty_format_batches(&plan)
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remote_rows, 60);
    // Fails while running, in the database.
    let failing = "SELECT * FROM query('pg', 'SELECT 1 / (id - id) AS boom FROM public.{t}')"
        .replace("{t}", &table);
    let stream = session.stream(&failing).await.unwrap();
    let err = stream.try_collect::<Vec<_>>().await.unwrap_err();
    texts.push(err.to_string());
    // Refused before planning.
    let refused = session
        .sql(&format!("DROP TABLE pg.public.{table}"))
        .await
        .unwrap_err();
    texts.push(refused.to_string());

    let metrics = engine.metrics();
    assert_eq!(metrics.queries.get("ok"), Some(&3));
    assert_eq!(metrics.queries.get("error"), Some(&1));
    assert_eq!(metrics.queries.get("refused"), Some(&1));
    assert_eq!(metrics.errors.get("input"), Some(&1));
    assert_eq!(metrics.errors.get("sql"), Some(&1));
    // The failing statement delivered no row.
    assert_eq!(metrics.rows_by_source.get("pg"), Some(&60));
    assert!(metrics.bytes_by_source.get("pg").is_some_and(|&b| b > 0));
    assert_eq!(metrics.duration_count, 4);
    let prometheus = metrics.to_prometheus();
    assert!(
        prometheus.contains("ibarrow_queries_total{outcome=\"ok\"} 3"),
        "{prometheus}"
    );
    assert!(
        prometheus.contains("ibarrow_source_rows_total{source=\"pg\"} 60"),
        "{prometheus}"
    );

    let logged = log.text();
    let mut finished = 0;
    for line in logged.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
        if event["message"] == "query finished" {
            finished += 1;
            assert_eq!(event["user"], "carol", "{line}");
            assert_eq!(event["client"], "governance-test", "{line}");
            assert!(
                event["query_id"].is_u64() && event["duration_ms"].is_u64(),
                "{line}"
            );
            // The scan reserves the batches it holds in the query's memory pool: at least the
            // bytes it read (each of these results is one batch).
            let peak = event["peak_memory_bytes"].as_u64().unwrap_or(0);
            if event["outcome"] == "ok" {
                let read: u64 = event["sources"]
                    .as_str()
                    .and_then(|s| s.strip_suffix(" bytes"))
                    .and_then(|s| s.rsplit('/').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                assert!(read > 0 && peak >= read, "{line}");
            }
        }
    }
    assert_eq!(finished, 4, "{logged}");
    assert!(logged.contains("\"outcome\":\"refused\""), "{logged}");
    assert!(!logged.contains(PASSWORD), "password in the log:\n{logged}");
    assert!(!logged.contains(LITERAL), "literal in the log:\n{logged}");
    for text in &texts {
        assert!(!text.contains(PASSWORD), "password in:\n{text}");
    }
    eprintln!(
        "a JSON log line: {}",
        logged
            .lines()
            .find(|l| l.contains("query finished"))
            .unwrap_or("")
    );
    eprintln!("{prometheus}");
}
