//! Applying a new configuration to a running engine (`Engine::reload`, src/engine/reload.rs)
//! on SQLite files through the SQLite ODBC driver: sources added, changed and removed; a
//! statement planned before a reload finishes on the source it was planned with; a refused
//! configuration changes nothing; limits apply to the next statements; and under a steady load
//! of queries, reloads make none of them fail or answer wrong.

#[path = "../providers/tests/common/mod.rs"]
mod common;
#[path = "support/rows.rs"]
mod rows;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{Profile, TestDb};
use ibarrow::{Config, Engine, ErrorKind};
use rows::{rows, rows_of};

/// A SQLite database holding `items` with `count` rows labelled with `label`.
fn database(label: &str, count: usize) -> TestDb {
    let db = Profile::Sqlite.open();
    let mut statements =
        vec!["CREATE TABLE items (id INTEGER PRIMARY KEY, label VARCHAR(10))".to_string()];
    statements.extend((1..=count).map(|id| format!("INSERT INTO items VALUES ({id}, '{label}')")));
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    db.execute(&refs);
    db
}

fn source(name: &str, db: &TestDb, extra: &str) -> String {
    format!(
        "[sources.{name}]\nconnection_string = \"{}\"\n{extra}\n",
        db.connection_string.replace('\\', "\\\\")
    )
}

fn config(text: &str) -> Config {
    Config::parse(text, "test").unwrap_or_else(|e| panic!("{text}: {e}"))
}

const COUNT_A: &str = "SELECT count(*) AS n, min(label) AS label FROM a.main.items";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_added_changed_and_removed() {
    let first = database("first", 3);
    let second = database("second", 5);
    let engine = Engine::from_config(config(&source("a", &first, "")))
        .await
        .unwrap();
    let session = engine.session("u", "test");
    assert_eq!(rows(&session, COUNT_A).await, ["3|first"]);

    let report = engine
        .reload(&config(&format!(
            "{}{}",
            source("a", &first, ""),
            source("b", &second, "")
        )))
        .await
        .unwrap();
    assert_eq!(report.added, ["b"]);
    assert!(
        report.changed.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        rows(&session, "SELECT count(*) FROM b.main.items").await,
        ["5"]
    );

    // Planned before `b` goes, run after: it finishes on the source it was planned with.
    let planned_sql = "SELECT count(*) FROM b.main.items";
    let planned = session.sql(planned_sql).await.unwrap();

    let report = engine
        .reload(&config(&source("a", &second, "")))
        .await
        .unwrap();
    assert_eq!(report.changed, ["a"]);
    assert_eq!(report.removed, ["b"]);
    assert_eq!(rows(&session, COUNT_A).await, ["5|second"]);
    assert_eq!(rows_of(&session, planned, planned_sql).await, ["5"]);
    assert_eq!(engine.source_names(), ["a"]);
    let err = session
        .sql("SELECT count(*) FROM b.main.items")
        .await
        .unwrap_err();
    assert!(err.to_string().contains('b'), "{err}");

    // The same file again changes nothing.
    let report = engine
        .reload(&config(&source("a", &second, "")))
        .await
        .unwrap();
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(report.to_string(), "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_configuration_changes_nothing() {
    let first = database("first", 2);
    let engine = Engine::from_config(config(&source("a", &first, "")))
        .await
        .unwrap();
    let session = engine.session("u", "test");

    // A new source that cannot be opened: named in the error, nothing applied (not even the
    // rate limit that came with it).
    let broken = format!(
        "[engine]\nrate_limits = {{ per_user_per_minute = 1 }}\n{}\
         [sources.ghost]\nconnection_string = \"Driver={{No Such Driver}};Database=x\"\n",
        source("a", &first, "")
    );
    let err = engine.reload(&config(&broken)).await.unwrap_err();
    assert!(err.to_string().contains("[sources.ghost]"), "{err}");
    assert_eq!(engine.source_names(), ["a"]);
    for _ in 0..3 {
        assert_eq!(rows(&session, COUNT_A).await, ["2|first"]);
    }

    // Roles naming a role that does not exist: refused too.
    let broken = format!(
        "{}[users.u]\nroles = [\"nobody\"]\n",
        source("a", &first, "")
    );
    let err = engine.reload(&config(&broken)).await.unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
    assert_eq!(rows(&session, COUNT_A).await, ["2|first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_roles_apply_to_the_next_statements() {
    let first = database("first", 2);
    let engine = Engine::from_config(config(&source("a", &first, "")))
        .await
        .unwrap();
    let session = engine.session("u", "test");

    let limited = format!(
        "[engine]\nrate_limits = {{ per_user_per_minute = 2 }}\nmemory_limit = \"1GB\"\n{}",
        source("a", &first, "")
    );
    let report = engine.reload(&config(&limited)).await.unwrap();
    assert!(report.limits_changed, "{report:?}");
    assert_eq!(report.needs_restart, ["[engine] memory_limit"]);
    assert!(session.sql(COUNT_A).await.is_ok());
    assert!(session.sql(COUNT_A).await.is_ok());
    let err = session.sql(COUNT_A).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimit, "{err}");

    let roles = format!(
        "{}[roles.none]\nread = [\"a.main.nothing\"]\n[users.u]\nroles = [\"none\"]\n",
        source("a", &first, "")
    );
    let report = engine.reload(&config(&roles)).await.unwrap();
    assert!(report.roles_changed && report.limits_changed, "{report:?}");
    let err = session.sql(COUNT_A).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");

    engine
        .reload(&config(&source("a", &first, "")))
        .await
        .unwrap();
    assert_eq!(rows(&session, COUNT_A).await, ["2|first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_fail_no_query() {
    let first = database("first", 40);
    let other = database("other", 7);
    let engine = Engine::from_config(config(&source("a", &first, "pool_size = 2")))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..3 {
        let session = engine.session(&format!("worker{worker}"), "test");
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = async {
                    let frame = session.sql(COUNT_A).await?;
                    let stream = session.execute(frame, COUNT_A).await?;
                    let batches: Vec<_> = futures::TryStreamExt::try_collect(stream).await?;
                    Ok::<_, ibarrow::Error>(common::table_text(&batches))
                };
                match answer.await {
                    Ok(text) if text.contains("40") && text.contains("first") => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(text) => failures.push(format!("wrong answer: {text}")),
                    Err(err) => failures.push(err.to_string()),
                }
            }
            failures
        }));
    }
    // Each reload changes `a` (its pool) and adds or removes `b`.
    for round in 0..12 {
        let text = if round % 2 == 0 {
            format!(
                "{}{}",
                source("a", &first, "pool_size = 3"),
                source("b", &other, "")
            )
        } else {
            source("a", &first, "pool_size = 2")
        };
        let report = engine.reload(&config(&text)).await.unwrap();
        assert_eq!(report.changed, ["a"], "{report:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let failures = worker.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert!(
        answered.load(Ordering::Relaxed) > 12,
        "the load ran too little to tell"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_query_follows_a_reload() {
    let first = database("first", 3);
    let second = database("second", 4);
    let engine = Engine::from_config(config(&source("a", &first, "")))
        .await
        .unwrap();
    let session = engine.session("u", "test");
    let query = session
        .table("a.main.items")
        .await
        .unwrap()
        .select_columns(&["label"])
        .unwrap();
    let labels = |batches: Vec<datafusion::arrow::array::RecordBatch>| common::table_text(&batches);
    assert!(labels(query.clone().collect().await.unwrap()).contains("first"));

    // The source now points at another database: the query built before reads the new one.
    engine
        .reload(&config(&source("a", &second, "")))
        .await
        .unwrap();
    let text = labels(query.clone().collect().await.unwrap());
    assert!(text.contains("second") && !text.contains("first"), "{text}");

    // The grants in force when it runs apply, not those of when it was built.
    let denied = format!(
        "{}[roles.none]\nread = [\"a.main.nothing\"]\n[users.u]\nroles = [\"none\"]\n",
        source("a", &second, "")
    );
    engine.reload(&config(&denied)).await.unwrap();
    let err = query.clone().collect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");

    // A source that went away is named.
    engine
        .reload(&config(&source("b", &second, "")))
        .await
        .unwrap();
    let err = query.collect().await.unwrap_err();
    assert!(err.to_string().contains("no source `a`"), "{err}");
}
