//! Connections that hold up, on PostgreSQL, MariaDB and SQLite: a statement that runs too long
//! ends with a Timeout error naming the source, its remote statement is cancelled (the
//! connection comes back within seconds, not when the statement would have ended), a silent
//! server behind a proxy cannot hold a query past its deadline, and health checks tell a
//! source that answers from one that does not.

#[path = "../providers/tests/common/mod.rs"]
mod common;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/background.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Profile;
use futures::StreamExt;
use ibarrow::{Engine, SourceConfig};
use proxy::Proxy;
use test_case::test_case;

/// A statement of each database that takes about 30 s and returns one row.
fn slow_statement(profile: Profile) -> &'static str {
    match profile {
        Profile::Postgres => "SELECT 1 AS n FROM (SELECT pg_sleep(30)) AS s",
        Profile::MariaDb => "SELECT SLEEP(30) AS n",
        // Counting to 10^10 in a recursive CTE keeps SQLite busy far longer than 30 s.
        Profile::Sqlite => {
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10000000000) \
             SELECT count(*) AS n FROM r"
        }
    }
}

async fn engine(connection_string: &str, query_timeout_secs: Option<u64>) -> Engine {
    let config = SourceConfig {
        connection_string: Some(connection_string.to_string()),
        query_timeout_secs,
        ..SourceConfig::default()
    };
    Engine::builder()
        .source_config("db", config)
        .build()
        .await
        .expect("engine")
}

/// The row count of `sql`; a failure fails the test.
async fn rows(engine: &Engine, sql: &str) -> usize {
    let batches = engine.sql(sql).await.unwrap().collect().await;
    let batches = batches.unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    batches.iter().map(|b| b.num_rows()).sum()
}

/// The error `sql` ends with, planning included; succeeding fails the test.
async fn error(engine: &Engine, sql: &str) -> String {
    let result = match engine.sql(sql).await {
        Ok(frame) => frame.collect().await.map(|_| ()),
        Err(err) => return err.to_string(),
    };
    result.expect_err(sql).to_string()
}

/// Waits until no connection of the source is in use; returns how long that took.
async fn connections_released(engine: &Engine, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let pool = Arc::clone(engine.source("db").unwrap().pool());
    while started.elapsed() < within {
        if pool.in_use() == 0 {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_its_deadline_is_cancelled_with_a_timeout_error(profile: Profile) {
    let db = profile.open();
    let engine = engine(&db.connection_string, Some(1)).await;
    let sql = format!(
        "SELECT * FROM query('db', '{}')",
        slow_statement(profile).replace('\'', "''")
    );
    let started = Instant::now();
    let result = engine.sql(&sql).await.unwrap().collect().await;
    let elapsed = started.elapsed();
    let err = result.expect_err("the statement must time out").to_string();
    assert!(
        err.contains("source `db`") && err.contains("did not finish within 1s"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    // The statement was cancelled in the database: its connection is released long before
    // the statement's own 30 s (and closed, not reused).
    let released = connections_released(&engine, Duration::from_secs(10)).await;
    assert!(
        released.is_some(),
        "the cancelled statement still holds its connection"
    );
    // The source keeps answering.
    let rows = engine
        .sql("SELECT * FROM query('db', 'SELECT 7 AS n')")
        .await
        .unwrap();
    assert_eq!(rows.collect().await.unwrap()[0].num_rows(), 1);
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_dropped_while_the_database_works_is_cancelled(profile: Profile) {
    let db = profile.open();
    let engine = engine(&db.connection_string, None).await;
    let sql = format!(
        "SELECT * FROM query('db', '{}')",
        slow_statement(profile).replace('\'', "''")
    );
    let mut stream = engine.stream(&sql).await.unwrap();
    // Let the statement start, then give up on it (what Ctrl-C in the REPL does).
    let _ = tokio::time::timeout(Duration::from_millis(700), stream.next()).await;
    drop(stream);
    let released = connections_released(&engine, Duration::from_secs(10)).await;
    assert!(
        released.is_some(),
        "the abandoned statement was not cancelled"
    );
}

/// The proxy's connection strings (tests/support/proxy.rs).
impl Proxy {
    /// The connection string of `profile` through this proxy.
    fn connection_string(&self, profile: Profile) -> String {
        let port = self.port;
        match profile {
            Profile::Postgres => format!(
                "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={port};\
                 Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;"
            ),
            Profile::MariaDb => format!(
                "Driver={{MariaDB Unicode}};Server=127.0.0.1;Port={port};\
                 Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;"
            ),
            Profile::Sqlite => unreachable!("SQLite has no server to put a proxy before"),
        }
    }
}

/// A server that accepts the login and then goes silent: planning a table not yet cached (its
/// columns are read on first use) fails within the query timeout, naming the source and the
/// limit; with the breaker open, planning another fails at once without a byte sent to the
/// server; no connection stays checked out.
#[test_case(Profile::Postgres, "127.0.0.1:5432" ; "postgres")]
#[test_case(Profile::MariaDb, "127.0.0.1:3306" ; "mariadb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_fails_planning_within_the_deadline_then_at_once_behind_its_breaker(
    profile: Profile,
    target: &'static str,
) {
    let db = profile.open();
    let (first, second) = (
        common::unique_name("silent_a"),
        common::unique_name("silent_b"),
    );
    let _first = db.create_table(&first, "id INTEGER PRIMARY KEY");
    let _second = db.create_table(&second, "id INTEGER PRIMARY KEY");
    let proxy = Proxy::to(target).await;
    let config = SourceConfig {
        connection_string: Some(proxy.connection_string(profile)),
        query_timeout_secs: Some(3),
        breaker: Some(breaker_opening_after(1)),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("db", config)
        .build()
        .await
        .unwrap();
    let schema = profile.schema();

    proxy.freeze(true);
    let started = Instant::now();
    let err = error(&engine, &format!("SELECT * FROM db.{schema}.{first}")).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}: {err}");
    assert!(
        err.contains("source `db`") && err.contains("did not finish within 3s"),
        "{err}"
    );

    let sent = proxy.bytes_from_clients();
    let started = Instant::now();
    let err = error(&engine, &format!("SELECT * FROM db.{schema}.{second}")).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500),
        "took {elapsed:?}: {err}"
    );
    assert!(err.contains("circuit breaker opened"), "{err}");
    assert_eq!(
        proxy.bytes_from_clients(),
        sent,
        "a source behind an open breaker was called"
    );
    assert!(
        connections_released(&engine, Duration::from_secs(1))
            .await
            .is_some(),
        "a connection is still checked out"
    );
    proxy.freeze(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_cannot_hold_a_query_past_its_deadline() {
    let db = Profile::Postgres.open();
    let table = common::unique_name("silent");
    let _guard = db.create_table(&table, "id INTEGER PRIMARY KEY");
    db.execute(&[&format!("INSERT INTO {table} VALUES (1), (2), (3)")]);
    let proxy = Proxy::to("127.0.0.1:5432").await;
    let connection_string = format!(
        "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database=ibarrow_test;\
         Uid=ibarrow;Pwd=ibarrow;",
        proxy.port
    );
    let engine = engine(&connection_string, Some(2)).await;
    // Table metadata is fetched (and cached) while the network still works.
    let sql = format!("SELECT count(id) AS n FROM db.public.{table} WHERE id > 1");
    let rows = engine.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(rows[0].num_rows(), 1);

    proxy.freeze(true);
    let started = Instant::now();
    let result = engine.sql(&sql).await.unwrap().collect().await;
    let elapsed = started.elapsed();
    let err = result
        .expect_err("a silent server must time out")
        .to_string();
    assert!(
        err.contains("source `db`") && err.contains("did not finish within 2s"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    proxy.freeze(false);
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_reachable_source_with_its_pool(profile: Profile) {
    let db = profile.open();
    let engine = engine(&db.connection_string, None).await;
    let health = engine.health(Duration::from_secs(5)).await;
    assert_eq!(health.len(), 1);
    let h = &health[0];
    assert!(h.reachable && h.error.is_none(), "{h:?}");
    assert!(
        h.latency.is_some_and(|l| l < Duration::from_secs(5)),
        "{h:?}"
    );
    assert_eq!(
        (h.source.as_str(), h.in_use, h.pool_max),
        ("db", 0, 8),
        "{h:?}"
    );
    assert!(h.idle >= 1, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_silent_source_as_unreachable_and_others_as_fine() {
    let proxy = Proxy::to("127.0.0.1:5432").await;
    let silent = format!(
        "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database=ibarrow_test;\
         Uid=ibarrow;Pwd=ibarrow;",
        proxy.port
    );
    let lite = Profile::Sqlite.open();
    let engine = Engine::builder()
        .source("silent", &silent)
        .source("lite", &lite.connection_string)
        .build()
        .await
        .unwrap();
    proxy.freeze(true);
    let started = Instant::now();
    let health = engine.health(Duration::from_secs(1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let by_name = |name: &str| health.iter().find(|h| h.source == name).unwrap();
    let silent = by_name("silent");
    assert!(!silent.reachable, "{silent:?}");
    assert!(
        silent
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no answer within")),
        "{silent:?}"
    );
    assert!(
        !silent.error.as_deref().unwrap_or_default().contains("Pwd"),
        "{silent:?}"
    );
    assert!(by_name("lite").reachable, "{health:?}");
    proxy.freeze(false);
}

/// The engine's only pooled connection, killed from outside between two queries.
async fn kill_the_pooled_connection(profile: Profile, db: &common::TestDb, engine: &Engine) {
    let id_query = match profile {
        Profile::Postgres => "SELECT * FROM query('db', 'SELECT pg_backend_pid() AS id')",
        _ => "SELECT * FROM query('db', 'SELECT CONNECTION_ID() AS id')",
    };
    let batches = engine.sql(id_query).await.unwrap().collect().await.unwrap();
    let id =
        datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
    let kill = match profile {
        Profile::Postgres => format!("SELECT pg_terminate_backend({id})"),
        _ => format!("KILL {id}"),
    };
    db.execute(&[&kill]);
    // Let the server finish closing it.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn single_connection_engine(db: &common::TestDb, attempts: u32) -> Engine {
    let config = SourceConfig {
        connection_string: Some(db.connection_string.clone()),
        pool_size: Some(1),
        retry: Some(ibarrow::RetryConfig {
            attempts: Some(attempts),
            initial_backoff_ms: Some(50),
            max_backoff_ms: Some(200),
        }),
        ..SourceConfig::default()
    };
    Engine::builder()
        .source_config("db", config)
        .build()
        .await
        .expect("engine")
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_is_replaced_and_the_read_retried(profile: Profile) {
    let db = profile.open();
    let table = common::unique_name("killed");
    let _guard = db.create_table(&table, "id INTEGER PRIMARY KEY");
    db.execute(&[&format!("INSERT INTO {table} VALUES (1), (2), (3)")]);
    let sql = format!("SELECT id FROM db.{}.{table} ORDER BY id", profile.schema());

    let engine = single_connection_engine(&db, 3).await;
    assert_eq!(rows(&engine, &sql).await, 3);
    kill_the_pooled_connection(profile, &db, &engine).await;
    let started = Instant::now();
    // The read is retried on a fresh connection (`rows` fails the test on an error).
    assert_eq!(rows(&engine, &sql).await, 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Without retries: MariaDB's driver pings on the pool's checkout check, so the dead
    // connection is replaced before use; psqlODBC only notices when the read fails, which is
    // then reported as a lost connection. Either way the next query gets a fresh connection.
    let engine = single_connection_engine(&db, 1).await;
    assert_eq!(rows(&engine, &sql).await, 3);
    kill_the_pooled_connection(profile, &db, &engine).await;
    let result = engine.sql(&sql).await.unwrap().collect().await;
    match profile {
        Profile::Postgres => {
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("source `db`") && err.contains("connection broke"),
                "{err}"
            );
        }
        _ => assert_eq!(result.unwrap()[0].num_rows(), 3),
    }
    assert_eq!(rows(&engine, &sql).await, 3);
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_errors_are_never_retried(profile: Profile) {
    let db = profile.open();
    let table = common::unique_name("gone");
    db.execute(&[&format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY)")]);
    let engine = single_connection_engine(&db, 3).await;
    let sql = format!("SELECT id FROM db.{}.{table}", profile.schema());
    assert_eq!(rows(&engine, &sql).await, 0);
    // The table disappears behind the cached metadata: the remote statement itself fails,
    // a user error, reported at once (retries with backoff would take at least 50 + 100 ms).
    db.execute(&[&format!("DROP TABLE {table}")]);
    let started = Instant::now();
    let err = error(&engine, &sql).await;
    assert!(err.contains(&table) && err.contains("source `db`"), "{err}");
    assert!(!err.contains("connection broke"), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_trips_its_breaker_and_fails_fast_while_others_answer() {
    let db = Profile::Postgres.open();
    let table = common::unique_name("breaker");
    let _guard = db.create_table(&table, "id INTEGER PRIMARY KEY");
    db.execute(&[&format!("INSERT INTO {table} VALUES (1)")]);
    let proxy = Proxy::to("127.0.0.1:5432").await;
    let silent = SourceConfig {
        connection_string: Some(format!(
            "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database=ibarrow_test;\
             Uid=ibarrow;Pwd=ibarrow;",
            proxy.port
        )),
        query_timeout_secs: Some(1),
        breaker: Some(breaker_opening_after(2)),
        ..SourceConfig::default()
    };
    let lite = Profile::Sqlite.open();
    let engine = Engine::builder()
        .source_config("pg", silent)
        .source("lite", &lite.connection_string)
        .build()
        .await
        .unwrap();
    let sql = format!("SELECT count(id) AS n FROM pg.public.{table}");
    assert_eq!(rows(&engine, &sql).await, 1);

    proxy.freeze(true);
    let err = error(&engine, &sql).await;
    assert!(err.contains("did not finish within 1s"), "{err}");
    // Every call counts: the pushed aggregate's EXPLAIN estimate and its scan may both have
    // failed already, which fills the window of two; else the next query's failure does.
    let err = error(&engine, &sql).await;
    assert!(
        err.contains("did not finish within 1s") || err.contains("circuit breaker opened"),
        "{err}"
    );
    // Open: no driver call, an immediate error saying when it retries.
    let started = Instant::now();
    let err = error(&engine, &sql).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("circuit breaker opened") && err.contains("tries it again in"),
        "{err}"
    );
    // Graceful degradation: a query not touching the failing source is unaffected.
    let other = engine
        .sql("SELECT * FROM query('lite', 'SELECT 1 AS n')")
        .await
        .unwrap();
    assert_eq!(other.collect().await.unwrap()[0].num_rows(), 1);
    let health = engine.health(Duration::from_secs(1)).await;
    let pg = health.iter().find(|h| h.source == "pg").unwrap();
    assert_eq!(
        pg.breaker,
        Some(ibarrow::providers::breaker::BreakerState::Open),
        "{pg:?}"
    );
    proxy.freeze(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_fails_after_the_acquire_timeout_and_recovers() {
    let db = Profile::Postgres.open();
    let table = common::unique_name("pool");
    let _guard = db.create_table(&table, "id INTEGER PRIMARY KEY");
    db.execute(&[&format!("INSERT INTO {table} VALUES (1), (2)")]);
    let config = SourceConfig {
        connection_string: Some(db.connection_string.clone()),
        pool_size: Some(1),
        acquire_timeout_secs: Some(1),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("db", config)
        .build()
        .await
        .unwrap();
    let sql = format!("SELECT id FROM db.public.{table}");
    assert_eq!(rows(&engine, &sql).await, 2);

    // A result read only in part holds the only connection.
    let mut held = engine
        .stream("SELECT * FROM query('db', 'SELECT g FROM generate_series(1, 5000000) g')")
        .await
        .unwrap();
    assert!(held.next().await.unwrap().is_ok());
    let started = Instant::now();
    let err = error(&engine, &sql).await;
    let waited = started.elapsed();
    assert!(err.contains("no connection became free within 1s"), "{err}");
    assert!(err.contains("Raise the pool size"), "{err}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    // Once the reader lets go, the connection is free again.
    drop(held);
    let released = connections_released(&engine, Duration::from_secs(10)).await;
    assert!(released.is_some(), "the abandoned scan kept its connection");
    assert_eq!(rows(&engine, &sql).await, 2);
}

/// Whether this engine's PostgreSQL session is encrypted, as the server sees it.
async fn session_is_encrypted(engine: &Engine) -> bool {
    let sql = "SELECT * FROM query('db', 'SELECT ssl::int AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')";
    let batches = engine.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap() == "1"
}

async fn tls_engine(mode: &str, ca: Option<&str>) -> ibarrow::Result<Engine> {
    let db = Profile::Postgres.open();
    let config = SourceConfig {
        connection_string: Some(db.connection_string.clone()),
        tls: Some(ibarrow::TlsConfig {
            mode: mode.to_string(),
            ca: ca.map(str::to_string),
            ..Default::default()
        }),
        ..SourceConfig::default()
    };
    Engine::builder().source_config("db", config).build().await
}

/// The local PostgreSQL serves TLS with Debian's self-signed "snakeoil" certificate, issued
/// to the machine's host name, not to 127.0.0.1.
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_reach_postgresql_as_asked() {
    let plain = tls_engine("disable", None).await.unwrap();
    assert!(
        !session_is_encrypted(&plain).await,
        "disable must stay plain"
    );
    let required = tls_engine("require", None).await.unwrap();
    assert!(
        session_is_encrypted(&required).await,
        "require must encrypt"
    );
    // The certificate is its own CA: verify-ca passes, verify-full fails on the host name.
    let verified = tls_engine("verify-ca", Some(SNAKEOIL)).await.unwrap();
    assert!(session_is_encrypted(&verified).await);
    let err = tls_engine("verify-full", Some(SNAKEOIL))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("source `db`"), "{err}");
    assert!(!err.contains("Pwd=ibarrow"), "{err}");
    let err = tls_engine("verify_full", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls") && err.contains("verify-full"), "{err}");
}

/// The CA that issued MariaDB's certificate (for 127.0.0.1); `scripts/test-services` makes it.
const MARIADB_CA: &str = "/etc/mysql/ibarrow-tls/ca.pem";

async fn tls_engine_on(
    connection_string: &str,
    mode: &str,
    ca: Option<&str>,
) -> ibarrow::Result<Engine> {
    let config = SourceConfig {
        connection_string: Some(connection_string.to_string()),
        tls: Some(ibarrow::TlsConfig {
            mode: mode.to_string(),
            ca: ca.map(str::to_string),
            ..Default::default()
        }),
        ..SourceConfig::default()
    };
    Engine::builder().source_config("db", config).build().await
}

/// MariaDB's cipher for this engine's session; empty when the session is plain.
async fn mariadb_cipher(engine: &Engine) -> String {
    let sql = "SELECT * FROM query('db', 'SELECT VARIABLE_VALUE AS cipher FROM \
               information_schema.SESSION_STATUS WHERE VARIABLE_NAME = ''SSL_CIPHER''')";
    let batches = engine.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_reach_mariadb_as_asked() {
    let conn = Profile::MariaDb.open().connection_string;
    let plain = tls_engine_on(&conn, "disable", None).await.unwrap();
    assert_eq!(mariadb_cipher(&plain).await, "", "disable must stay plain");
    let required = tls_engine_on(&conn, "require", None).await.unwrap();
    assert_ne!(mariadb_cipher(&required).await, "", "require must encrypt");
    // The server's certificate names 127.0.0.1 and chains to the test CA.
    let verified = tls_engine_on(&conn, "verify-full", Some(MARIADB_CA))
        .await
        .unwrap();
    assert_ne!(mariadb_cipher(&verified).await, "");
    // Verified against a CA that did not issue it (PostgreSQL's snakeoil), it is refused.
    let err = tls_engine_on(&conn, "verify-full", Some(SNAKEOIL))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("source `db`"), "{err}");
    assert!(!err.contains("Pwd=ibarrow"), "{err}");
}

/// `ibarrow_tls` may only connect over TLS (pg_hba `hostnossl ... reject` on PostgreSQL,
/// `REQUIRE SSL` on MariaDB): a plain connection is refused, an encrypted one gets in.
#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_user_is_refused_plain_connections(profile: Profile) {
    let conn = Profile::open(profile)
        .connection_string
        .replace("Uid=ibarrow;", "Uid=ibarrow_tls;");
    let err = tls_engine_on(&conn, "disable", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("source `db`"), "{err}");
    assert!(!err.contains("Pwd=ibarrow"), "{err}");
    let encrypted = tls_engine_on(&conn, "require", None).await.unwrap();
    let encrypted = match profile {
        Profile::Postgres => session_is_encrypted(&encrypted).await,
        _ => !mariadb_cipher(&encrypted).await.is_empty(),
    };
    assert!(encrypted);
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "current_thread")]
async fn a_connection_held_too_long_is_warned_about_once(profile: Profile) {
    let log = support::CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let db = profile.open();
    let config = SourceConfig {
        connection_string: Some(db.connection_string.clone()),
        leak_warning_secs: Some(1),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("db", config)
        .build()
        .await
        .unwrap();
    // A million rows, far more than the scan buffers ahead of its reader.
    let sql = match profile {
        Profile::Postgres => {
            "SELECT * FROM query('db', 'SELECT g FROM generate_series(1, 1000000) g')"
        }
        Profile::MariaDb => "SELECT * FROM query('db', 'SELECT seq AS g FROM seq_1_to_1000000')",
        Profile::Sqlite => {
            "SELECT * FROM query('db', 'WITH RECURSIVE r(g) AS (SELECT 1 UNION ALL \
             SELECT g + 1 FROM r WHERE g < 1000000) SELECT g FROM r')"
        }
    };
    let mut stream = engine.stream(sql).await.unwrap();
    // One batch read, the rest left waiting: the scan keeps its connection.
    stream.next().await.unwrap().unwrap();
    let held = |engine: &Engine| {
        let engine = engine.clone();
        async move { engine.health(Duration::from_secs(5)).await[0].held_too_long }
    };
    assert_eq!(held(&engine).await, 0, "not yet past leak_warning_secs");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(held(&engine).await, 1);
    assert_eq!(held(&engine).await, 1);
    let text = log.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("longer than leak_warning_secs"))
        .collect();
    assert_eq!(warnings.len(), 1, "warned once per checkout: {text}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("source=db"),
        "{text}"
    );
    assert!(!text.contains("Pwd=ibarrow"), "{text}");
    drop(stream);
    assert!(
        connections_released(&engine, Duration::from_secs(10))
            .await
            .is_some()
    );
    assert_eq!(held(&engine).await, 0);
}

/// The pooled connection's backend is killed while its statement runs: the read had
/// delivered no row, so it is tried again on a fresh connection (or, if that fails too,
/// reported as a lost connection); the next query answers and nothing stays checked out.
#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_query_is_survived(profile: Profile) {
    let db = profile.open();
    let engine = single_connection_engine(&db, 3).await;
    let id_query = match profile {
        Profile::Postgres => "SELECT * FROM query('db', 'SELECT pg_backend_pid() AS id')",
        _ => "SELECT * FROM query('db', 'SELECT CONNECTION_ID() AS id')",
    };
    let batches = engine.sql(id_query).await.unwrap().collect().await.unwrap();
    let id =
        datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
    let slow = match profile {
        Profile::Postgres => "SELECT * FROM query('db', 'SELECT 1 AS n FROM pg_sleep(2)')",
        _ => "SELECT * FROM query('db', 'SELECT SLEEP(2) AS n')",
    };
    let running = support::run_in_background(&engine, slow);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let kill = match profile {
        Profile::Postgres => format!("SELECT pg_terminate_backend({id})"),
        _ => format!("KILL {id}"),
    };
    db.execute(&[&kill]);
    let (outcome, took) = running.await.unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    match outcome {
        Ok(batches) => assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1),
        Err(err) => {
            let text = err.to_string();
            assert!(text.contains("connection broke"), "{text}");
        }
    }
    let started = Instant::now();
    let batches = engine.sql(id_query).await.unwrap().collect().await.unwrap();
    let new_id =
        datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
    assert_ne!(new_id, id, "the killed connection was handed out again");
    eprintln!(
        "{profile:?}: killed mid-query, the query ended after {took:?}; next query in {:?}",
        started.elapsed()
    );
    assert!(
        connections_released(&engine, Duration::from_secs(5))
            .await
            .is_some()
    );
}

/// A breaker that opens for a minute once `window` calls in a row have failed.
fn breaker_opening_after(window: usize) -> ibarrow::BreakerConfig {
    ibarrow::BreakerConfig {
        failure_rate: Some(1.0),
        window: Some(window),
        open_secs: Some(60),
        ..Default::default()
    }
}
