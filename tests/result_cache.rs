//! The result cache (`[engine] result_cache`) on PostgreSQL, MariaDB and SQLite through their
//! ODBC drivers. Rows changed behind the engine's back (straight through odbc-api) show whether
//! an answer came from the cache or from the database: a repeated query is answered from the
//! cache until `refresh`, an INSERT through the engine, or its TTL; functions whose value
//! changes, VALUES lists, `query()` and sources that opt out are never cached; users whose masks differ
//! never share an entry.

#[path = "../providers/tests/common/mod.rs"]
mod common;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/rows.rs"]
mod rows;

use common::{OwnedTable, Profile};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use futures::TryStreamExt;
use ibarrow::{Config, Engine};
use proxy::Proxy;
use rows::rows;
use test_case::test_case;

struct Fixture {
    table: OwnedTable,
}

impl Fixture {
    /// A table of (id, name): (1, 'one'), (2, 'two').
    fn create(profile: Profile) -> Self {
        let table = OwnedTable::create(
            profile,
            "cached_rows",
            "id INTEGER PRIMARY KEY, name VARCHAR(20)",
            |quoted| {
                vec![format!(
                    "INSERT INTO {quoted} VALUES (1, 'one'), (2, 'two')"
                )]
            },
        );
        Fixture { table }
    }

    /// A row added straight in the database, where the engine cannot see it happen.
    fn add_behind_the_engine(&self, id: i64) {
        let table = self.table.quoted();
        self.table
            .db
            .execute(&[&format!("INSERT INTO {table} VALUES ({id}, 'row {id}')")]);
    }

    fn name(&self) -> String {
        self.table.in_source("db")
    }

    async fn engine(&self, cache: &str, source_extra: &str) -> Engine {
        self.engine_through(&self.table.db.connection_string, cache, source_extra)
            .await
    }

    /// [`Self::engine`] on the table's database reached with `connection_string`.
    async fn engine_through(
        &self,
        connection_string: &str,
        cache: &str,
        source_extra: &str,
    ) -> Engine {
        let conn = connection_string.replace('\\', "\\\\");
        let table = self.name();
        let text = format!(
            r#"
            [engine]
            result_cache = {{ {cache} }}
            [sources.db]
            connection_string = "{conn}"
            writable = true
            {source_extra}
            [roles.masked]
            read = ["db.*.*"]
            masks = {{ "{table}.name" = "'***'" }}
            [roles.plain]
            read = ["db.*.*"]
            native_sql = true
            write = ["db.*.*"]
            [users.alice]
            roles = ["masked"]
            [users.root]
            roles = ["plain"]
            "#
        );
        Engine::from_config(Config::parse(&text, "test").unwrap())
            .await
            .expect("engine")
    }
}

fn last_cache_use(engine: &Engine) -> &'static str {
    engine.recent_queries()[0].cache
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_query_is_answered_from_the_cache_until_refresh_or_insert(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("ttl_secs = 600", "").await;
    let root = engine.session("root", "test");
    let sql = format!("SELECT id, name FROM {} ORDER BY id", fixture.name());
    assert_eq!(rows(&root, &sql).await, ["1|one", "2|two"]);
    assert_eq!(last_cache_use(&engine), "miss");
    let read_before = engine.metrics().rows_by_source.get("db").copied();

    fixture.add_behind_the_engine(3);
    assert_eq!(
        rows(&root, &sql).await,
        ["1|one", "2|two"],
        "not from the cache"
    );
    assert_eq!(last_cache_use(&engine), "hit");
    assert_eq!(
        engine.metrics().rows_by_source.get("db").copied(),
        read_before,
        "a hit read the source"
    );

    engine.refresh("db").await.unwrap();
    assert_eq!(rows(&root, &sql).await, ["1|one", "2|two", "3|row 3"]);
    assert_eq!(last_cache_use(&engine), "miss");
    assert_eq!(rows(&root, &sql).await.len(), 3);
    assert_eq!(last_cache_use(&engine), "hit");

    let insert = format!("INSERT INTO {} VALUES (4, 'four')", fixture.name());
    rows(&root, &insert).await;
    assert_eq!(
        rows(&root, &sql).await,
        ["1|one", "2|two", "3|row 3", "4|four"],
        "an INSERT through the engine did not invalidate"
    );
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_result_expires_with_its_ttl(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("ttl_secs = 1", "").await;
    let root = engine.session("root", "test");
    let sql = format!("SELECT count(*) FROM {}", fixture.name());
    assert_eq!(rows(&root, &sql).await, ["2"]);
    fixture.add_behind_the_engine(3);
    assert_eq!(rows(&root, &sql).await, ["2"]);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(rows(&root, &sql).await, ["3"]);
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_functions_passthrough_and_opted_out_sources_are_never_cached(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("ttl_secs = 600", "").await;
    let root = engine.session("root", "test");
    let table = fixture.name();
    let native = format!(
        "SELECT * FROM query('db', 'SELECT count(*) AS n FROM {}')",
        fixture.table.quoted()
    );
    for sql in [
        format!("SELECT id, random() AS r FROM {table}"),
        format!("SELECT id, now() AS t FROM {table}"),
        format!(
            "SELECT t.id FROM {table} t JOIN (VALUES (1), (2), (3), (4), (5), (6), (7)) v(id) \
             ON t.id = v.id"
        ),
        native,
    ] {
        rows(&root, &sql).await;
        assert_eq!(last_cache_use(&engine), "bypass", "{sql}");
    }

    // Parameters are bound after the look-up: each binding runs.
    let sql = format!("SELECT name FROM {table} WHERE id = $1");
    for (id, name) in [(1, "one"), (2, "two")] {
        let frame = root.sql(&sql).await.unwrap();
        let frame = frame
            .with_param_values(vec![datafusion::scalar::ScalarValue::Int64(Some(id))])
            .unwrap();
        let batches: Vec<RecordBatch> = root
            .execute(frame, &sql)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let names = cast(batches[0].column(0), &DataType::Utf8).unwrap();
        assert_eq!(names.as_string::<i32>().value(0), name);
        assert_eq!(last_cache_use(&engine), "bypass");
    }
    // A result whose columns share a name is not kept (it could not be read back as a table).
    let sql = format!("SELECT a.id, b.id FROM {table} a JOIN {table} b ON a.id = b.id ORDER BY 1");
    for _ in 0..2 {
        assert_eq!(rows(&root, &sql).await, ["1|1", "2|2"]);
        assert_eq!(last_cache_use(&engine), "bypass");
    }

    let opted_out = fixture
        .engine("ttl_secs = 600", "result_cache_ttl_secs = 0")
        .await;
    let root = opted_out.session("root", "test");
    let sql = format!("SELECT count(*) FROM {table}");
    assert_eq!(rows(&root, &sql).await, ["2"]);
    fixture.add_behind_the_engine(3);
    assert_eq!(rows(&root, &sql).await, ["3"]);
    assert_eq!(last_cache_use(&opted_out), "bypass");
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_whose_masks_differ_never_share_a_result(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("ttl_secs = 600", "").await;
    let (alice, root) = (
        engine.session("alice", "test"),
        engine.session("root", "test"),
    );
    let sql = format!("SELECT id, name FROM {} ORDER BY id", fixture.name());
    assert_eq!(rows(&root, &sql).await, ["1|one", "2|two"]);
    assert_eq!(rows(&alice, &sql).await, ["1|***", "2|***"]);
    assert_eq!(last_cache_use(&engine), "miss");
    assert_eq!(rows(&root, &sql).await, ["1|one", "2|two"]);
    assert_eq!(last_cache_use(&engine), "hit");
    assert_eq!(rows(&alice, &sql).await, ["1|***", "2|***"]);
    assert_eq!(last_cache_use(&engine), "hit");
}

/// `SET ibarrow.result_cache = false` turns the cache off for one session (its clones share
/// the setting); another session of the same user keeps using it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_turns_the_cache_off_and_on_for_itself() {
    let fixture = Fixture::create(Profile::Sqlite);
    let engine = fixture.engine("ttl_secs = 600", "").await;
    let root = engine.session("root", "test");
    let other = engine.session("root", "test");
    let sql = format!("SELECT count(*) FROM {}", fixture.name());
    assert_eq!(rows(&root, &sql).await, ["2"]);
    root.sql("SET ibarrow.result_cache = false").await.unwrap();
    fixture.add_behind_the_engine(3);
    assert_eq!(
        rows(&root.clone(), &sql).await,
        ["3"],
        "read from the cache"
    );
    assert_eq!(last_cache_use(&engine), "bypass");
    assert_eq!(
        rows(&other, &sql).await,
        ["2"],
        "the other session lost the cache"
    );
    assert_eq!(last_cache_use(&engine), "hit");
    root.sql("SET ibarrow.result_cache TO on;").await.unwrap();
    assert_eq!(rows(&root, &sql).await, ["2"]);
    assert_eq!(last_cache_use(&engine), "hit");
    let err = root
        .sql("SET ibarrow.result_cahce = false")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ibarrow.result_cache"), "{err}");
    let err = root
        .sql("SET ibarrow.result_cache = maybe")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("true or false"), "{err}");
}

/// EXPLAIN ANALYZE runs its statement through the cache and says what the cache did: the
/// first run misses (and keeps nothing: the analysis is not the result), a hit analyzes the
/// kept batches and reads no source.
#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_says_what_the_cache_did(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("ttl_secs = 600", "").await;
    let root = engine.session("root", "test");
    let sql = format!("SELECT id, name FROM {} ORDER BY id", fixture.name());
    let analyzed = |session: ibarrow::Session, sql: String| async move {
        let explained = format!("EXPLAIN ANALYZE {sql}");
        rows(&session, &explained).await.join("\n")
    };

    let first = analyzed(root.clone(), sql.clone()).await;
    assert!(first.contains("ResultCache: cache=miss"), "{first}");
    assert!(first.contains("OdbcExec"), "{first}");
    assert_eq!(last_cache_use(&engine), "miss");
    // EXPLAIN ANALYZE kept nothing: the statement itself still misses, then hits.
    fixture.add_behind_the_engine(3);
    assert_eq!(rows(&root, &sql).await.len(), 3);
    assert_eq!(last_cache_use(&engine), "miss");

    let read_before = engine.metrics().rows_by_source.get("db").copied();
    let hit = analyzed(root.clone(), sql.clone()).await;
    assert!(hit.contains("ResultCache: cache=hit"), "{hit}");
    assert!(
        !hit.contains("OdbcExec"),
        "a hit planned a remote scan: {hit}"
    );
    assert_eq!(last_cache_use(&engine), "hit");
    assert_eq!(
        engine.metrics().rows_by_source.get("db").copied(),
        read_before,
        "a hit read the source"
    );

    root.sql("SET ibarrow.result_cache = false").await.unwrap();
    let bypassed = analyzed(root.clone(), sql.clone()).await;
    assert!(bypassed.contains("ResultCache: cache=bypass"), "{bypassed}");
    assert!(bypassed.contains("OdbcExec"), "{bypassed}");
}

/// With `serve_stale_secs`, a result past its TTL answers, marked `stale`, once its source has
/// no healthy endpoint (its breaker open after the server went away); a statement never kept
/// fails at once, naming the source.
#[test_case(Profile::Postgres, "127.0.0.1:5432"; "postgres")]
#[test_case(Profile::MariaDb, "127.0.0.1:3306"; "mariadb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_result_answers_while_its_source_is_down(profile: Profile, server: &'static str) {
    let fixture = Fixture::create(profile);
    let proxy = Proxy::to(server).await;
    let port = server.rsplit(':').next().unwrap_or_default();
    let through_proxy = fixture
        .table
        .db
        .connection_string
        .replace(&format!("Port={port}"), &format!("Port={}", proxy.port));
    let engine = fixture
        .engine_through(
            &through_proxy,
            "ttl_secs = 1, serve_stale_secs = 600",
            "connect_timeout_secs = 2\nbreaker = { window = 2, open_secs = 60 }\n\
             retry = { attempts = 1 }",
        )
        .await;
    let root = engine.session("root", "test");
    let sql = format!("SELECT id, name FROM {} ORDER BY id", fixture.name());
    assert_eq!(rows(&root, &sql).await, ["1|one", "2|two"]);
    assert_eq!(last_cache_use(&engine), "miss");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    proxy.kill();
    // While the breaker still lets calls through, the query runs, and fails.
    let mut failures = Vec::new();
    let answered = loop {
        match run(&root, &sql).await {
            Ok(batches) => break rows::batch_rows(&batches),
            Err(err) => failures.push(err.to_string()),
        }
        assert!(failures.len() <= 3, "no stale answer: {failures:?}");
    };
    assert_eq!(answered, ["1|one", "2|two"]);
    assert_eq!(last_cache_use(&engine), "stale");
    assert!(
        !failures.is_empty(),
        "a stale result answers only once the source is known to be down"
    );
    assert!(
        failures.iter().all(|f| f.contains("`db`")),
        "errors name the source: {failures:?}"
    );

    let started = std::time::Instant::now();
    let other = format!("SELECT name FROM {} WHERE id = 2", fixture.name());
    let err = run(&root, &other)
        .await
        .expect_err("nothing kept for this statement");
    assert!(err.to_string().contains("`db`"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "fails at once behind the open breaker: {:?}",
        started.elapsed()
    );
}

/// Plans and runs `sql` in `session`, its errors returned.
async fn run(session: &ibarrow::Session, sql: &str) -> ibarrow::Result<Vec<RecordBatch>> {
    let frame = session.sql(sql).await?;
    let stream = session.execute(frame, sql).await?;
    Ok(stream.try_collect().await?)
}
