//! Queries on a Ballista cluster on loopback: a scheduler and two executors, each an
//! `ibarrow cluster …` process reading the same configuration file, and a client engine in
//! this process (`Engine::builder().cluster(…)`).
//!
//! - The TPC-H files of tests/slt/tpch give the same answers as locally: the expected rows are
//!   DuckDB's (tests/slt/tpch/README.md), the ones the local suite (tests/tpch_answers.rs)
//!   checks, over the same generated data.
//! - EXPLAIN ANALYZE shows the stages and the executor that ran each ODBC task.
//! - The PostgreSQL password appears in no log line of any process.
//! - An executor killed while queries run: queries fail clearly or answer right, and the
//!   cluster goes on with the other executor.
//! - An executor that cannot reach a source says which one.
#![cfg(feature = "cluster")]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ibarrow::{Engine, SourceConfig};

#[path = "../../tests/support/slt.rs"]
mod slt;
#[path = "../../tests/support/tpch.rs"]
mod tpch;

use slt::{Ibarrow, rows_match};
use tpch::{SPLIT, all_tables, load, register_plain_names, split_placement};

const SCALE: f64 = 0.01;
/// The login the cluster's processes read PostgreSQL with: its password is made up per run
/// and must appear in no process's log.
const CLUSTER_ROLE: &str = "ibarrow_cluster";

struct Databases {
    postgres: String,
    mariadb: String,
    sqlite: String,
    password: String,
    _sqlite_dir: tempfile::TempDir,
}

fn postgres_for(user: &str, password: &str) -> String {
    format!(
        "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=5432;Database=ibarrow_test;\
         Uid={user};Pwd={password};"
    )
}

/// The three databases with every TPC-H table, and the cluster's PostgreSQL login.
fn databases() -> &'static Databases {
    static DATABASES: OnceLock<Databases> = OnceLock::new();
    DATABASES.get_or_init(|| {
        let admin = postgres_for("ibarrow", "ibarrow");
        let mariadb = "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;\
                       Uid=ibarrow;Pwd=ibarrow;"
            .to_string();
        let dir = tempfile::tempdir().expect("a temporary directory for SQLite");
        let sqlite = format!(
            "Driver={{SQLite3}};Database={};",
            dir.path().join("tpch.sqlite").display()
        );
        for connection_string in [&admin, &mariadb, &sqlite] {
            load(connection_string, all_tables(), SCALE);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let password = format!("Kq7{nanos}vZt{}", std::process::id());
        let env = odbc_api::environment().expect("the ODBC environment");
        let conn = env
            .connect_with_connection_string(&admin, odbc_api::ConnectionOptions::default())
            .expect("PostgreSQL as ibarrow (scripts/test-services creates it)");
        conn.execute(
            &format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = \
                 '{CLUSTER_ROLE}') THEN CREATE ROLE {CLUSTER_ROLE} LOGIN SUPERUSER; END IF; END $$"
            ),
            (),
            None,
        )
        .expect("create the cluster's role");
        conn.execute(
            &format!("ALTER ROLE {CLUSTER_ROLE} PASSWORD '{password}'"),
            (),
            None,
        )
        .expect("set the cluster's password");
        Databases {
            postgres: postgres_for(CLUSTER_ROLE, &password),
            mariadb,
            sqlite,
            password,
            _sqlite_dir: dir,
        }
    })
}

/// The configuration every process reads; the PostgreSQL password comes from the
/// environment, so the file does not hold it either. `postgres_port` lets an executor be
/// given a database it cannot reach.
fn config_text(databases: &Databases, postgres_port: u16) -> String {
    let postgres = postgres_for(CLUSTER_ROLE, "${IBARROW_CLUSTER_TEST_PASSWORD}")
        .replace("Port=5432", &format!("Port={postgres_port}"));
    format!(
        r#"
[engine]
target_partitions = 2

[sources.pg]
connection_string = "{postgres}"
partitions = 2
min_partition_rows = 10000
connect_timeout_secs = 3

[sources.maria]
connection_string = "{}"

[sources.lite]
connection_string = "{}"
"#,
        databases.mariadb, databases.sqlite
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Two consecutive free ports (an executor's Flight and gRPC services).
fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A process of the cluster, its stderr in a file, killed when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(dir: &Path, name: &str, args: &[String], password: &str) -> Process {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ibarrow"))
            .args(args)
            .env("IBARROW_CLUSTER_TEST_PASSWORD", password)
            // Ballista's own lines (plans, tasks, their errors) at debug, beside ibarrow's.
            .env(
                "IBARROW_LOG",
                "info,ballista_core=debug,ballista_scheduler=debug,ballista_executor=debug,\
                 ibarrow=debug,ibarrow_providers=debug",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start the ibarrow binary");
        Process { child, log }
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Waits until the log shows `line`, or panics with the log after `limit`.
    fn wait_for(&mut self, line: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log_text().contains(line) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the process ended ({status}):\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no `{line}` after {limit:?}:\n{}", self.log_text());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A scheduler and executors on loopback, with their configuration files.
struct Cluster {
    url: String,
    scheduler: Process,
    executors: Vec<(String, Process)>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A scheduler reading the good configuration and one executor per entry of
    /// `executor_postgres_ports` (the PostgreSQL port its configuration names).
    fn start(executor_postgres_ports: &[u16]) -> Cluster {
        let databases = databases();
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, config_text(databases, 5432)).expect("write the configuration");
        let port = free_port();
        let url = format!("df://127.0.0.1:{port}");
        let mut scheduler = Process::start(
            dir.path(),
            "scheduler",
            &[
                "cluster".into(),
                "scheduler".into(),
                "--bind".into(),
                format!("127.0.0.1:{port}"),
                "--config".into(),
                config.display().to_string(),
                "--executor-timeout-secs".into(),
                "6".into(),
            ],
            &databases.password,
        );
        scheduler.wait_for("listening on df://", Duration::from_secs(60));
        let mut executors = Vec::new();
        for (index, postgres_port) in executor_postgres_ports.iter().enumerate() {
            let config = dir.path().join(format!("executor{index}.toml"));
            std::fs::write(&config, config_text(databases, *postgres_port))
                .expect("write the configuration");
            let port = free_port_pair();
            let id = format!("127.0.0.1:{port}");
            let mut executor = Process::start(
                dir.path(),
                &format!("executor{index}"),
                &[
                    "cluster".into(),
                    "executor".into(),
                    "--scheduler".into(),
                    url.clone(),
                    "--config".into(),
                    config.display().to_string(),
                    "--bind".into(),
                    id.clone(),
                    "--concurrent-tasks".into(),
                    "2".into(),
                ],
                &databases.password,
            );
            executor.wait_for("serving tasks of", Duration::from_secs(60));
            executors.push((id, executor));
        }
        // The executors register with the scheduler on their first heartbeat.
        for (id, _) in &executors {
            let start = Instant::now();
            while !scheduler.log_text().contains(id.as_str()) {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "executor {id} never registered:\n{}",
                    scheduler.log_text()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Cluster {
            url,
            scheduler,
            executors,
            dir,
        }
    }

    fn logs(&self) -> Vec<(String, String)> {
        let mut logs = vec![("scheduler".to_string(), self.scheduler.log_text())];
        for (id, executor) in &self.executors {
            logs.push((format!("executor {id}"), executor.log_text()));
        }
        logs
    }
}

/// Where the TPC-H tables are read from.
#[derive(Debug, Clone, Copy)]
enum Placement {
    Postgres,
    MariaDb,
    Sqlite,
    Split,
}

/// A client of `cluster` with the TPC-H tables under their plain names.
async fn client(cluster: &Cluster, placement: Placement) -> Engine {
    let databases = databases();
    let postgres = SourceConfig {
        connection_string: Some(databases.postgres.clone()),
        partitions: Some(2),
        min_partition_rows: Some(10_000),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("pg", postgres)
        .source("maria", &databases.mariadb)
        .source("lite", &databases.sqlite)
        .target_partitions(2)
        .cluster(&cluster.url)
        .build()
        .await
        .expect("a client of the cluster");
    let single = |source: &'static str, schema: &'static str| {
        all_tables().map(move |table| (source, schema, table))
    };
    let placed: Vec<_> = match placement {
        Placement::Postgres => single(SPLIT[0].0, SPLIT[0].1).collect(),
        Placement::MariaDb => single(SPLIT[1].0, SPLIT[1].1).collect(),
        Placement::Sqlite => single(SPLIT[2].0, SPLIT[2].1).collect(),
        Placement::Split => split_placement().collect(),
    };
    register_plain_names(&engine, SCALE, placed).await;
    engine
}

fn slt_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/slt/tpch")
        .join(format!("{name}.slt"))
}

/// Runs the file on `engine`: `Err` with sqllogictest's report.
async fn run_file(engine: &Engine, name: &str) -> Result<(), String> {
    let engine = engine.clone();
    let mut runner = sqllogictest::Runner::new(move || {
        let engine = engine.clone();
        async move { Ok::<_, ibarrow::Error>(Ibarrow(engine)) }
    });
    runner.with_validator(rows_match);
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner
        .run_file_async(slt_file(name))
        .await
        .map_err(|err| err.display(false).to_string())
}

/// The plan text of EXPLAIN ANALYZE of `sql` on `engine`.
async fn explain_analyze(engine: &Engine, sql: &str) -> String {
    let batches = engine
        .sql(&format!("EXPLAIN ANALYZE {sql}"))
        .await
        .expect("plan EXPLAIN ANALYZE")
        .collect()
        .await
        .expect("run EXPLAIN ANALYZE");
    let mut text = String::new();
    for batch in &batches {
        for column in rows_text(batch) {
            text.push_str(&column);
            text.push('\n');
        }
    }
    text
}

/// Each row of `batch` as its values joined by spaces.
fn rows_text(batch: &datafusion::arrow::record_batch::RecordBatch) -> Vec<String> {
    let columns: Vec<Vec<String>> = batch.columns().iter().map(slt::column_text).collect();
    (0..batch.num_rows())
        .map(|row| {
            columns
                .iter()
                .map(|column| column[row].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn query_of(name: &str) -> String {
    tpch::query_statements(&slt_file(name))
        .into_iter()
        .next()
        .expect("a query in the file")
}

const QUERIES: [&str; 22] = [
    "q01", "q02", "q03", "q04", "q05", "q06", "q07", "q08", "q09", "q10", "q11", "q12", "q13",
    "q14", "q15", "q16", "q17", "q18", "q19", "q20", "q21", "q22",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_on_a_two_executor_cluster() {
    tokio::task::spawn_blocking(databases)
        .await
        .expect("loading the TPC-H tables");
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(&[5432, 5432]))
        .await
        .expect("start the cluster");

    // The 22 answers, from each placement.
    let mut failures = Vec::new();
    for placement in [
        Placement::Split,
        Placement::Postgres,
        Placement::MariaDb,
        Placement::Sqlite,
    ] {
        let engine = client(&cluster, placement).await;
        for name in QUERIES {
            let started = Instant::now();
            let outcome = run_file(&engine, name).await;
            eprintln!("{placement:?} {name}: {:?}", started.elapsed());
            if let Err(report) = outcome {
                failures.push(format!("{placement:?} {name}: {report}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nlogs in {}",
        failures.join("\n\n"),
        cluster.dir.path().display()
    );

    // Stages, and the executors that ran the ODBC tasks: in the split placement Q9 joins
    // lineitem and orders (PostgreSQL, read in two key ranges each) with tables of MariaDB and
    // SQLite.
    let engine = client(&cluster, Placement::Split).await;
    for name in ["q03", "q18"] {
        eprintln!(
            "{name}:\n{}",
            explain_analyze(&engine, &query_of(name)).await
        );
    }
    let plan = explain_analyze(&engine, &query_of("q09")).await;
    eprintln!("q09:\n{plan}");
    assert!(
        plan.matches("SuccessfulStage[").count() >= 2,
        "Q9 runs in stages:\n{plan}"
    );
    assert!(plan.contains("OdbcExec: source=pg"), "{plan}");
    for (id, _) in &cluster.executors {
        assert!(
            plan.contains(&format!(" on executor {id}=")),
            "executor {id} ran none of Q9's ODBC tasks:\n{plan}"
        );
    }
    assert!(
        plan.contains("runtime_filter=dropped"),
        "the probe-side scans say their join's filter was dropped:\n{plan}"
    );

    // No process wrote the password.
    for (process, log) in cluster.logs() {
        assert!(!log.is_empty(), "{process} wrote no log");
        assert!(
            !log.contains(&databases().password),
            "{process}'s log holds the PostgreSQL password"
        );
    }

    // An executor killed while queries run: Q9 over the three databases, whose stages read
    // each other's shuffle files across the executors.
    let engine = client(&cluster, Placement::Split).await;
    let load = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(25) {
                let outcome = run_file(&engine, "q09").await;
                outcomes.push((start.elapsed(), outcome));
            }
            outcomes
        })
    };
    let kill_offset = Duration::from_millis(2000);
    tokio::time::sleep(kill_offset).await;
    cluster.executors[1].1.kill();
    let outcomes = load.await.expect("the load");
    let wrong: Vec<_> = outcomes
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().err())
        .filter(|report| report.contains("mismatch"))
        .collect();
    assert!(wrong.is_empty(), "wrong answers after the kill: {wrong:?}");
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|(at, outcome)| {
            let report = outcome.as_ref().err()?;
            let first_line = report.lines().next().unwrap_or_default();
            Some(format!(
                "{:?} after the kill: {}",
                at.saturating_sub(kill_offset),
                first_line.chars().take(300).collect::<String>()
            ))
        })
        .collect();
    let answered_after_kill = outcomes
        .iter()
        .filter(|(at, outcome)| *at > kill_offset && outcome.is_ok())
        .count();
    eprintln!(
        "executor killed {kill_offset:?} into a Q9 load: {} queries, {} failed, {answered_after_kill} \
         answered right after the kill; failures: {failures:#?}",
        outcomes.len(),
        failures.len(),
    );
    assert!(answered_after_kill > 0, "nothing answered after the kill");
    // The survivor answers once the scheduler has dropped the dead executor.
    let last = run_file(&engine, "q09").await;
    assert!(last.is_ok(), "after the kill: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_cannot_reach_a_source_names_it() {
    tokio::task::spawn_blocking(databases)
        .await
        .expect("loading the TPC-H tables");
    // Port 9 (discard) on loopback: nothing listens there.
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(&[9]))
        .await
        .expect("start the cluster");
    let engine = client(&cluster, Placement::Postgres).await;
    let err = engine
        .sql("SELECT count(*) FROM region")
        .await
        .expect("planned on the client")
        .collect()
        .await
        .expect_err("the only executor cannot open pg");
    let message = err.to_string();
    let (id, _) = &cluster.executors[0];
    assert!(
        message.contains(&format!("executor {id} cannot reach source `pg`")),
        "{message}"
    );
    // MariaDB, which it reaches, still answers.
    let batches = engine
        .sql("SELECT count(*) AS n FROM maria.ibarrow_test.tpch_region")
        .await
        .expect("planned")
        .collect()
        .await
        .expect("maria is reachable");
    let counted = rows_text(&batches[0]);
    assert_eq!(counted, vec!["5".to_string()], "TPC-H has 5 regions");

    // Writes stay local: a retried task would write again.
    let writer = Engine::builder()
        .source_config(
            "lite",
            SourceConfig {
                connection_string: Some(databases().sqlite.clone()),
                writable: Some(true),
                ..SourceConfig::default()
            },
        )
        .cluster(&cluster.url)
        .build()
        .await
        .expect("a client of the cluster");
    let insert = "INSERT INTO lite.main.tpch_region VALUES (99, 'NOWHERE', 'none')";
    let refused: Result<(), String> = match writer.sql(insert).await {
        Ok(frame) => frame.collect().await.map(|_| ()).map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    let message = refused.expect_err("an INSERT on a cluster is refused");
    assert!(message.contains("does not run on a cluster"), "{message}");
}
