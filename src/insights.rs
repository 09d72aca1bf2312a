//! Query insights (`Engine::insights`, the REPL's `\stats`, `GET /v1/insights`): the
//! statements that took the most time in all and per run (p95), per user and per source (rows,
//! bytes, time in the driver), the result cache's hit rate, and index advice — remote scans
//! that returned a small share of a large table through a filter sent to the database, on
//! columns that no index of that table leads with, shown as `CREATE INDEX` with the evidence.
//!
//! The monitor (src/monitor.rs) feeds every finished query in; statements are grouped by their
//! text with literals masked, so `id = 7` and `id = 8` count as one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use ibarrow_sql::RemoteTable;
use serde::Serialize;

/// Statements kept; past it, the one with the least total time goes.
const MAX_STATEMENTS: usize = 500;
/// Durations kept per statement for its p95.
const DURATIONS_KEPT: usize = 256;
/// How many statements each ranking shows.
const TOP: usize = 10;
/// Tables smaller than this never get index advice: a full scan of them is cheap.
pub const ADVICE_MIN_TABLE_ROWS: u64 = 10_000;
/// A scan counts as selective when it returns at most this share of the table.
const ADVICE_MAX_SHARE: f64 = 0.01;
/// Candidates kept for index advice; past it, the one with the fewest scans goes.
const MAX_CANDIDATES: usize = 200;
/// Users counted; past it, new users' queries count in the other totals only.
const MAX_USERS: usize = 10_000;
/// The longest statement text kept (longer ones are cut, and count together).
const MAX_STATEMENT_CHARS: usize = 2_000;

/// What insights know about one remote scan of a finished query.
#[derive(Debug, Clone)]
pub struct ScanFacts {
    /// The source scanned.
    pub source: String,
    /// Rows the scan returned.
    pub rows: u64,
    /// Arrow bytes the scan returned.
    pub bytes: u64,
    /// Time spent executing and fetching in the driver.
    pub driver_time: Duration,
    /// The table and filter columns, when filters were sent, no join narrowed the scan
    /// further, and the table's size is known.
    pub filtered: Option<ibarrow_providers::FilteredScan>,
}

/// The report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Insights {
    /// The statements that took the most time in all, most first (at most 10).
    pub statements_by_total_time: Vec<StatementInsight>,
    /// The statements with the slowest p95, slowest first (at most 10).
    pub statements_by_p95: Vec<StatementInsight>,
    /// Totals per user, most time first.
    pub users: Vec<UserInsight>,
    /// Totals per source, by name.
    pub sources: Vec<SourceInsight>,
    /// What the result cache did.
    pub cache: CacheInsight,
    /// Indexes the databases lack for filters sent to them, with the evidence.
    pub index_advice: Vec<IndexAdvice>,
}

/// One statement and its totals since the engine started.
#[derive(Debug, Clone, Serialize)]
pub struct StatementInsight {
    /// The text with literals masked.
    pub statement: String,
    /// Times it ran, failed runs included.
    pub runs: u64,
    /// Runs that failed.
    pub errors: u64,
    /// Time of all runs together, in milliseconds.
    pub total_ms: f64,
    /// Mean time per run, in milliseconds.
    pub mean_ms: f64,
    /// The 95th percentile of the last 256 runs' times, in milliseconds.
    pub p95_ms: f64,
    /// Rows delivered, all runs together.
    pub rows: u64,
}

/// One user's queries and their totals.
#[derive(Debug, Clone, Serialize)]
pub struct UserInsight {
    /// The user's name.
    pub user: String,
    /// Queries run, refused ones included.
    pub queries: u64,
    /// Queries that failed or were refused.
    pub errors: u64,
    /// Time of the user's queries together, in milliseconds.
    pub total_ms: f64,
    /// Rows delivered to the user.
    pub rows: u64,
}

/// What the scans of one source returned, in all.
#[derive(Debug, Clone, Serialize)]
pub struct SourceInsight {
    /// The source's name.
    pub source: String,
    /// Rows its scans returned.
    pub rows: u64,
    /// Arrow bytes its scans returned.
    pub bytes: u64,
    /// Time spent executing and fetching in the driver, all scans together.
    pub driver_ms: f64,
}

/// What the result cache did for the queries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheInsight {
    /// Queries answered from the cache.
    pub hits: u64,
    /// Cacheable queries not found in it.
    pub misses: u64,
    /// Queries that did not use it (not cacheable, writes, or turned off for the session).
    pub bypassed: u64,
    /// Hits among hits and misses; `None` before any cacheable query.
    pub hit_rate: Option<f64>,
}

/// An index the database lacks for filters sent to it, with the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct IndexAdvice {
    /// The source whose database lacks the index.
    pub source: String,
    /// The table, as the database names it (`schema.table`).
    pub table: String,
    /// The filter columns the index would be on.
    pub columns: Vec<String>,
    /// The statement to run on the database.
    pub create_index: String,
    /// Scans that returned a small share of the table through these columns.
    pub scans: u64,
    /// Rows those scans returned, in all.
    pub rows_returned: u64,
    /// The table's rows, as the database estimates them (each scan read about these).
    pub table_rows: u64,
    /// One of the statements, literals masked.
    pub example: String,
}

/// A table and filter columns that scans found selective; the engine checks its indexes.
#[derive(Debug, Clone)]
pub struct AdviceCandidate {
    /// The source scanned.
    pub source: String,
    /// The table in the source's database.
    pub table: RemoteTable,
    /// The filter columns sent to the database.
    pub columns: Vec<String>,
    /// Selective scans seen.
    pub scans: u64,
    /// Rows those scans returned, in all.
    pub rows_returned: u64,
    /// The table's rows, as the database estimates them.
    pub table_rows: u64,
    /// One of the statements, literals masked.
    pub example: String,
}

#[derive(Default)]
struct StatementTotals {
    runs: u64,
    errors: u64,
    total: Duration,
    rows: u64,
    recent: VecDeque<Duration>,
}

#[derive(Default)]
struct UserTotals {
    queries: u64,
    errors: u64,
    total: Duration,
    rows: u64,
}

#[derive(Default)]
struct SourceTotals {
    rows: u64,
    bytes: u64,
    driver_time: Duration,
}

/// What the monitor has fed in so far.
#[derive(Default)]
pub struct InsightsStore {
    statements: HashMap<String, StatementTotals>,
    users: BTreeMap<String, UserTotals>,
    sources: BTreeMap<String, SourceTotals>,
    cache: CacheInsight,
    candidates: HashMap<(String, RemoteTable, Vec<String>), AdviceCandidate>,
}

impl InsightsStore {
    /// A query that ran: its [`fingerprint`], user, time, rows, whether it failed, what the
    /// result cache did (`hit`, `miss`, `bypass`, or empty) and its scans.
    #[allow(clippy::too_many_arguments)]
    pub fn finished(
        &mut self,
        statement: String,
        user: &str,
        elapsed: Duration,
        rows: u64,
        failed: bool,
        cache: &str,
        scans: &[ScanFacts],
    ) {
        if !self.statements.contains_key(&statement) && self.statements.len() >= MAX_STATEMENTS {
            let least = self
                .statements
                .iter()
                .min_by_key(|(_, totals)| totals.total)
                .map(|(text, _)| text.clone());
            if let Some(least) = least {
                self.statements.remove(&least);
            }
        }
        let totals = self.statements.entry(statement.clone()).or_default();
        totals.runs += 1;
        totals.errors += u64::from(failed);
        totals.total += elapsed;
        totals.rows += rows;
        if totals.recent.len() == DURATIONS_KEPT {
            totals.recent.pop_front();
        }
        totals.recent.push_back(elapsed);
        if let Some(totals) = self.user(user) {
            totals.queries += 1;
            totals.errors += u64::from(failed);
            totals.total += elapsed;
            totals.rows += rows;
        }
        match cache {
            "hit" => self.cache.hits += 1,
            "miss" => self.cache.misses += 1,
            "bypass" => self.cache.bypassed += 1,
            _ => {}
        }
        for scan in scans {
            let source = self.sources.entry(scan.source.clone()).or_default();
            source.rows += scan.rows;
            source.bytes += scan.bytes;
            source.driver_time += scan.driver_time;
            if failed {
                continue;
            }
            let Some(filtered) = &scan.filtered else {
                continue;
            };
            let selective = filtered.table_rows >= ADVICE_MIN_TABLE_ROWS
                && (scan.rows as f64) <= filtered.table_rows as f64 * ADVICE_MAX_SHARE;
            if !selective {
                continue;
            }
            let key = candidate_key(&scan.source, &filtered.table, &filtered.columns);
            if !self.candidates.contains_key(&key) && self.candidates.len() >= MAX_CANDIDATES {
                let fewest = self
                    .candidates
                    .iter()
                    .min_by_key(|(_, candidate)| candidate.scans)
                    .map(|(key, _)| key.clone());
                if let Some(fewest) = fewest {
                    self.candidates.remove(&fewest);
                }
            }
            let candidate = self
                .candidates
                .entry(key)
                .or_insert_with(|| AdviceCandidate {
                    source: scan.source.clone(),
                    table: filtered.table.clone(),
                    columns: filtered.columns.clone(),
                    scans: 0,
                    rows_returned: 0,
                    table_rows: filtered.table_rows,
                    example: statement.clone(),
                });
            candidate.scans += 1;
            candidate.rows_returned += scan.rows;
            candidate.table_rows = filtered.table_rows;
        }
    }

    /// A query refused before it ran.
    pub fn refused(&mut self, user: &str) {
        if let Some(totals) = self.user(user) {
            totals.queries += 1;
            totals.errors += 1;
        }
    }

    fn user(&mut self, user: &str) -> Option<&mut UserTotals> {
        if !self.users.contains_key(user) && self.users.len() >= MAX_USERS {
            return None;
        }
        Some(self.users.entry(user.to_string()).or_default())
    }

    /// Forgets `candidate`: its table has a fitting index.
    pub fn forget(&mut self, candidate: &AdviceCandidate) {
        self.candidates.remove(&candidate_key(
            &candidate.source,
            &candidate.table,
            &candidate.columns,
        ));
    }

    /// The report without index advice, and the candidates for it.
    pub fn report(&self) -> (Insights, Vec<AdviceCandidate>) {
        let mut statements: Vec<StatementInsight> = self
            .statements
            .iter()
            .map(|(text, totals)| {
                let mut recent: Vec<Duration> = totals.recent.iter().copied().collect();
                recent.sort_unstable();
                let p95 = recent
                    .get(((recent.len() as f64 - 1.0) * 0.95).round() as usize)
                    .copied()
                    .unwrap_or_default();
                StatementInsight {
                    statement: text.clone(),
                    runs: totals.runs,
                    errors: totals.errors,
                    total_ms: millis(totals.total),
                    mean_ms: millis(totals.total) / totals.runs.max(1) as f64,
                    p95_ms: millis(p95),
                    rows: totals.rows,
                }
            })
            .collect();
        statements.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        let by_total: Vec<_> = statements.iter().take(TOP).cloned().collect();
        statements.sort_by(|a, b| b.p95_ms.total_cmp(&a.p95_ms));
        let by_p95: Vec<_> = statements.into_iter().take(TOP).collect();
        let mut users: Vec<UserInsight> = self
            .users
            .iter()
            .map(|(user, totals)| UserInsight {
                user: user.clone(),
                queries: totals.queries,
                errors: totals.errors,
                total_ms: millis(totals.total),
                rows: totals.rows,
            })
            .collect();
        users.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        let sources = self
            .sources
            .iter()
            .map(|(source, totals)| SourceInsight {
                source: source.clone(),
                rows: totals.rows,
                bytes: totals.bytes,
                driver_ms: millis(totals.driver_time),
            })
            .collect();
        let mut cache = self.cache.clone();
        let cacheable = cache.hits + cache.misses;
        cache.hit_rate = (cacheable > 0).then(|| cache.hits as f64 / cacheable as f64);
        let mut candidates: Vec<AdviceCandidate> = self.candidates.values().cloned().collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.scans));
        (
            Insights {
                statements_by_total_time: by_total,
                statements_by_p95: by_p95,
                users,
                sources,
                cache,
                index_advice: Vec::new(),
            },
            candidates,
        )
    }
}

/// Filters on the same columns in another order are one candidate.
fn candidate_key(
    source: &str,
    table: &RemoteTable,
    columns: &[String],
) -> (String, RemoteTable, Vec<String>) {
    let mut columns = columns.to_vec();
    columns.sort_unstable();
    (source.to_string(), table.clone(), columns)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `sql` with its literals masked (strings and numbers become `?`) and its blanks collapsed:
/// runs of one statement with other values count together.
pub fn fingerprint(sql: &str) -> String {
    let masked = crate::monitor::mask_string_literals(sql);
    let mut out = String::with_capacity(masked.len());
    let mut previous: Option<char> = None;
    let mut chars = masked.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            previous = Some(' ');
            continue;
        }
        let starts_number = c.is_ascii_digit()
            && !previous.is_some_and(|p| p.is_alphanumeric() || matches!(p, '_' | '$' | '"' | '`'));
        if starts_number {
            while chars
                .peek()
                .is_some_and(|n| n.is_ascii_digit() || matches!(n, '.' | 'e' | 'E'))
            {
                chars.next();
            }
            out.push('?');
            previous = Some('?');
            continue;
        }
        out.push(c);
        previous = Some(c);
    }
    // Lists of another length are the same statement: `IN (?, ?, ?)` is `IN (?)`.
    for list in ["'?', '?'", "?, ?"] {
        while out.contains(list) {
            out = out.replace(list, &list[..list.len() / 2 - 1]);
        }
    }
    let out = out.trim_end();
    match out.char_indices().nth(MAX_STATEMENT_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out.to_string(),
    }
}

/// `CREATE INDEX` for `columns` of `table`, in `dialect`; `None` when a name cannot be quoted.
pub fn create_index(
    dialect: ibarrow_sql::Dialect,
    table: &RemoteTable,
    columns: &[String],
) -> Option<String> {
    // MySQL takes names of at most 64 characters.
    let name: String = format!("{}_{}_idx", table.name, columns.join("_"))
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .take(60)
        .collect();
    let quoted: Vec<String> = columns
        .iter()
        .map(|c| dialect.quote_identifier(c).ok())
        .collect::<Option<_>>()?;
    Some(format!(
        "CREATE INDEX {} ON {} ({})",
        dialect.quote_identifier(&name).ok()?,
        table.render(dialect).ok()?,
        quoted.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_with_other_values_share_a_fingerprint() {
        assert_eq!(
            fingerprint("SELECT a1, \"b2\" FROM t9  WHERE id = 7 AND x > 1.5e3 AND s = 'x'"),
            "SELECT a1, \"b2\" FROM t9 WHERE id = ? AND x > ? AND s = '?'"
        );
        assert_eq!(
            fingerprint("SELECT * FROM t WHERE id = $1"),
            "SELECT * FROM t WHERE id = $1"
        );
        assert_eq!(
            fingerprint("SELECT * FROM t WHERE id IN (1, 2, 3) OR s IN ('a', 'b')"),
            fingerprint("SELECT * FROM t WHERE id IN (4) OR s IN ('c')")
        );
    }

    fn scan(rows: u64, table_rows: u64) -> ScanFacts {
        ScanFacts {
            source: "pg".into(),
            rows,
            bytes: rows * 8,
            driver_time: Duration::from_millis(5),
            filtered: Some(ibarrow_providers::FilteredScan {
                table: RemoteTable::new(Some("public"), "orders"),
                columns: vec!["customer".into()],
                table_rows,
            }),
        }
    }

    #[test]
    fn rankings_totals_and_candidates_follow_what_ran() {
        let mut store = InsightsStore::default();
        for id in 0..20 {
            let sql = format!("SELECT * FROM pg.public.orders WHERE customer = {id}");
            store.finished(
                fingerprint(&sql),
                "alice",
                Duration::from_millis(10 + id),
                3,
                false,
                "miss",
                &[scan(3, 100_000)],
            );
        }
        store.finished(
            fingerprint("SELECT 1"),
            "bob",
            Duration::from_millis(200),
            1,
            false,
            "hit",
            &[],
        );
        // Not selective (half the table), and a small table: no advice from these.
        store.finished(
            fingerprint("SELECT * FROM pg.public.orders WHERE customer > 1"),
            "bob",
            Duration::from_millis(1),
            50_000,
            false,
            "",
            &[scan(50_000, 100_000)],
        );
        store.finished(
            fingerprint("SELECT * FROM pg.public.small WHERE customer = 1"),
            "bob",
            Duration::from_millis(1),
            1,
            false,
            "",
            &[scan(1, 500)],
        );
        store.refused("carol");
        let (report, candidates) = store.report();
        assert_eq!(
            report.statements_by_total_time[0].statement,
            "SELECT * FROM pg.public.orders WHERE customer = ?"
        );
        assert_eq!(report.statements_by_total_time[0].runs, 20);
        assert_eq!(
            report.statements_by_total_time[0].total_ms,
            (10..30).sum::<u64>() as f64
        );
        assert_eq!(report.statements_by_p95[0].statement, "SELECT ?");
        let users: Vec<(&str, u64, u64)> = report
            .users
            .iter()
            .map(|u| (u.user.as_str(), u.queries, u.errors))
            .collect();
        assert!(
            users.contains(&("alice", 20, 0)) && users.contains(&("carol", 1, 1)),
            "{users:?}"
        );
        assert_eq!(report.sources[0].rows, 20 * 3 + 50_000 + 1);
        assert_eq!(report.cache.hit_rate, Some(1.0 / 21.0));
        assert_eq!(candidates.len(), 1, "{candidates:?}");
        assert_eq!((candidates[0].scans, candidates[0].rows_returned), (20, 60));
    }

    #[test]
    fn create_index_quotes_per_dialect() {
        let table = RemoteTable::new(Some("shop"), "order lines");
        assert_eq!(
            create_index(ibarrow_sql::Dialect::MySql, &table, &["customer id".into()]).unwrap(),
            "CREATE INDEX `order_lines_customer_id_idx` ON `shop`.`order lines` (`customer id`)"
        );
    }
}
