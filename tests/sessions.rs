//! Native statements run by an engine session (as the Python 0.1 API runs every query), on
//! SQLite through its ODBC driver. Apart from tests/governance.rs, whose log test owns the
//! process's log subscriber and counts every query of its process.

#[path = "../providers/tests/common/mod.rs"]
mod common;

use common::Profile;
use ibarrow::{Config, Engine};

/// A native statement run by a session (as the Python 0.1 API runs every query) meets the
/// session's rate limit and is counted like any other query; a source connected elsewhere
/// joins the engine by `register_connected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_statements_of_a_session_are_limited_and_counted() {
    use futures::TryStreamExt;
    let db = Profile::Sqlite.open();
    db.execute(&[
        "CREATE TABLE t (x INTEGER)",
        "INSERT INTO t VALUES (1), (2), (3)",
    ]);
    let mut config = Config::default();
    config.engine.rate_limits = Some(ibarrow::RateLimitConfig {
        per_user_per_minute: Some(2),
        ..Default::default()
    });
    let engine = Engine::from_config(config).await.unwrap();
    let source = ibarrow::OdbcSource::connect(
        "odbc",
        &db.connection_string,
        ibarrow::SourceOptions::default(),
    )
    .await
    .unwrap();
    engine.register_connected("odbc", source).await.unwrap();
    let session = engine.session("dave", "python-0.1");

    // A result repeating a column name, which a logical plan would refuse.
    let sql = "SELECT x, x FROM t ORDER BY x";
    for _ in 0..2 {
        let batches: Vec<_> = session
            .native("odbc", sql)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!((rows, batches[0].num_columns()), (3, 2));
    }
    let Err(err) = session.native("odbc", sql).await else {
        panic!("the third query within a minute ran");
    };
    assert!(
        matches!(err, ibarrow::Error::RateLimited { .. }),
        "the third within a minute: {err}"
    );
    let metrics = engine.metrics();
    assert_eq!(metrics.queries.get("ok"), Some(&2));
    assert_eq!(metrics.queries.get("refused"), Some(&1));
    assert_eq!(metrics.rows_by_source.get("odbc"), Some(&6));
}
