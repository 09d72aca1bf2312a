//! What a source is configured with: [`SourceOptions`] and the scans' [`ScanOptions`].

use super::RetryPolicy;
use crate::partitioning::RangePartitioning;
use crate::pool::PoolOptions;

/// How scans read: buffer bounds and batch sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOptions {
    /// Upper bound in bytes for one text value; columns declared larger (or unbounded, like
    /// `TEXT`) get buffers of this size. A longer value is an error, never silently cut.
    pub max_text_size: usize,
    /// The same for binary values.
    pub max_binary_size: usize,
    /// Rows fetched per round trip and per Arrow batch (fewer when rows are wide).
    pub batch_rows: usize,
    /// Upper bound for the fetch buffers of one scan.
    pub max_bytes_per_batch: usize,
    /// Batches buffered between the fetching thread and the query.
    pub prefetch_batches: usize,
    /// How long one remote statement may run, first row to last. ibarrow enforces it itself
    /// (a silent server cannot hold a query) and also hands it to drivers that honour
    /// `SQL_ATTR_QUERY_TIMEOUT`.
    pub query_timeout: Option<std::time::Duration>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            max_text_size: 16 * 1024,
            max_binary_size: 16 * 1024,
            batch_rows: 8192,
            max_bytes_per_batch: 32 * 1024 * 1024,
            prefetch_batches: 2,
            query_timeout: None,
        }
    }
}

/// Everything a source is configured with; by default it is not writable, pushes aggregates
/// and joins down, and has a circuit breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceOptions {
    /// Connection pool limits.
    pub pool: PoolOptions,
    /// How scans read.
    pub scan: ScanOptions,
    /// Range splitting of large tables; `column` is the default for every table (usually
    /// `None`: the primary key).
    pub partitioning: RangePartitioning,
    /// Whether aggregates over a single table of this source may run remotely.
    pub pushdown_aggregates: bool,
    /// Whether joins between tables of this source may run remotely as one statement.
    pub pushdown_joins: bool,
    /// Whether scans of this source take the key ranges and key lists joins learn at run
    /// time into their statements ([`crate::OdbcExec`]).
    pub runtime_filters: bool,
    /// Whether PostgreSQL scans fetch each row as one text value and parse it here
    /// ([`crate::OdbcExec`]): psqlODBC's cost is per value it converts.
    pub packed_rows: bool,
    /// How reads that lose their connection before delivering a row are retried.
    pub retry: RetryPolicy,
    /// `None`: no circuit breaker.
    pub breaker: Option<crate::breaker::BreakerPolicy>,
    /// `None`: the connection string's own TLS keys (if any) apply.
    pub tls: Option<crate::tls::TlsOptions>,
    /// Whether writes may reach the database: `INSERT INTO` its tables and native statements
    /// other than queries. Off by default; a source that is not writable also opens its
    /// sessions read-only where the database can (PostgreSQL, MariaDB/MySQL, SQLite).
    pub writable: bool,
    /// Isolation level of every connection, and read-only mode even when writable.
    pub session: ibarrow_sql::SessionSettings,
    /// How reads use the replicas, for a source that has some.
    pub replicas: super::ReplicaOptions,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            pool: PoolOptions::default(),
            scan: ScanOptions::default(),
            partitioning: RangePartitioning::default(),
            pushdown_aggregates: true,
            pushdown_joins: true,
            runtime_filters: true,
            packed_rows: true,
            retry: RetryPolicy::default(),
            breaker: Some(crate::breaker::BreakerPolicy::default()),
            tls: None,
            writable: false,
            session: ibarrow_sql::SessionSettings::default(),
            replicas: super::ReplicaOptions::default(),
        }
    }
}
