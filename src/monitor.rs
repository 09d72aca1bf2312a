//! Query monitoring: for every query run through a [`crate::Session`] a record — id, user,
//! client, sources touched, duration, peak memory, rows and bytes per source, outcome and
//! error kind — logged when it ends (a warning above `[engine] slow_query_ms`), plus counters and a
//! duration histogram, read as [`MetricsSnapshot`] or as Prometheus text.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;
use futures::Stream;
use ibarrow_providers::OdbcExec;

use crate::error::{Error, ErrorKind};

/// Upper bounds (seconds) of the duration histogram's buckets.
const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every row was delivered.
    Ok,
    /// It failed, with this kind of error.
    Failed(ErrorKind),
    /// The caller stopped reading before the end (Ctrl-C, a dropped result).
    Cancelled,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed(_) => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Counters since the engine started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Queries by outcome (`ok`, `error`, `cancelled`, `refused`).
    pub queries: BTreeMap<&'static str, u64>,
    /// Failed or refused queries by error kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Rows and Arrow bytes read from each source.
    pub rows_by_source: BTreeMap<String, u64>,
    /// Arrow bytes read from each source.
    pub bytes_by_source: BTreeMap<String, u64>,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then the total.
    pub duration_buckets: Vec<(f64, u64)>,
    /// Finished queries timed (refused ones are not).
    pub duration_count: u64,
    /// Their durations added up, in seconds.
    pub duration_sum_secs: f64,
    /// Each endpoint of the sources with replicas.
    pub endpoints: Vec<EndpointMetrics>,
}

/// One Prometheus series per endpoint: its name, type, help and value.
type EndpointSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&EndpointMetrics) -> u64,
);

/// The counters of one endpoint of a source with replicas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointMetrics {
    /// The source.
    pub source: String,
    /// `primary`, `replica1` …
    pub endpoint: String,
    /// Calls started on it.
    pub statements: u64,
    /// Calls that could not start on it and went to another endpoint.
    pub failed_over: u64,
    /// Calls running on it now.
    pub active: usize,
    /// Whether its circuit breaker is open.
    pub breaker_open: bool,
}

impl MetricsSnapshot {
    /// The Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP ibarrow_queries_total Queries by outcome.\n");
        out.push_str("# TYPE ibarrow_queries_total counter\n");
        for (outcome, n) in &self.queries {
            out.push_str(&format!(
                "ibarrow_queries_total{{outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP ibarrow_query_errors_total Failed or refused queries by kind.\n");
        out.push_str("# TYPE ibarrow_query_errors_total counter\n");
        for (kind, n) in &self.errors {
            out.push_str(&format!(
                "ibarrow_query_errors_total{{kind=\"{kind}\"}} {n}\n"
            ));
        }
        for (name, help, values) in [
            (
                "ibarrow_source_rows_total",
                "Rows read from each source.",
                &self.rows_by_source,
            ),
            (
                "ibarrow_source_bytes_total",
                "Arrow bytes read from each source.",
                &self.bytes_by_source,
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (source, n) in values {
                let source = source.replace('\\', "\\\\").replace('"', "\\\"");
                out.push_str(&format!("{name}{{source=\"{source}\"}} {n}\n"));
            }
        }
        if !self.endpoints.is_empty() {
            let metric = |out: &mut String, name: &str, kind: &str, help: &str| {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            };
            let labels = |e: &EndpointMetrics| {
                let quote = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
                format!(
                    "source=\"{}\",endpoint=\"{}\"",
                    quote(&e.source),
                    quote(&e.endpoint)
                )
            };
            let series: [EndpointSeries; 4] = [
                (
                    "ibarrow_endpoint_statements_total",
                    "counter",
                    "Calls started on each endpoint.",
                    |e| e.statements,
                ),
                (
                    "ibarrow_endpoint_failovers_total",
                    "counter",
                    "Calls that moved from each endpoint to another.",
                    |e| e.failed_over,
                ),
                (
                    "ibarrow_endpoint_active",
                    "gauge",
                    "Calls running on each endpoint.",
                    |e| e.active as u64,
                ),
                (
                    "ibarrow_endpoint_breaker_open",
                    "gauge",
                    "1 while an endpoint's circuit breaker is not closed.",
                    |e| u64::from(e.breaker_open),
                ),
            ];
            for (name, kind, help, value) in series {
                metric(&mut out, name, kind, help);
                for e in &self.endpoints {
                    out.push_str(&format!("{name}{{{}}} {}\n", labels(e), value(e)));
                }
            }
        }
        out.push_str("# HELP ibarrow_query_duration_seconds Time from start to last row.\n");
        out.push_str("# TYPE ibarrow_query_duration_seconds histogram\n");
        for (bound, n) in &self.duration_buckets {
            out.push_str(&format!(
                "ibarrow_query_duration_seconds_bucket{{le=\"{bound}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "ibarrow_query_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
            self.duration_count
        ));
        out.push_str(&format!(
            "ibarrow_query_duration_seconds_sum {}\nibarrow_query_duration_seconds_count {}\n",
            self.duration_sum_secs, self.duration_count
        ));
        out
    }
}

/// Finished queries the monitor remembers for status pages ([`Monitor::recent`]).
const RECENT_QUERIES: usize = 50;

/// A finished (or refused) query, as a status page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentQuery {
    /// The query's id (`query_id` in the query log).
    pub id: u64,
    /// The user it ran as.
    pub user: String,
    /// The SQL as logged (literals masked when configured), cut to 500 characters.
    pub sql: String,
    /// Time from its start to its end (or its refusal).
    pub duration: Duration,
    /// Result rows delivered (0 for a refused query).
    pub rows: u64,
    /// `ok`, `error`, `cancelled` or `refused`.
    pub outcome: &'static str,
    /// The error kind of a failed or refused query, else empty.
    pub error_kind: &'static str,
    /// When it ended, in seconds since 1970.
    pub ended_at_unix: f64,
    /// The most memory the query's operators and scans held at once.
    pub peak_memory_bytes: usize,
    /// What the result cache did: `hit`, `miss`, `bypass`, or empty without a cache.
    pub cache: &'static str,
}

#[derive(Default)]
struct Totals {
    recent: VecDeque<RecentQuery>,
    queries: BTreeMap<&'static str, u64>,
    errors: BTreeMap<&'static str, u64>,
    rows_by_source: BTreeMap<String, u64>,
    bytes_by_source: BTreeMap<String, u64>,
    buckets: [u64; DURATION_BUCKETS.len()],
    duration_count: u64,
    duration_sum_secs: f64,
}

/// The engine's monitor: shared by its sessions.
pub struct Monitor {
    next_id: AtomicU64,
    totals: Mutex<Totals>,
    slow_query: Option<Duration>,
    mask_literals: bool,
    audit: Option<Arc<crate::audit::AuditLog>>,
    /// Where completed results of cacheable queries go.
    result_cache: Option<Arc<crate::result_cache::ResultCache>>,
    /// What `Engine::insights` reports (src/insights.rs).
    insights: Mutex<crate::insights::InsightsStore>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("slow_query", &self.slow_query)
            .field("mask_literals", &self.mask_literals)
            .finish()
    }
}

/// One query in flight.
#[derive(Debug)]
pub struct QueryRecord {
    /// The query's id, counted from 1 in this engine (`query_id` in the query log).
    pub id: u64,
    /// The user it runs as.
    pub user: String,
    /// The client the session named.
    pub client: String,
    /// The SQL as logged (string literals masked when configured).
    pub sql: String,
    /// The client's address, for a query that came over the network.
    pub ip: Option<String>,
    /// Who opened the session, when it runs as another user.
    pub opened_by: Option<String>,
    /// What the result cache did for the statement (`None`: no cache).
    pub cache: Option<crate::result_cache::CacheUse>,
    /// The user's roles and what the statement reads, for the audit log.
    pub roles: Vec<String>,
    /// What the statement reads and writes, as the access check saw it.
    pub access: Option<Arc<crate::access::AccessReport>>,
    started: Instant,
}

impl Monitor {
    /// A monitor that logs queries slower than `slow_query` as warnings, masking string literals
    /// in the log when `mask_literals`.
    pub fn new(slow_query: Option<Duration>, mask_literals: bool) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            totals: Mutex::new(Totals::default()),
            slow_query,
            mask_literals,
            insights: Mutex::default(),
            audit: None,
            result_cache: None,
        }
    }

    /// This monitor, keeping the results of cacheable queries in `cache` when they complete.
    pub fn with_result_cache(
        mut self,
        cache: Option<Arc<crate::result_cache::ResultCache>>,
    ) -> Self {
        self.result_cache = cache;
        self
    }

    /// This monitor, writing every query it records to `audit` too.
    pub fn with_audit(mut self, audit: Option<Arc<crate::audit::AuditLog>>) -> Self {
        self.audit = audit;
        self
    }

    fn audit(
        &self,
        record: &QueryRecord,
        rows: u64,
        outcome: &str,
        kind: Option<ErrorKind>,
        denial: Option<&str>,
    ) {
        let Some(audit) = &self.audit else {
            return;
        };
        let statement = mask_string_literals(&record.sql);
        audit.record(&crate::audit::AuditEntry {
            user: &record.user,
            roles: &record.roles,
            client: &record.client,
            ip: record.ip.as_deref(),
            opened_by: record.opened_by.as_deref(),
            statement: &statement,
            access: record.access.as_deref(),
            rows,
            outcome,
            error_kind: kind.map(ErrorKind::as_str),
            denial,
        });
    }

    /// Starts the record of a query `user` runs from `client`, with the next id; the SQL is
    /// masked when configured.
    pub fn begin(&self, user: &str, client: &str, sql: &str) -> QueryRecord {
        let sql = if self.mask_literals {
            mask_string_literals(sql)
        } else {
            sql.to_string()
        };
        QueryRecord {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user: user.to_string(),
            client: client.to_string(),
            sql,
            ip: None,
            opened_by: None,
            cache: None,
            roles: Vec::new(),
            access: None,
            started: Instant::now(),
        }
    }

    /// A query refused before it ran (input checks, rate limits, planning errors).
    pub fn refused(&self, record: QueryRecord, error: &Error) {
        let kind = error.kind();
        let denial = (kind == ErrorKind::AccessDenied).then(|| error.to_string());
        self.audit(&record, 0, "refused", Some(kind), denial.as_deref());
        if let Ok(mut totals) = self.totals.lock() {
            *totals.queries.entry("refused").or_default() += 1;
            *totals.errors.entry(kind.as_str()).or_default() += 1;
            remember(&mut totals.recent, &record, 0, "refused", kind.as_str(), 0);
        }
        if let Ok(mut insights) = self.insights.lock() {
            insights.refused(&record.user);
        }
        tracing::info!(
            query_id = record.id,
            user = %record.user,
            client = %record.client,
            sql = %record.sql,
            outcome = "refused",
            error_kind = kind.as_str(),
            "query refused"
        );
    }

    /// Records the end of a query whose plan is `plan`, which delivered `rows` and whose
    /// memory peaked at `peak_memory_bytes`.
    pub fn finish(
        &self,
        record: QueryRecord,
        plan: &dyn ExecutionPlan,
        outcome: Outcome,
        rows: u64,
        peak_memory_bytes: usize,
    ) {
        let elapsed = record.started.elapsed();
        let failed = match outcome {
            Outcome::Failed(kind) => Some(kind),
            _ => None,
        };
        self.audit(&record, rows, outcome.label(), failed, None);
        // Advice needs scans read to their end: a query cancelled, failed or cut short by a
        // limit anywhere in its plan returns few rows whatever its filters.
        let read_to_the_end = outcome == Outcome::Ok && !stops_early(plan);
        let mut scans = scan_facts(plan);
        if !read_to_the_end {
            for scan in &mut scans {
                scan.filtered = None;
            }
        }
        // Outside the lock: the text may be long.
        let statement = crate::insights::fingerprint(&record.sql);
        let mut per_source: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for scan in &scans {
            let entry = per_source.entry(scan.source.clone()).or_default();
            entry.0 += scan.rows;
            entry.1 += scan.bytes;
        }
        if let Ok(mut insights) = self.insights.lock() {
            insights.finished(
                statement,
                &record.user,
                elapsed,
                rows,
                failed.is_some(),
                record.cache.as_ref().map_or("", |c| c.label()),
                &scans,
            );
        }
        if let Ok(mut totals) = self.totals.lock() {
            *totals.queries.entry(outcome.label()).or_default() += 1;
            if let Outcome::Failed(kind) = outcome {
                *totals.errors.entry(kind.as_str()).or_default() += 1;
            }
            for (source, (rows, bytes)) in &per_source {
                *totals.rows_by_source.entry(source.clone()).or_default() += rows;
                *totals.bytes_by_source.entry(source.clone()).or_default() += bytes;
            }
            let secs = elapsed.as_secs_f64();
            for (bucket, bound) in totals.buckets.iter_mut().zip(DURATION_BUCKETS) {
                if secs <= bound {
                    *bucket += 1;
                }
            }
            totals.duration_count += 1;
            totals.duration_sum_secs += secs;
            let kind = match outcome {
                Outcome::Failed(kind) => kind.as_str(),
                _ => "",
            };
            remember(
                &mut totals.recent,
                &record,
                rows,
                outcome.label(),
                kind,
                peak_memory_bytes,
            );
        }
        let sources: Vec<String> = per_source
            .iter()
            .map(|(source, (rows, bytes))| format!("{source}:{rows} rows/{bytes} bytes"))
            .collect();
        let error_kind = match outcome {
            Outcome::Failed(kind) => kind.as_str(),
            _ => "",
        };
        let slow = self.slow_query.is_some_and(|limit| elapsed > limit);
        macro_rules! log_query {
            ($level:ident, $message:literal) => {
                tracing::$level!(
                    query_id = record.id,
                    user = %record.user,
                    client = %record.client,
                    sql = %record.sql,
                    sources = %sources.join(", "),
                    duration_ms = elapsed.as_millis() as u64,
                    peak_memory_bytes,
                    cache = record.cache.as_ref().map_or("", |c| c.label()),
                    outcome = outcome.label(),
                    error_kind,
                    $message
                )
            };
        }
        if slow {
            log_query!(warn, "slow query");
        } else {
            log_query!(info, "query finished");
        }
    }

    /// Forgets an advice candidate whose table turned out to have a fitting index.
    pub fn covered(&self, candidate: &crate::insights::AdviceCandidate) {
        if let Ok(mut insights) = self.insights.lock() {
            insights.forget(candidate);
        }
    }

    /// The insights report without index advice, and the candidates for it.
    pub fn insights(
        &self,
    ) -> (
        crate::insights::Insights,
        Vec<crate::insights::AdviceCandidate>,
    ) {
        self.insights
            .lock()
            .map(|store| store.report())
            .unwrap_or_default()
    }

    /// The last finished or refused queries, newest first.
    pub fn recent(&self) -> Vec<RecentQuery> {
        self.totals
            .lock()
            .map(|t| t.recent.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The counters and the duration histogram as they are now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let Ok(totals) = self.totals.lock() else {
            return MetricsSnapshot::default();
        };
        MetricsSnapshot {
            queries: totals.queries.clone(),
            errors: totals.errors.clone(),
            rows_by_source: totals.rows_by_source.clone(),
            bytes_by_source: totals.bytes_by_source.clone(),
            duration_buckets: DURATION_BUCKETS
                .iter()
                .copied()
                .zip(totals.buckets.iter().copied())
                .collect(),
            duration_count: totals.duration_count,
            duration_sum_secs: totals.duration_sum_secs,
            endpoints: Vec::new(),
        }
    }
}

fn remember(
    recent: &mut VecDeque<RecentQuery>,
    record: &QueryRecord,
    rows: u64,
    outcome: &'static str,
    error_kind: &'static str,
    peak_memory_bytes: usize,
) {
    if recent.len() == RECENT_QUERIES {
        recent.pop_front();
    }
    recent.push_back(RecentQuery {
        id: record.id,
        user: record.user.clone(),
        sql: record.sql.chars().take(500).collect(),
        duration: record.started.elapsed(),
        rows,
        outcome,
        error_kind,
        ended_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        peak_memory_bytes,
        cache: record.cache.as_ref().map_or("", |c| c.label()),
    });
}

/// Whether `plan` reads a source (holds an `OdbcExec`).
fn reads_a_source(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<OdbcExec>() || plan.children().iter().any(|c| reads_a_source(c.as_ref()))
}

/// Whether some operator of `plan` stops reading its input before the end (a limit, a
/// top-k sort).
fn stops_early(plan: &dyn ExecutionPlan) -> bool {
    plan.fetch().is_some() || plan.children().iter().any(|c| stops_early(c.as_ref()))
}

/// What each remote scan of `plan` did, from its `OdbcExec` metrics.
fn scan_facts(plan: &dyn ExecutionPlan) -> Vec<crate::insights::ScanFacts> {
    let mut facts = Vec::new();
    let mut walk = vec![plan];
    while let Some(node) = walk.pop() {
        if let Some(scan) = node.downcast_ref::<OdbcExec>() {
            let metrics = scan.metrics();
            let rows = metrics.as_ref().and_then(|m| m.output_rows()).unwrap_or(0) as u64;
            let bytes = metrics
                .as_ref()
                .and_then(|m| m.sum(|metric| matches!(metric.value(), MetricValue::OutputBytes(_))))
                .map_or(0, |v| v.as_usize()) as u64;
            let driver_nanos = metrics
                .as_ref()
                .and_then(|m| m.sum_by_name("remote_time"))
                .map_or(0, |v| v.as_usize()) as u64;
            // A join's run-time filter narrowed the scan: its rows say nothing of the filter's.
            let filtered = scan
                .filtered_scan()
                .filter(|_| scan.runtime_conditions_sent().is_empty())
                .cloned();
            facts.push(crate::insights::ScanFacts {
                source: scan.source().name().to_string(),
                rows,
                bytes,
                driver_time: Duration::from_nanos(driver_nanos),
                filtered,
            });
        }
        walk.extend(node.children().into_iter().map(|c| c.as_ref()));
    }
    facts
}

/// `sql` with the contents of every single-quoted string literal replaced by `?`, so the
/// query log carries the statement's shape, not its data.
pub fn mask_string_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut in_literal = false;
    while let Some(c) = chars.next() {
        if !in_literal {
            out.push(c);
            if c == '\'' {
                in_literal = true;
                out.push('?');
            }
        } else if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next(); // an escaped quote inside the literal
            } else {
                in_literal = false;
                out.push('\'');
            }
        }
    }
    out
}

/// The memory pool one query runs with: the engine's pool, with what this query holds
/// counted on the way through. DataFusion's operators reserve their hash tables, sort buffers
/// and spills there, and ibarrow's scans their fetched batches, so the peak is the query's
/// high-water mark of tracked memory (batches already handed to the caller are not counted).
#[derive(Debug)]
pub struct QueryMemory {
    inner: Arc<dyn MemoryPool>,
    current: AtomicUsize,
    peak: AtomicUsize,
    /// What this query's hash joins hold for their build sides (the engine's pool lists
    /// every query's consumers, so its message cannot tell whose they are).
    build_sides: AtomicUsize,
}

/// Said of a refusal of memory while a hash join of the query holds its build side (or asks
/// for it): src/engine/join_fallback.rs runs such a query again with sort-merge joins.
pub(crate) const BUILD_SIDE_HINT: &str = "A hash join's build side does not spill";

fn is_build_side(reservation: &MemoryReservation) -> bool {
    reservation.consumer().name().starts_with("HashJoinInput")
}

impl QueryMemory {
    /// Counts one query's memory on its way to `inner`, the engine's pool.
    pub fn new(inner: Arc<dyn MemoryPool>) -> Self {
        Self {
            inner,
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            build_sides: AtomicUsize::new(0),
        }
    }

    /// The most this query held at once, in bytes.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// DataFusion's refusal, with the engine's limit and what to do about it.
    fn over_the_limit(
        &self,
        err: DataFusionError,
        reservation: &MemoryReservation,
    ) -> DataFusionError {
        let MemoryLimit::Finite(limit) = self.inner.memory_limit() else {
            return err;
        };
        let DataFusionError::ResourcesExhausted(message) = err else {
            return err;
        };
        let consumer = reservation.consumer().name();
        // DataFusion 55's hash join keeps its whole build side in memory: it is the one
        // refused, or one of this query's holds its build side.
        let cannot_spill = if consumer.starts_with("HashJoinInput")
            || self.build_sides.load(Ordering::Relaxed) > 0
        {
            format!(" {BUILD_SIDE_HINT}: join a smaller table on that side, or filter it first.")
        } else if consumer.starts_with("OdbcExec") {
            " A remote scan's fetch buffers hold thousands of rows at the widest its columns \
             allow: lower the source's `max_text_size` / `max_binary_size` when text or binary \
             columns without a declared length make them large."
                .to_string()
        } else {
            String::new()
        };
        DataFusionError::ResourcesExhausted(format!(
            "the query needs more memory than the engine's limit of {} ([engine] memory_limit) \
             allows: raise the limit, or let the query hold less (fewer columns, earlier \
             filters).{cannot_spill} {message}",
            crate::config::ByteSize(limit as u64)
        ))
    }

    fn added(&self, bytes: usize, reservation: &MemoryReservation) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        if is_build_side(reservation) {
            self.build_sides.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Display for QueryMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query memory over {}", self.inner)
    }
}

impl MemoryPool for QueryMemory {
    fn name(&self) -> &str {
        "ibarrow query"
    }

    fn register(&self, consumer: &datafusion::execution::memory_pool::MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &datafusion::execution::memory_pool::MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.added(additional, reservation);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.current.fetch_sub(shrink, Ordering::Relaxed);
        if is_build_side(reservation) {
            self.build_sides.fetch_sub(shrink, Ordering::Relaxed);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.inner
            .try_grow(reservation, additional)
            .map_err(|err| self.over_the_limit(err, reservation))?;
        self.added(additional, reservation);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// One query's record, shared by the streams of its output partitions: it is logged, counted
/// and audited once, when its last partition ends, or when the run is dropped with partitions
/// never read (a Flight SQL client that fetched only some endpoints).
pub struct QueryRun {
    /// The plan whose metrics the record reads when the query ends: the one that ran
    /// (src/engine/join_fallback.rs replaces a plan that gave up before its first row).
    plan: Mutex<Arc<dyn ExecutionPlan>>,
    monitor: Arc<Monitor>,
    memory: Arc<QueryMemory>,
    record: Mutex<Option<QueryRecord>>,
    rows: AtomicU64,
    /// Partitions that have not ended yet.
    open: AtomicUsize,
    /// The worst ending so far: a failure over a cancellation over success.
    outcome: Mutex<Outcome>,
    /// The result as it streams, for the result cache (a cacheable query's first run).
    collector: Option<crate::result_cache::ResultCollector>,
}

impl QueryRun {
    /// A run of `plan` whose `partitions` streams each end once.
    pub fn new(
        plan: Arc<dyn ExecutionPlan>,
        monitor: Arc<Monitor>,
        memory: Arc<QueryMemory>,
        record: QueryRecord,
        partitions: usize,
    ) -> Arc<Self> {
        // A plan that reads no source is a kept result read back (or no query of a
        // source at all): it is never kept again.
        let collector = match (&monitor.result_cache, &record.cache) {
            (
                Some(cache),
                Some(
                    crate::result_cache::CacheUse::Miss(key)
                    | crate::result_cache::CacheUse::StaleKept(key),
                ),
            ) if reads_a_source(plan.as_ref()) => Some(cache.collector(key.clone(), plan.schema())),
            _ => None,
        };
        Arc::new(Self {
            plan: Mutex::new(plan),
            monitor,
            memory,
            record: Mutex::new(Some(record)),
            rows: AtomicU64::new(0),
            open: AtomicUsize::new(partitions),
            outcome: Mutex::new(Outcome::Ok),
            collector,
        })
    }

    /// Runs `plan` in place of the plan the query started with, which is dropped here (and
    /// with it what it held, such as a hash join's build side).
    pub fn replace_plan(&self, plan: Arc<dyn ExecutionPlan>) {
        let replaced = match self.plan.lock() {
            Ok(mut current) => std::mem::replace(&mut *current, plan),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), plan),
        };
        drop(replaced);
    }

    fn delivered(&self, batch: &RecordBatch) {
        self.rows
            .fetch_add(batch.num_rows() as u64, Ordering::AcqRel);
        if let Some(collector) = &self.collector {
            collector.add(batch);
        }
    }

    fn merge(&self, outcome: Outcome) {
        if let Ok(mut worst) = self.outcome.lock() {
            let rank = |o: &Outcome| match o {
                Outcome::Ok => 0,
                Outcome::Cancelled => 1,
                Outcome::Failed(_) => 2,
            };
            if rank(&outcome) > rank(&worst) {
                *worst = outcome;
            }
        }
    }

    /// One partition ended with `outcome`; the last one finishes the record.
    pub(crate) fn end_partition(&self, outcome: Outcome) {
        self.merge(outcome);
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    fn finish(&self) {
        let record = self.record.lock().ok().and_then(|mut r| r.take());
        if let Some(record) = record {
            let outcome = self.outcome.lock().map_or(Outcome::Cancelled, |o| *o);
            if let Some(cache) = &self.monitor.result_cache {
                match &record.cache {
                    Some(crate::result_cache::CacheUse::Write(sources)) => {
                        for source in sources {
                            cache.invalidate_source(source);
                        }
                    }
                    _ if outcome == Outcome::Ok => {
                        if let Some(collector) = &self.collector {
                            collector.finish(cache);
                        }
                    }
                    _ => {}
                }
            }
            let plan = match self.plan.lock() {
                Ok(plan) => Arc::clone(&plan),
                Err(poisoned) => Arc::clone(&poisoned.into_inner()),
            };
            self.monitor.finish(
                record,
                plan.as_ref(),
                outcome,
                self.rows.load(Ordering::Acquire),
                self.memory.peak(),
            );
        }
    }
}

impl Drop for QueryRun {
    fn drop(&mut self) {
        if self.open.load(Ordering::Acquire) > 0 {
            self.merge(Outcome::Cancelled);
        }
        self.finish();
    }
}

impl std::fmt::Debug for QueryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRun")
            .field("rows", &self.rows)
            .field("open", &self.open)
            .finish()
    }
}

/// A stream of one output partition of a monitored query: counts its rows into the query's
/// [`QueryRun`] and reports how it ended.
pub struct MonitoredStream {
    inner: SendableRecordBatchStream,
    run: Arc<QueryRun>,
    ended: bool,
}

impl MonitoredStream {
    /// Wraps `inner`, one output partition of the query `run` tracks.
    pub fn new(inner: SendableRecordBatchStream, run: Arc<QueryRun>) -> Self {
        Self {
            inner,
            run,
            ended: false,
        }
    }

    fn end(&mut self, outcome: Outcome) {
        if !std::mem::replace(&mut self.ended, true) {
            self.run.end_partition(outcome);
        }
    }
}

impl Stream for MonitoredStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => self.run.delivered(batch),
            Poll::Ready(None) => self.end(Outcome::Ok),
            Poll::Ready(Some(Err(err))) => {
                let kind = ErrorKind::of_datafusion(err);
                self.end(Outcome::Failed(kind));
            }
            _ => {}
        }
        polled
    }
}

impl RecordBatchStream for MonitoredStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for MonitoredStream {
    fn drop(&mut self) {
        self.end(Outcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_string_literals("SELECT * FROM t WHERE name = 'O''Brien' AND x = 1"),
            "SELECT * FROM t WHERE name = '?' AND x = 1"
        );
        assert_eq!(mask_string_literals("SELECT 'a', 'b'"), "SELECT '?', '?'");
        assert_eq!(mask_string_literals("SELECT 'unterminated"), "SELECT '?");
        assert_eq!(mask_string_literals("SELECT 1"), "SELECT 1");
    }

    fn run_of(monitor: &Arc<Monitor>, sql: &str, partitions: usize) -> Arc<QueryRun> {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let plan = Arc::new(datafusion::physical_plan::empty::EmptyExec::new(schema));
        let pool = Arc::new(datafusion::execution::memory_pool::UnboundedMemoryPool::default());
        let memory = Arc::new(QueryMemory::new(pool));
        let record = monitor.begin("ann", "test", sql);
        QueryRun::new(plan, Arc::clone(monitor), memory, record, partitions)
    }

    #[test]
    fn the_partitions_of_a_run_make_one_query_ended_by_the_last() {
        let monitor = Arc::new(Monitor::new(None, false));
        let run = run_of(&monitor, "SELECT 1", 3);
        for _ in 0..2 {
            run.rows.fetch_add(10, Ordering::AcqRel);
            run.end_partition(Outcome::Ok);
        }
        assert!(
            monitor.recent().is_empty(),
            "recorded before its last partition"
        );
        run.rows.fetch_add(5, Ordering::AcqRel);
        run.end_partition(Outcome::Ok);
        drop(run);
        let recent = monitor.recent();
        assert_eq!(
            recent
                .iter()
                .map(|q| (q.sql.as_str(), q.rows, q.outcome))
                .collect::<Vec<_>>(),
            [("SELECT 1", 25, "ok")]
        );

        // A failed partition decides the outcome; partitions never read end it as dropped.
        let run = run_of(&monitor, "SELECT 2", 3);
        run.end_partition(Outcome::Ok);
        run.end_partition(Outcome::Failed(ErrorKind::Timeout));
        assert_eq!(monitor.recent().len(), 1);
        drop(run);
        let recent = monitor.recent();
        assert_eq!(
            (
                recent[0].sql.as_str(),
                recent[0].outcome,
                recent[0].error_kind
            ),
            ("SELECT 2", "error", "timeout")
        );
        let run = run_of(&monitor, "SELECT 3", 2);
        run.end_partition(Outcome::Ok);
        drop(run);
        assert_eq!(monitor.recent()[0].outcome, "cancelled");
    }

    #[test]
    fn recent_queries_are_kept_newest_first_and_bounded() {
        let monitor = Monitor::new(None, true);
        for n in 0..(RECENT_QUERIES + 5) {
            let record = monitor.begin("ann", "test", &format!("SELECT {n}, 'secret'"));
            monitor.refused(
                record,
                &Error::DataFusion(DataFusionError::Plan("test".into())),
            );
        }
        let recent = monitor.recent();
        assert_eq!(recent.len(), RECENT_QUERIES);
        assert_eq!(recent[0].sql, format!("SELECT {}, '?'", RECENT_QUERIES + 4));
        assert_eq!(
            (recent[0].outcome, recent[0].error_kind),
            ("refused", "sql")
        );
        assert!(recent[0].id > recent[1].id);
    }

    #[test]
    fn prometheus_text_lists_every_counter() {
        let mut snapshot = MetricsSnapshot::default();
        snapshot.queries.insert("ok", 3);
        snapshot.errors.insert("sql", 1);
        snapshot.rows_by_source.insert("pg".into(), 42);
        snapshot.duration_buckets = vec![(0.1, 2), (1.0, 3)];
        snapshot.duration_count = 3;
        snapshot.duration_sum_secs = 0.5;
        let text = snapshot.to_prometheus();
        for line in [
            "ibarrow_queries_total{outcome=\"ok\"} 3",
            "ibarrow_query_errors_total{kind=\"sql\"} 1",
            "ibarrow_source_rows_total{source=\"pg\"} 42",
            "ibarrow_query_duration_seconds_bucket{le=\"0.1\"} 2",
            "ibarrow_query_duration_seconds_bucket{le=\"+Inf\"} 3",
            "ibarrow_query_duration_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
