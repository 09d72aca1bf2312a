//! Server restarts between and during queries. They run on a private PostgreSQL cluster
//! (initdb in a temporary folder, its own port) so that restarting it cannot disturb the
//! tests that share the machine's servers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ibarrow::{Engine, SourceConfig};

#[path = "support/background.rs"]
mod support;

/// A PostgreSQL cluster of this test alone; stopped when dropped.
struct PrivateCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The newest PostgreSQL server binaries of the machine (Debian keeps them per version).
fn server_binaries() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (scripts/test-services installs them)")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/<version>/bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}

impl PrivateCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for the cluster");
        let data = dir.path().join("data");
        let cluster = Self {
            bin: server_binaries(),
            data,
            port: free_port(),
            _dir: dir,
        };
        if running_as_root() {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(cluster._dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "could not hand the cluster folder to postgres"
            );
        }
        cluster.run(
            "initdb",
            &["-A", "trust", "-U", "ibarrow", "-N", "-D"],
            &[&cluster.data],
        );
        cluster.pg_ctl("start");
        cluster
    }

    /// A PostgreSQL tool, run as `postgres` when the tests run as root.
    fn command(&self, program: &str) -> Command {
        let binary = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        }
    }

    fn run(&self, program: &str, args: &[&str], paths: &[&Path]) {
        let output = self
            .command(program)
            .args(args)
            .args(paths)
            .output()
            .expect("running a PostgreSQL tool");
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        let log = log.to_string_lossy();
        self.run(
            "pg_ctl",
            &[action, "-w", "-m", "fast", "-o", &options, "-l", &log, "-D"],
            &[&self.data],
        );
    }

    fn connection_string(&self) -> String {
        format!(
            "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database=postgres;Uid=ibarrow;Pwd=unused;",
            self.port
        )
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .output();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

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
