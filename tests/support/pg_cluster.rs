//! A PostgreSQL cluster of one test alone (initdb in a temporary folder, its own loopback
//! port), so that restarting or killing it cannot disturb the tests that share the machine's
//! servers; and streaming replicas of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL cluster of this test alone; stopped when dropped.
pub struct PrivateCluster {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
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
    /// A new cluster in a temporary folder, started; its superuser is `ibarrow`.
    pub fn start() -> Self {
        let cluster = Self::unstarted();
        cluster.run(
            "initdb",
            &["-A", "trust", "-U", "ibarrow", "-N", "-D"],
            &[&cluster.data],
        );
        cluster.pg_ctl("start");
        cluster
    }

    /// A streaming replica of `primary` (`pg_basebackup`), started: a hot standby that
    /// answers reads with the primary's data and refuses writes.
    pub fn replica_of(primary: &PrivateCluster) -> Self {
        let cluster = Self::unstarted();
        let port = primary.port.to_string();
        cluster.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "ibarrow",
                "-X",
                "stream",
                "-R",
                "-D",
            ],
            &[&cluster.data],
        );
        cluster.pg_ctl("start");
        cluster
    }

    fn unstarted() -> Self {
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
        cluster
    }

    /// Stops the server at once: its sessions are cut (each told so, 57P01) and it takes no
    /// more connections. Not `-m immediate`: psqlODBC 13.02 can crash the process in
    /// `SQLFetch` when a server vanishes without a word while a cursor is being read (seen
    /// here), and these tests are about ibarrow's failover, not that driver bug.
    pub fn kill(&self) {
        self.run("pg_ctl", &["stop", "-w", "-m", "fast", "-D"], &[&self.data]);
    }

    /// Runs `sql` with psql as the superuser; its output, unaligned and without headers.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "ibarrow",
            "-d",
            "postgres",
        ];
        let options = ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql];
        self.run("psql", &[&args[..], &options[..]].concat(), &[])
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

    /// Runs a PostgreSQL tool and returns its output, trimmed; a failure fails the test.
    pub fn run(&self, program: &str, args: &[&str], paths: &[&Path]) -> String {
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
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `pg_ctl start`, `restart` …, waiting for it to finish.
    pub fn pg_ctl(&self, action: &str) {
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

    pub fn connection_string(&self) -> String {
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
