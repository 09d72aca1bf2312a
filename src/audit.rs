//! The audit log (`[audit]`): one JSON line per statement run through a session, allowed or
//! refused, appended to a file and/or the log. Each line carries `prev`, the SHA-256 of the
//! line before it, and `seq`, its number, so [`verify`] finds the first line that was altered,
//! deleted or moved. Rotation by size renames the file to `<file>.1` (older ones shift up) and
//! the new file continues the chain: its first `prev` is the hash of the last line rotated out.
//!
//! The chain shows tampering between lines; it cannot show the newest lines cut off, so the
//! head hash that `ibarrow audit verify` prints is worth keeping elsewhere (`log = true`
//! sends every line to the log too).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::access::AccessReport;
use crate::config::AuditConfig;
use crate::error::{Error, Result};

/// The `prev` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One statement, as the audit log records it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry<'a> {
    /// The user the statement ran as.
    pub user: &'a str,
    /// The user's roles when it ran.
    pub roles: &'a [String],
    /// The client the session named (`ibarrow-repl`, `python`, an HTTP `User-Agent`).
    pub client: &'a str,
    /// The client's IP address, for a statement that came over the network.
    pub ip: Option<&'a str>,
    /// The OS user who opened a session that runs as `user` (`ibarrow --user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<&'a str>,
    /// The statement with its string literals masked.
    pub statement: &'a str,
    /// What the statement reads and writes, as the access check saw it (`None`: not checked).
    #[serde(flatten)]
    pub access: Option<&'a AccessReport>,
    /// Rows the statement delivered (0 when refused).
    pub rows: u64,
    /// `ok`, `error`, `cancelled` or `refused`.
    pub outcome: &'a str,
    /// The error kind (`sql`, `timeout`, ...) of a failed or refused statement.
    pub error_kind: Option<&'a str>,
    /// Why access was denied, for a refused statement.
    pub denial: Option<&'a str>,
}

/// The line as written: the entry between its number and time and its chain link.
#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    time: String,
    #[serde(flatten)]
    entry: &'a AuditEntry<'a>,
    prev: &'a str,
}

#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    file: std::fs::File,
    bytes: u64,
    max_bytes: Option<u64>,
}

#[derive(Debug)]
struct Chain {
    seq: u64,
    last_hash: String,
    file: Option<FileSink>,
}

/// The engine's audit log; writes are serialized, one line at a time.
#[derive(Debug)]
pub struct AuditLog {
    chain: Mutex<Chain>,
    to_log: bool,
}

/// The SHA-256 of `bytes` as 64 lowercase hex digits, as the chain links lines.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl AuditLog {
    /// Opens (or creates) the file of `config`, continuing the chain of the lines already in
    /// it.
    pub fn open(config: &AuditConfig) -> Result<Self> {
        let mut chain = Chain {
            seq: 0,
            last_hash: GENESIS.to_string(),
            file: None,
        };
        if let Some(path) = &config.file {
            let path = PathBuf::from(path);
            let error = |err: std::io::Error| Error::Config {
                location: "[audit] file".into(),
                message: format!("{} cannot be opened for appending: {err}", path.display()),
            };
            if let Some((seq, hash)) = last_link(&path).map_err(error)? {
                chain.seq = seq;
                chain.last_hash = hash;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(error)?;
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            chain.file = Some(FileSink {
                path,
                file,
                bytes,
                max_bytes: config.max_bytes.filter(|&b| b > 0),
            });
        }
        Ok(Self {
            chain: Mutex::new(chain),
            to_log: config.log.unwrap_or(config.file.is_none()),
        })
    }

    /// Appends `entry`. A line that cannot be written is reported in the log as an error (the
    /// statement has run by then; refusing later ones is the operator's call).
    pub fn record(&self, entry: &AuditEntry) {
        let Ok(mut chain) = self.chain.lock() else {
            return;
        };
        let seq = chain.seq + 1;
        let time = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let line = Line {
            seq,
            time,
            entry,
            prev: &chain.last_hash,
        };
        let Ok(text) = serde_json::to_string(&line) else {
            return;
        };
        if self.to_log {
            tracing::info!(target: "ibarrow::audit", audit = %text, "audit");
        }
        if let Some(sink) = chain.file.as_mut()
            && let Err(err) = sink.append(&text)
        {
            tracing::error!(
                path = %sink.path.display(),
                error = %err,
                "the audit line could not be written"
            );
            return;
        }
        chain.seq = seq;
        chain.last_hash = sha256_hex(text.as_bytes());
    }
}

impl FileSink {
    fn append(&mut self, text: &str) -> std::io::Result<()> {
        let size = text.len() as u64 + 1;
        if self
            .max_bytes
            .is_some_and(|max| self.bytes > 0 && self.bytes + size > max)
        {
            self.rotate()?;
        }
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        self.bytes += size;
        Ok(())
    }

    /// `<file>` becomes `<file>.1`, `<file>.1` becomes `<file>.2`, …; a fresh file follows.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let mut highest = 0;
        while numbered(highest + 1).exists() {
            highest += 1;
        }
        for n in (1..=highest).rev() {
            std::fs::rename(numbered(n), numbered(n + 1))?;
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.bytes = 0;
        Ok(())
    }
}

/// The `seq` and hash of the last line of an existing audit file.
fn last_link(path: &Path) -> std::io::Result<Option<(u64, String)>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut last = None;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    Ok(last.map(|line| {
        let seq = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64))
            .unwrap_or(0);
        (seq, sha256_hex(line.as_bytes()))
    }))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every line links to the one before it.
    Intact {
        /// How many lines were checked.
        lines: u64,
        /// The `seq` of the first line (0 without lines).
        first_seq: u64,
        /// The `seq` of the last line (0 without lines).
        last_seq: u64,
        /// The hash of the last line, to keep elsewhere and compare later.
        head: String,
        /// The first line continues a rotated-out file (its `prev` is not the genesis).
        continues: bool,
    },
    /// The first line that does not follow from the one before it.
    Broken {
        /// The file that holds the line.
        file: String,
        /// Its line number in that file, from 1.
        line: u64,
        /// What is wrong with it.
        problem: String,
    },
}

/// Checks the chain through `files`, oldest first (e.g. `audit.jsonl.2 audit.jsonl.1
/// audit.jsonl`).
pub fn verify(files: &[PathBuf]) -> std::io::Result<Verdict> {
    let mut all = Vec::new();
    for path in files {
        let file = std::fs::File::open(path)?;
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            all.push((path.display().to_string(), index as u64 + 1, line?));
        }
    }
    let links: Vec<Option<(u64, String)>> = all
        .iter()
        .map(|(_, _, line)| {
            let value = serde_json::from_str::<serde_json::Value>(line).ok()?;
            let seq = value.get("seq")?.as_u64()?;
            let prev = value.get("prev")?.as_str()?.to_string();
            Some((seq, prev))
        })
        .collect();
    let where_is = |wanted: u64| {
        all.iter()
            .zip(&links)
            .find(|(_, link)| link.as_ref().is_some_and(|(seq, _)| *seq == wanted))
            .map(|((file, line, _), _)| format!("{file} line {line}"))
    };
    let mut previous: Option<(u64, String)> = None;
    let (mut first_seq, mut continues) = (0, false);
    for ((file, number, line), link) in all.iter().zip(&links) {
        let broken = |problem: String| {
            Ok(Verdict::Broken {
                file: file.clone(),
                line: *number,
                problem,
            })
        };
        let Some((seq, prev)) = link else {
            return broken("not an audit line (no `seq` or `prev`): it was altered or cut".into());
        };
        match &previous {
            None => {
                first_seq = *seq;
                continues = prev != GENESIS;
                if prev == GENESIS && *seq != 1 {
                    return broken(format!(
                        "starts the chain with seq {seq}, not 1: lines before it are missing or \
                         it was altered"
                    ));
                }
            }
            Some((previous_seq, previous_hash)) => {
                let expected = previous_seq + 1;
                if *seq != expected {
                    return broken(match where_is(expected) {
                        Some(place) => format!(
                            "seq {seq} follows seq {previous_seq}: lines were reordered (seq \
                             {expected} is at {place})"
                        ),
                        None if *seq > expected => format!(
                            "seq {seq} follows seq {previous_seq}: {} line(s) missing before it",
                            seq - expected
                        ),
                        None => format!(
                            "seq {seq} follows seq {previous_seq}: lines were reordered or copied"
                        ),
                    });
                }
                if prev != previous_hash {
                    return broken(format!(
                        "its `prev` does not match the hash of the line before it (seq \
                         {previous_seq}): that line was altered, or this one was"
                    ));
                }
            }
        }
        previous = Some((*seq, sha256_hex(line.as_bytes())));
    }
    Ok(match previous {
        Some((last_seq, head)) => Verdict::Intact {
            lines: all.len() as u64,
            first_seq,
            last_seq,
            head,
            continues,
        },
        None => Verdict::Intact {
            lines: 0,
            first_seq: 0,
            last_seq: 0,
            head: GENESIS.to_string(),
            continues: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(statement: &'a str, roles: &'a [String]) -> AuditEntry<'a> {
        AuditEntry {
            user: "alice",
            roles,
            client: "test",
            ip: Some("127.0.0.1"),
            opened_by: None,
            statement,
            access: None,
            rows: 3,
            outcome: "ok",
            error_kind: None,
            denial: None,
        }
    }

    fn write_lines(config: &AuditConfig, count: usize) {
        let log = AuditLog::open(config).unwrap();
        let roles = vec!["analyst".to_string()];
        for i in 0..count {
            log.record(&entry(&format!("SELECT {i}"), &roles));
        }
    }

    fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<String>)) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        change(&mut lines);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_untouched_chain_verifies_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig {
            file: Some(path.display().to_string()),
            ..AuditConfig::default()
        };
        write_lines(&config, 3);
        write_lines(&config, 2); // a restart continues the chain
        match verify(std::slice::from_ref(&path)).unwrap() {
            Verdict::Intact {
                lines, last_seq, ..
            } => assert_eq!((lines, last_seq), (5, 5)),
            broken => panic!("{broken:?}"),
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["user"], "alice");
        assert_eq!(first["roles"][0], "analyst");
    }

    #[test]
    fn an_edited_a_deleted_and_a_reordered_line_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig {
            file: Some(path.display().to_string()),
            ..AuditConfig::default()
        };
        type Tamper = fn(&mut Vec<String>);
        let cases: [(&str, Tamper, u64, &str); 3] = [
            (
                "edited",
                |l| l[2] = l[2].replace("\"rows\":3", "\"rows\":4"),
                4,
                "altered",
            ),
            ("deleted", |l| drop(l.remove(2)), 3, "missing"),
            ("reordered", |l| l.swap(1, 2), 2, "reordered"),
        ];
        for (what, change, line, problem_says) in cases {
            let _ = std::fs::remove_file(&path);
            write_lines(&config, 6);
            rewrite(&path, change);
            match verify(std::slice::from_ref(&path)).unwrap() {
                Verdict::Broken {
                    line: found,
                    problem,
                    ..
                } => {
                    assert_eq!(found, line, "{what}: {problem}");
                    assert!(problem.contains(problem_says), "{what}: {problem}");
                }
                intact => panic!("{what} line not found: {intact:?}"),
            }
        }
    }

    #[test]
    fn rotation_keeps_the_chain_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig {
            file: Some(path.display().to_string()),
            max_bytes: Some(600),
            log: Some(false),
        };
        write_lines(&config, 12);
        let mut files: Vec<PathBuf> = (1..10)
            .map(|n| dir.path().join(format!("audit.jsonl.{n}")))
            .filter(|p| p.exists())
            .collect();
        assert!(files.len() >= 2, "the file was rotated: {files:?}");
        files.reverse();
        files.push(path.clone());
        match verify(&files).unwrap() {
            Verdict::Intact {
                lines, first_seq, ..
            } => assert_eq!((lines, first_seq), (12, 1)),
            broken => panic!("{broken:?}"),
        }
        // The newest file alone continues a chain, and says so.
        match verify(std::slice::from_ref(&path)).unwrap() {
            Verdict::Intact { continues, .. } => assert!(continues),
            broken => panic!("{broken:?}"),
        }
        // Leaving out a middle file breaks it.
        let without_middle = [files[0].clone(), path.clone()];
        assert!(matches!(
            verify(&without_middle).unwrap(),
            Verdict::Broken { .. }
        ));
    }
}
