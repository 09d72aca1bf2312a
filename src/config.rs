//! The configuration file (docs/configuration.md): `[engine]` settings,
//! `[sources.<name>]`, and for `ibarrow serve` the `[server]` section and `[users.<name>]`.
//!
//! Unknown keys are errors (a typo must not be ignored silently). In a connection setting,
//! `${NAME}` or `${env:NAME}` is replaced from the environment and `${file:/run/secrets/pg}` by
//! the file's contents (trimmed); a missing variable or file is an error that names it, never
//! the value. `[profiles.<name>]` tables override any key of the file when that profile is
//! chosen (`--profile`, `IBARROW_PROFILE`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ibarrow_providers::{RangePartitioning, ScanOptions, SourceOptions};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The configuration file, parsed: every section (docs/configuration.md).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[engine]`: settings of the whole engine, and defaults for the sources.
    #[serde(default)]
    pub engine: EngineConfig,
    /// `[sources.<name>]`: the databases, by the catalog name their tables appear under.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// The network service (`ibarrow serve`); ignored by the library, the REPL and Python.
    pub server: Option<ServerConfig>,
    /// Who may log in to the network service, and the roles of every user (network, REPL,
    /// Python sessions).
    #[serde(default)]
    pub users: BTreeMap<String, UserConfig>,
    /// What each role may read and write (docs/access.md); without any, everyone reads
    /// everything.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// The audit log: one line per statement, hash-chained.
    pub audit: Option<AuditConfig>,
    /// `[profiles.<name>]`: keys that replace those of the file when the profile is chosen
    /// ([`Config::from_file_with_profile`]); tables merge key by key.
    #[serde(default)]
    pub profiles: BTreeMap<String, Keys>,
    /// The file's keys as written, for applying a profile to them.
    #[serde(skip)]
    written: Option<Keys>,
}

/// Keys of the file as written (a profile, or the whole file). Debug output names the keys
/// only: values may hold passwords.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Keys(pub toml::Table);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The environment variable naming the profile to apply when none is given.
pub const PROFILE_ENV: &str = "IBARROW_PROFILE";

/// The profile `IBARROW_PROFILE` names, if it is set and not empty.
pub fn profile_from_env() -> Option<String> {
    std::env::var(PROFILE_ENV).ok().filter(|p| !p.is_empty())
}

/// `[roles.<name>]`: tables (`source.schema.table`, `*` and `?` match) the role reads and
/// writes, columns it may not read or reads masked, and filters on the rows it sees.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Tables the role reads (`source.schema.table`).
    #[serde(default)]
    pub read: Vec<String>,
    /// `source.schema.table.column` names.
    #[serde(default)]
    pub deny_columns: Vec<String>,
    /// `"source.schema.table.column" = "<SQL expression>"`: the value the role sees instead.
    #[serde(default)]
    pub masks: BTreeMap<String, String>,
    /// `"source.schema.table" = "<SQL condition>"`: the rows the role sees.
    #[serde(default)]
    pub row_filters: BTreeMap<String, String>,
    /// May run native SQL (`query('<source>', ...)`, default false).
    pub native_sql: Option<bool>,
    /// Tables the role may `INSERT INTO` (the source must be `writable` too).
    #[serde(default)]
    pub write: Vec<String>,
    /// May see every user's statements: the recent queries of the status page and
    /// `/v1/status`, and `/v1/insights` (default false: a user sees only their own queries,
    /// and no insights).
    pub monitor: Option<bool>,
}

/// `[audit]`: `file = "audit.jsonl"` (appended), `max_bytes` to rotate it, `log = true` to
/// also write each line to the log.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The file the lines are appended to, created when missing (default: no file).
    pub file: Option<String>,
    /// Rotate the file when it grows past this size: it is renamed `<file>.1` (older ones
    /// shift to `.2`, ...) and the new file continues the hash chain.
    pub max_bytes: Option<u64>,
    /// Also write each line to the log (default true without `file`, false with it).
    pub log: Option<bool>,
}

/// `[server]`: the listeners of `ibarrow serve` and their limits (docs/server.md).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Arrow Flight SQL (gRPC) address, e.g. "127.0.0.1:50051"; left out: no Flight SQL.
    pub flight_sql: Option<String>,
    /// HTTP API address, e.g. "127.0.0.1:8080"; left out: no HTTP API.
    pub http: Option<String>,
    /// `tls = { cert = "server.pem", key = "server.key" }` (PEM), for both listeners.
    pub tls: Option<ServerTlsConfig>,
    /// Connections open at once over both listeners (default 256).
    pub max_connections: Option<usize>,
    /// Connections open at once from one IP address (default 64).
    pub max_connections_per_ip: Option<usize>,
    /// Largest HTTP request body, in bytes (default 1 MiB).
    pub max_body_bytes: Option<usize>,
    /// How long an HTTP request may take in all, streaming included (default 3600 s).
    pub request_timeout_secs: Option<u64>,
    /// A connection that sends nothing for this long is closed (default 120 s).
    pub idle_timeout_secs: Option<u64>,
    /// Lifetime of a bearer token from a login (default 3600 s).
    pub token_ttl_secs: Option<u64>,
    /// How long a planned Flight SQL query waits for its DoGet (default 300 s).
    pub plan_ttl_secs: Option<u64>,
    /// On SIGTERM/SIGINT, how long running queries may go on (default 30 s).
    pub shutdown_grace_secs: Option<u64>,
}

/// `[server.tls]`: the certificate and key (PEM files) both listeners serve TLS with.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The server's certificate chain, a PEM file (required).
    pub cert: String,
    /// The certificate's private key, a PEM file (required).
    pub key: String,
}

/// `[users.<name>]`: `password = "${ALICE_PASSWORD}"` or `password_hash = "$argon2id$..."`
/// (`ibarrow passwd` prints one), the user's roles, and the users this one may act as on the
/// command line (`ibarrow --user NAME`).
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The password, usually a secret reference such as `"${ALICE_PASSWORD}"`.
    pub password: Option<String>,
    /// An argon2id hash instead of the password, as `ibarrow passwd` prints it; `ibarrow serve`
    /// needs exactly one of the two.
    pub password_hash: Option<String>,
    /// The user's roles (default none; once the file has `[roles]`, a user without roles reads
    /// nothing).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Users (`*` and `?` match) this OS user may run the REPL and batch client as, with
    /// `--user`; the audit log records both names.
    #[serde(default)]
    pub act_as: Vec<String>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .field("roles", &self.roles)
            .field("act_as", &self.act_as)
            .finish()
    }
}

/// `[engine]`: settings of the whole engine, and defaults for the sources that set none.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// DataFusion's parallelism; defaults to the number of cores.
    pub target_partitions: Option<usize>,
    /// How long table metadata (columns, keys, row estimates) is reused; default 300 s.
    pub schema_cache_ttl_secs: Option<u64>,
    /// Longest SQL text accepted, in bytes; default 1 MiB.
    pub max_sql_bytes: Option<usize>,
    /// Query quotas per user and client; none by default.
    pub rate_limits: Option<RateLimitConfig>,
    /// Queries slower than this are logged as warnings ("slow query").
    pub slow_query_ms: Option<u64>,
    /// Replace string literals by `?` in the query log (default false).
    pub log_mask_literals: Option<bool>,
    /// Defaults for every source that sets none itself.
    pub connect_timeout_secs: Option<u64>,
    /// How long one remote statement may run, for sources that set none (default: no limit).
    pub query_timeout_secs: Option<u64>,
    /// Retry settings for sources without a `retry` table of their own (taken whole, not key by
    /// key).
    pub retry: Option<RetryConfig>,
    /// Circuit-breaker settings for sources without a `breaker` table of their own (taken whole).
    pub breaker: Option<BreakerConfig>,
    /// Connections open at once per source, for sources that set none (default 8).
    pub pool_size: Option<usize>,
    /// How long a query waits for a free connection, for sources that set none (default 30 s).
    pub acquire_timeout_secs: Option<u64>,
    /// Connections older than this are closed instead of reused, for sources that set none
    /// (default 1800 s; 0: never).
    pub max_lifetime_secs: Option<u64>,
    /// Connections unused this long are closed, for sources that set none (default 600 s;
    /// 0: never).
    pub idle_timeout_secs: Option<u64>,
    /// Warn about a connection checked out longer than this, for sources that set none (default
    /// 600 s; 0: never).
    pub leak_warning_secs: Option<u64>,
    /// Memory all queries together may hold in DataFusion's operators and ibarrow's scans,
    /// e.g. "512MB" or "2GiB" (default: no limit). Sorts and aggregates spill to temporary
    /// files to stay under it; what cannot spill fails with an error naming the limit.
    pub memory_limit: Option<ByteSize>,
    /// `result_cache = { max_bytes = "256MB", ttl_secs = 60 }`: keep results of repeated
    /// queries (off unless set; src/result_cache.rs).
    pub result_cache: Option<ResultCacheConfig>,
    /// The log filter (`warn`, `info`, `ibarrow=debug`) of the REPL and the server when
    /// `IBARROW_LOG` is not set; a reload applies a new one (default `warn`).
    pub log_level: Option<String>,
    /// Run queries on the Ballista cluster whose scheduler is at this `df://HOST:PORT`
    /// (src/cluster/; needs the `cluster` feature). Fixed at start.
    pub cluster: Option<String>,
}

/// `[engine] result_cache`: the memory results may take (default 256 MiB) and how long one
/// is kept (default 60 s; sources may set less, or 0, with `result_cache_ttl_secs`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResultCacheConfig {
    /// The memory kept results may take (default 256 MiB); a result over an eighth of it is not
    /// kept.
    pub max_bytes: Option<ByteSize>,
    /// How long a result is kept, in seconds (default 60); a source's `result_cache_ttl_secs`
    /// replaces it for results that read that source.
    pub ttl_secs: Option<u64>,
    /// How long past its TTL a result may still answer, with a warning, while a source it
    /// reads has no healthy endpoint (default 0: never).
    pub serve_stale_secs: Option<u64>,
}

/// The most ranges a table is read in when its source does not set `partitions`.
const MAX_AUTOMATIC_PARTITIONS: usize = 8;

/// A size in bytes, written as a number of bytes or with a unit: `"512MB"` (10^6), `"2GiB"`
/// (2^30), `"64KB"`, `"1.5GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "mb" | "m" => 1_000_000,
            "gb" | "g" => 1_000_000_000,
            "tb" | "t" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => 0,
        };
        match number.parse::<f64>() {
            Ok(value) if scale > 0 && value.is_finite() && value * scale as f64 >= 1.0 => {
                Ok(ByteSize((value * scale as f64) as u64))
            }
            _ => Err(format!(
                "`{text}` is not a size: write bytes with a unit, e.g. \"512MB\" or \"2GiB\""
            )),
        }
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.0 as f64;
        match self.0 {
            n if n >= 1_000_000_000 => write!(f, "{:.1} GB", bytes / 1e9),
            n if n >= 1_000_000 => write!(f, "{:.1} MB", bytes / 1e6),
            n if n >= 1_000 => write!(f, "{:.1} KB", bytes / 1e3),
            n => write!(f, "{n} bytes"),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Bytes(0) => Err(serde::de::Error::custom("a memory limit of 0 bytes")),
            Written::Bytes(bytes) => Ok(ByteSize(bytes)),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `rate_limits = { per_user_per_minute = 60, per_client_per_hour = 10000, ... }`: queries
/// a session may start; a quota left out is no limit.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Queries one user may start per minute.
    pub per_user_per_minute: Option<u32>,
    /// Queries one user may start per hour.
    pub per_user_per_hour: Option<u32>,
    /// Queries one client (`ibarrow-repl`, `python`, an HTTP `User-Agent`) may start per minute.
    pub per_client_per_minute: Option<u32>,
    /// Queries one client may start per hour.
    pub per_client_per_hour: Option<u32>,
    /// Per client IP address, for queries that arrive over the network (`ibarrow serve`).
    pub per_ip_per_minute: Option<u32>,
    /// Per client IP address and hour, for queries that arrive over the network.
    pub per_ip_per_hour: Option<u32>,
}

/// `breaker = { failure_rate = 0.5, window = 10, open_secs = 30 }`: a source failing that
/// share of its last `window` calls (connection failures, timeouts) is not called for
/// `open_secs`; `enabled = false` turns it off.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// `false` turns the breaker off (default true).
    pub enabled: Option<bool>,
    /// The share of failed calls among the last `window` that opens the breaker (default 0.5,
    /// kept between 0.01 and 1).
    pub failure_rate: Option<f64>,
    /// How many recent calls are judged; fewer never open it (default 10).
    pub window: Option<usize>,
    /// How long an open breaker fails calls at once before one probe call goes through (default
    /// 30 s).
    pub open_secs: Option<u64>,
}

/// `tls = { mode = "disable" | "require" | "verify-ca" | "verify-full", ca, cert, key }`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `disable`, `require`, `verify-ca` or `verify-full` (required).
    pub mode: String,
    /// The CA certificate file the server's certificate must chain to.
    pub ca: Option<String>,
    /// A client certificate file, for servers that ask for one.
    pub cert: Option<String>,
    /// The client certificate's key file.
    pub key: Option<String>,
}

/// `retry = { attempts = 3, initial_backoff_ms = 100, max_backoff_ms = 2000 }`: reads that
/// lose their connection before any row arrived are tried again on a fresh one.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries in all (1: no retry; default 3).
    pub attempts: Option<u32>,
    /// The pause before the second try, in ms (default 100); it doubles for each further try.
    pub initial_backoff_ms: Option<u64>,
    /// The longest pause between tries, in ms (default 2000).
    pub max_backoff_ms: Option<u64>,
}

/// `[sources.<name>]`: one ODBC database, whose tables appear as `<name>.<schema>.<table>`.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The ODBC connection string, in which secret references are resolved; it or `dsn` is needed.
    pub connection_string: Option<String>,
    /// A data source name from `odbc.ini`, instead of `connection_string`.
    pub dsn: Option<String>,
    /// The user name, with `dsn` only (a connection string carries its own).
    pub user: Option<String>,
    /// The password, with `dsn` only; usually a secret reference.
    pub password: Option<String>,
    /// Replicas of the same data, as connection strings (secret references resolved) or
    /// data source names from `odbc.ini` (with `user` and `password`): each gets its own
    /// pool and circuit breaker; reads spread over them, writes go to the primary.
    pub replicas: Option<Vec<String>>,
    /// `primary`, `replicas` (default) or `any`: where reads go first; the other endpoints
    /// take them while none of those is healthy.
    pub read_from: Option<String>,
    /// `least_busy` (default) or `round_robin`: how reads spread over the endpoints.
    pub balance: Option<String>,
    /// Replicas further behind their primary than this take no reads (default: lag is not
    /// checked). PostgreSQL and MariaDB/MySQL report lag; other replicas then take none.
    pub max_replica_lag_secs: Option<u64>,
    /// Range partitions per large table (1: no splitting; default: one per `min_partition_rows`
    /// of its row estimate, up to the cores).
    pub partitions: Option<usize>,
    /// Tables estimated below this many rows are not split (default 100 000).
    pub min_partition_rows: Option<u64>,
    /// Bytes per text value (default 16384); a longer value stops the query with an error naming
    /// the column, nothing is cut.
    pub max_text_size: Option<usize>,
    /// Bytes per binary value (default 16384), as `max_text_size`.
    pub max_binary_size: Option<usize>,
    /// Connections open at once (default 8).
    pub pool_size: Option<usize>,
    /// How long a query waits for a free connection (default 30 s).
    pub acquire_timeout_secs: Option<u64>,
    /// Connections older than this are closed instead of reused (default 1800 s; 0: never).
    pub max_lifetime_secs: Option<u64>,
    /// Idle connections unused this long are closed (default 600 s; 0: never).
    pub idle_timeout_secs: Option<u64>,
    /// Warn about a connection checked out longer than this (default 600 s; 0: never).
    pub leak_warning_secs: Option<u64>,
    /// Let writes reach this source: `INSERT INTO` its tables and native statements other
    /// than queries (default false: only queries, and sessions opened read-only).
    pub writable: Option<bool>,
    /// `read_committed`, `repeatable_read`, `serializable`, ... (default: the database's).
    pub isolation_level: Option<String>,
    /// Login timeout for new connections (default 15 s).
    pub connect_timeout_secs: Option<u64>,
    /// How long one remote statement may run; enforced by ibarrow (default: no limit).
    pub query_timeout_secs: Option<u64>,
    /// Retries of reads that lose their connection before any row arrived (default:
    /// `[engine] retry`, else 3 tries).
    pub retry: Option<RetryConfig>,
    /// The source's circuit breaker (default: `[engine] breaker`, else on with its defaults).
    pub breaker: Option<BreakerConfig>,
    /// `tls = { mode = "verify-full", ca = "/etc/ssl/db-ca.pem" }`, in the driver's own keys.
    pub tls: Option<TlsConfig>,
    /// Run aggregates over a single table of this source in the database (default true).
    pub pushdown_aggregates: Option<bool>,
    /// Run joins between tables of this source in the database (default true).
    pub pushdown_joins: Option<bool>,
    /// Narrow this source's scans with the keys a join has read from its other side
    /// (default true).
    pub runtime_filters: Option<bool>,
    /// PostgreSQL: fetch each row as one text value, parsed by ibarrow (default true); faster
    /// through psqlODBC, which spends its time per value.
    pub packed_rows: Option<bool>,
    /// How long the result cache keeps results that read this source (default: the
    /// `[engine] result_cache` TTL); 0 for data that changes under the engine, never cached.
    pub result_cache_ttl_secs: Option<u64>,
    /// Settings per table, by the table's name without its schema.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
}

/// Shows the connection string redacted and no password: a configuration may be logged.
impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let connection_string = self.connection_string.as_deref().map(redacted_endpoint);
        f.debug_struct("SourceConfig")
            .field("connection_string", &connection_string)
            .field("dsn", &self.dsn)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field(
                "replicas",
                &self.replicas.as_ref().map(|replicas| {
                    replicas
                        .iter()
                        .map(|text| redacted_endpoint(text))
                        .collect::<Vec<_>>()
                }),
            )
            .field("read_from", &self.read_from)
            .field("balance", &self.balance)
            .field("max_replica_lag_secs", &self.max_replica_lag_secs)
            .field("partitions", &self.partitions)
            .field("min_partition_rows", &self.min_partition_rows)
            .field("max_text_size", &self.max_text_size)
            .field("max_binary_size", &self.max_binary_size)
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .field("max_lifetime_secs", &self.max_lifetime_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("leak_warning_secs", &self.leak_warning_secs)
            .field("writable", &self.writable)
            .field("isolation_level", &self.isolation_level)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("query_timeout_secs", &self.query_timeout_secs)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("tls", &self.tls)
            .field("pushdown_aggregates", &self.pushdown_aggregates)
            .field("pushdown_joins", &self.pushdown_joins)
            .field("runtime_filters", &self.runtime_filters)
            .field("packed_rows", &self.packed_rows)
            .field("result_cache_ttl_secs", &self.result_cache_ttl_secs)
            .field("tables", &self.tables)
            .finish()
    }
}

/// A connection string redacted, or a data source name as it is.
fn redacted_endpoint(text: &str) -> String {
    if !text.contains('=') {
        return text.to_string();
    }
    ibarrow_providers::ConnectionString::parse(text)
        .map(|cs| cs.redacted())
        .unwrap_or_else(|_| "<unparsable connection string>".into())
}

/// `[sources.<name>.tables.<table>]`: settings of one table, matched by name ignoring case, in
/// every schema of the source.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The integer or date column range scans split on (default: the primary key).
    pub partition_column: Option<String>,
}

/// How to reach a source, secrets already expanded.
#[derive(Clone, PartialEq, Hash)]
pub enum Connect {
    /// A full ODBC connection string (`connection_string`).
    ConnectionString(String),
    /// A data source name from `odbc.ini`, with the login when one is configured.
    Dsn {
        /// The data source name.
        dsn: String,
        /// The user name (`user`).
        user: Option<String>,
        /// The password (`password`).
        password: Option<String>,
    },
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connect::ConnectionString(text) => {
                let shown = ibarrow_providers::ConnectionString::parse(text)
                    .map(|cs| cs.redacted())
                    .unwrap_or_else(|_| "<unparsable connection string>".into());
                write!(f, "ConnectionString({shown})")
            }
            Connect::Dsn { dsn, user, .. } => write!(f, "Dsn({dsn}, user={user:?}, password=***)"),
        }
    }
}

impl Config {
    /// The file at `path`, with the profile named by `IBARROW_PROFILE` applied when it is set.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with_profile(path, profile_from_env().as_deref())
    }

    /// The file at `path` with `[profiles.<profile>]` applied (`None`: the file as written).
    pub fn from_file_with_profile(path: &Path, profile: Option<&str>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| Error::Config {
            location: path.display().to_string(),
            message: format!("cannot be read: {err}"),
        })?;
        Self::parse(&text, &path.display().to_string())?.with_profile(profile)
    }

    /// Parses TOML text; `origin` names it in errors (a path, or "text"). Every profile is
    /// checked too, so a mistyped key in one is an error before it is ever chosen.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let invalid = |err: toml::de::Error| Error::Config {
            location: origin.to_string(),
            message: err.to_string().trim().to_string(),
        };
        let mut config: Config = toml::from_str(text).map_err(invalid)?;
        config.written = Some(Keys(toml::from_str(text).map_err(invalid)?));
        for name in config.profiles.keys() {
            config.with_profile(Some(name))?;
        }
        Ok(config)
    }

    /// This configuration with the keys of `[profiles.<profile>]` in place of its own (tables
    /// merge key by key, anything else is replaced); `None` leaves it as it is. An unknown
    /// profile is an error listing the known ones.
    pub fn with_profile(&self, profile: Option<&str>) -> Result<Self> {
        let Some(name) = profile else {
            return Ok(self.clone());
        };
        let location = format!("[profiles.{name}]");
        let Some(written) = &self.written else {
            return Err(Error::Config {
                location,
                message: "profiles apply to a configuration read from a file or text \
                          (Config::parse); this one was built in code"
                    .into(),
            });
        };
        let Some(overrides) = self.profiles.get(name) else {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            return Err(Error::Config {
                location: format!("profile `{name}`"),
                message: if known.is_empty() {
                    "the configuration has no [profiles]; add [profiles.<name>] tables or \
                     leave the profile out"
                        .into()
                } else {
                    format!(
                        "no such profile; the configuration has {}",
                        known.join(", ")
                    )
                },
            });
        };
        let mut base = written.0.clone();
        base.remove("profiles");
        merge_table(&mut base, &overrides.0);
        let mut merged: Config =
            toml::Value::Table(base)
                .try_into()
                .map_err(|err: toml::de::Error| Error::Config {
                    location,
                    message: err.to_string().trim().to_string(),
                })?;
        merged.profiles = self.profiles.clone();
        merged.written = self.written.clone();
        Ok(merged)
    }
}

/// Puts `overrides` into `base`: a table into a table key by key, anything else in place.
fn merge_table(base: &mut toml::Table, overrides: &toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(overriding)) => {
                merge_table(inner, overriding)
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

impl SourceConfig {
    /// The connection, with `${NAME}` expanded from the environment.
    pub fn connect(&self, source: &str) -> Result<Connect> {
        let location = |key: &str| format!("[sources.{source}] {key}");
        match (&self.connection_string, &self.dsn) {
            (Some(text), None) => Ok(Connect::ConnectionString(expand_in_connection_string(
                text,
                &location("connection_string"),
            )?)),
            (None, Some(dsn)) => Ok(Connect::Dsn {
                dsn: expand_env(dsn, &location("dsn"))?,
                user: self
                    .user
                    .as_deref()
                    .map(|u| expand_env(u, &location("user")))
                    .transpose()?,
                password: self
                    .password
                    .as_deref()
                    .map(|p| expand_env(p, &location("password")))
                    .transpose()?,
            }),
            (Some(_), Some(_)) => Err(Error::Config {
                location: format!("[sources.{source}]"),
                message: "set either connection_string or dsn, not both".into(),
            }),
            (None, None) => Err(Error::Config {
                location: format!("[sources.{source}]"),
                message: "needs connection_string (or dsn, user, password)".into(),
            }),
        }
    }

    /// How to reach each replica (`replicas`), with `${NAME}` expanded: an entry with `=` is a
    /// connection string, one without the name of a data source with the source's `user` and
    /// `password`.
    pub fn replica_connects(&self, source: &str) -> Result<Vec<Connect>> {
        let Some(replicas) = &self.replicas else {
            return Ok(Vec::new());
        };
        replicas
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let location = format!("[sources.{source}] replicas[{index}]");
                // Decided on the expanded text: a whole secret reference may hold a connection
                // string (whose password must then be redacted like any other).
                if expand_env(entry, &location)?.contains('=') {
                    return Ok(Connect::ConnectionString(expand_in_connection_string(
                        entry, &location,
                    )?));
                }
                if entry.trim().is_empty() {
                    return Err(Error::Config {
                        location,
                        message: "is empty; give a connection string or a data source name".into(),
                    });
                }
                let login = |value: &Option<String>, key: &str| {
                    value
                        .as_deref()
                        .map(|v| expand_env(v, &format!("[sources.{source}] {key}")))
                        .transpose()
                };
                Ok(Connect::Dsn {
                    dsn: expand_env(entry, &location)?,
                    user: login(&self.user, "user")?,
                    password: login(&self.password, "password")?,
                })
            })
            .collect()
    }

    /// These settings with the engine-wide defaults filled in where this source sets none.
    pub fn with_defaults(&self, engine: &EngineConfig) -> Self {
        let mut config = self.clone();
        config.connect_timeout_secs = config.connect_timeout_secs.or(engine.connect_timeout_secs);
        config.query_timeout_secs = config.query_timeout_secs.or(engine.query_timeout_secs);
        config.retry = config.retry.or_else(|| engine.retry.clone());
        config.breaker = config.breaker.or_else(|| engine.breaker.clone());
        config.pool_size = config.pool_size.or(engine.pool_size);
        config.acquire_timeout_secs = config.acquire_timeout_secs.or(engine.acquire_timeout_secs);
        config.max_lifetime_secs = config.max_lifetime_secs.or(engine.max_lifetime_secs);
        config.idle_timeout_secs = config.idle_timeout_secs.or(engine.idle_timeout_secs);
        config.leak_warning_secs = config.leak_warning_secs.or(engine.leak_warning_secs);
        config
    }

    /// Provider options from these settings, defaults elsewhere; an error names a bad value.
    pub fn source_options(&self, source: &str) -> Result<SourceOptions> {
        let mut options = SourceOptions::default();
        if let Some(tls) = &self.tls {
            let mode = tls.mode.parse().map_err(|message| Error::Config {
                location: format!("[sources.{source}] tls"),
                message,
            })?;
            options.tls = Some(ibarrow_providers::tls::TlsOptions {
                mode,
                ca: tls.ca.clone(),
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            });
        }
        let pool = &mut options.pool;
        if let Some(size) = self.pool_size {
            pool.max_size = size;
        }
        if let Some(secs) = self.acquire_timeout_secs {
            pool.acquire_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = self.connect_timeout_secs {
            pool.connect_timeout = Some(Duration::from_secs(secs.max(1)));
        }
        // 0 switches a limit off.
        let limit = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        if let Some(secs) = self.max_lifetime_secs {
            pool.max_lifetime = limit(secs);
        }
        if let Some(secs) = self.idle_timeout_secs {
            pool.idle_timeout = limit(secs);
        }
        if let Some(secs) = self.leak_warning_secs {
            pool.leak_warning = limit(secs);
        }
        if let Some(writable) = self.writable {
            options.writable = writable;
        }
        let replicas = &mut options.replicas;
        if let Some(read_from) = &self.read_from {
            replicas.read_from = read_from.parse().map_err(|message| Error::Config {
                location: format!("[sources.{source}] read_from"),
                message,
            })?;
        }
        if let Some(balance) = &self.balance {
            replicas.balance = balance.parse().map_err(|message| Error::Config {
                location: format!("[sources.{source}] balance"),
                message,
            })?;
        }
        if let Some(secs) = self.max_replica_lag_secs {
            let max_lag = Duration::from_secs(secs);
            replicas.max_lag = Some(max_lag);
            // Read often enough that a replica is not used long after it falls behind.
            replicas.lag_check_interval =
                (max_lag / 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
        }
        if let Some(level) = &self.isolation_level {
            options.session.isolation = Some(level.parse().map_err(|err| Error::Config {
                location: format!("[sources.{source}] isolation_level"),
                message: format!("{err}"),
            })?);
        }
        let scan: &mut ScanOptions = &mut options.scan;
        if let Some(size) = self.max_text_size {
            scan.max_text_size = size;
        }
        if let Some(size) = self.max_binary_size {
            scan.max_binary_size = size;
        }
        if let Some(secs) = self.query_timeout_secs {
            scan.query_timeout = Some(Duration::from_secs(secs.max(1)));
        }
        let partitioning: &mut RangePartitioning = &mut options.partitioning;
        match self.partitions {
            Some(partitions) => partitioning.partitions = partitions.max(1),
            // Large tables are split over the cores unless the source says otherwise.
            None => {
                partitioning.partitions = std::thread::available_parallelism()
                    .map_or(1, std::num::NonZeroUsize::get)
                    .min(MAX_AUTOMATIC_PARTITIONS);
                partitioning.automatic = true;
            }
        }
        if let Some(rows) = self.min_partition_rows {
            partitioning.min_rows = rows;
        }
        if let Some(pushdown) = self.pushdown_aggregates {
            options.pushdown_aggregates = pushdown;
        }
        if let Some(pushdown) = self.pushdown_joins {
            options.pushdown_joins = pushdown;
        }
        if let Some(runtime_filters) = self.runtime_filters {
            options.runtime_filters = runtime_filters;
        }
        if let Some(packed_rows) = self.packed_rows {
            options.packed_rows = packed_rows;
        }
        if let Some(breaker) = &self.breaker {
            if breaker.enabled == Some(false) {
                options.breaker = None;
            } else if let Some(policy) = options.breaker.as_mut() {
                if let Some(rate) = breaker.failure_rate {
                    policy.failure_rate = rate.clamp(0.01, 1.0);
                }
                if let Some(window) = breaker.window {
                    policy.window = window.max(1);
                }
                if let Some(secs) = breaker.open_secs {
                    policy.open_for = Duration::from_secs(secs);
                }
            }
        }
        if let Some(retry) = &self.retry {
            let policy = &mut options.retry;
            if let Some(attempts) = retry.attempts {
                policy.attempts = attempts.max(1);
            }
            if let Some(ms) = retry.initial_backoff_ms {
                policy.initial_backoff = Duration::from_millis(ms);
            }
            if let Some(ms) = retry.max_backoff_ms {
                policy.max_backoff = Duration::from_millis(ms);
            }
        }
        Ok(options)
    }
}

/// Replaces each reference in `text`: `${NAME}` and `${env:NAME}` with the environment variable
/// NAME, `${file:PATH}` with the contents of the file at PATH without surrounding blanks and
/// line ends (a secret mounted as a file). Errors name the reference and `location`, never a
/// value.
pub fn expand_env(text: &str, location: &str) -> Result<String> {
    expand(text, location, false)
}

/// [`expand_env`] for an ODBC connection string: a value that holds `;`, `{` or `}` and is a
/// whole attribute's value (`Pwd=${file:/run/secrets/pg};`) is put in braces, so that it
/// stays one value.
pub fn expand_in_connection_string(text: &str, location: &str) -> Result<String> {
    expand(text, location, true)
}

fn expand(text: &str, location: &str, connection_string: bool) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| Error::Config {
            location: location.to_string(),
            message: "`${` without a closing `}`".into(),
        })?;
        let reference = &after[..end];
        let value = match reference.split_once(':') {
            Some(("file", path)) => secret_file(Path::new(path), location)?,
            Some(("env", name)) => environment_variable(name, location)?,
            Some((kind, _)) => {
                return Err(Error::Config {
                    location: location.to_string(),
                    message: format!(
                        "`${{{kind}:...}}` is no kind of reference; use ${{NAME}}, \
                         ${{env:NAME}} or ${{file:/path/to/secret}}"
                    ),
                });
            }
            None => environment_variable(reference, location)?,
        };
        rest = &after[end + 1..];
        let whole_value = out.ends_with('=') && (rest.is_empty() || rest.starts_with(';'));
        if connection_string && whole_value && value.contains([';', '{', '}']) {
            out.push('{');
            out.push_str(&value.replace('}', "}}"));
            out.push('}');
        } else {
            out.push_str(&value);
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn environment_variable(name: &str, location: &str) -> Result<String> {
    std::env::var(name).map_err(|_| Error::MissingVariable {
        name: name.to_string(),
        location: location.to_string(),
    })
}

/// The contents of a secret file, trimmed. A file others may write is refused: whoever can
/// change it can send ibarrow's logins elsewhere.
fn secret_file(path: &Path, location: &str) -> Result<String> {
    let problem = |message: String| Error::Config {
        location: format!("{location} ${{file:{}}}", path.display()),
        message,
    };
    if !path.is_absolute() {
        return Err(problem(
            "give the secret file's absolute path (e.g. ${file:/run/secrets/pg_password})".into(),
        ));
    }
    let metadata =
        std::fs::metadata(path).map_err(|err| problem(format!("cannot be read: {err}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(problem(format!(
                "other users may write it (mode {mode:04o}); make it writable by its owner \
                 only: chmod go-w {}",
                path.display()
            )));
        }
        if mode & 0o004 != 0 {
            tracing::warn!(
                path = %path.display(),
                "a secret file is readable by every user (mode {mode:04o}); chmod o-r it unless \
                 the container mounts it so"
            );
        }
    }
    if !metadata.is_file() {
        return Err(problem("is not a file".into()));
    }
    let text =
        std::fs::read_to_string(path).map_err(|err| problem(format!("cannot be read: {err}")))?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [engine]
        target_partitions = 4
        schema_cache_ttl_secs = 300

        [sources.pg]
        connection_string = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Pwd=${IBARROW_CONFIG_TEST_PW}"
        partitions = 4
        [sources.pg.tables.orders]
        partition_column = "o_orderkey"

        [sources.lite]
        connection_string = "Driver={SQLite3};Database=/data/crm.sqlite"
    "#;

    #[test]
    fn parses_the_documented_example() {
        let config = Config::parse(EXAMPLE, "text").unwrap();
        assert_eq!(config.engine.target_partitions, Some(4));
        assert_eq!(
            config.sources["pg"].tables["orders"]
                .partition_column
                .as_deref(),
            Some("o_orderkey")
        );
        assert_eq!(
            config.sources["pg"]
                .source_options("x")
                .unwrap()
                .partitioning
                .partitions,
            4
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = Config::parse("[sources.pg]\nconection_string = \"x\"", "f.toml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("conection_string") && text.contains("f.toml"),
            "{text}"
        );
        let err = Config::parse("[engine]\ntarget_partition = 2", "f.toml").unwrap_err();
        assert!(err.to_string().contains("target_partition"), "{err}");
        let err = Config::parse(
            "[sources.pg]\nconnection_string = \"x\"\nretry = { attempts = 2, backoff = 1 }",
            "f.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("backoff"), "{err}");
    }

    #[test]
    fn engine_defaults_fill_what_a_source_leaves_open() {
        let config = Config::parse(
            "[engine]\nquery_timeout_secs = 60\nconnect_timeout_secs = 5\n\
             retry = { attempts = 4, initial_backoff_ms = 10 }\n\
             [sources.a]\nconnection_string = \"x\"\nquery_timeout_secs = 7\n\
             [sources.b]\nconnection_string = \"y\"\nretry = { attempts = 1 }",
            "text",
        )
        .unwrap();
        let a = config.sources["a"]
            .with_defaults(&config.engine)
            .source_options("x")
            .unwrap();
        assert_eq!(a.scan.query_timeout, Some(Duration::from_secs(7)));
        assert_eq!(a.pool.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(a.retry.attempts, 4);
        assert_eq!(a.retry.initial_backoff, Duration::from_millis(10));
        let b = config.sources["b"]
            .with_defaults(&config.engine)
            .source_options("x")
            .unwrap();
        assert_eq!(b.scan.query_timeout, Some(Duration::from_secs(60)));
        assert_eq!(b.retry.attempts, 1);
    }

    #[test]
    fn environment_variables_are_expanded_or_named_when_missing() {
        let config = Config::parse(EXAMPLE, "text").unwrap();
        // SAFETY: only this test reads or writes this variable.
        unsafe { std::env::remove_var("IBARROW_CONFIG_TEST_PW") };
        let err = config.sources["pg"].connect("pg").unwrap_err().to_string();
        assert!(
            err.contains("IBARROW_CONFIG_TEST_PW") && err.contains("[sources.pg]"),
            "{err}"
        );
        unsafe { std::env::set_var("IBARROW_CONFIG_TEST_PW", "s3cret") };
        let connect = config.sources["pg"].connect("pg").unwrap();
        assert_eq!(
            connect,
            Connect::ConnectionString(
                "Driver={PostgreSQL Unicode};Server=127.0.0.1;Pwd=s3cret".into()
            )
        );
        assert!(!format!("{connect:?}").contains("s3cret"));
    }

    #[test]
    fn debug_output_keeps_passwords_out() {
        let config = Config::parse(
            "[sources.pg]\nconnection_string = \"Driver={PostgreSQL Unicode};Uid=u;Pwd=hunter2\"\n\
             [profiles.prod.sources.pg]\nconnection_string = \"Driver=x;Pwd=hunter3\"\n",
            "text",
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        assert!(shown.contains("Uid=u"), "{shown}");
    }

    #[test]
    fn a_profile_overrides_any_key_and_merges_tables() {
        let text = r#"
            [engine]
            pool_size = 4
            query_timeout_secs = 30
            [sources.pg]
            connection_string = "Driver={PostgreSQL Unicode};Server=dev"
            [profiles.prod.engine]
            query_timeout_secs = 5
            [profiles.prod.sources.pg]
            connection_string = "Driver={PostgreSQL Unicode};Server=prod"
            [profiles.prod.sources.lite]
            connection_string = "Driver={SQLite3};Database=/data/x.sqlite"
        "#;
        let config = Config::parse(text, "text").unwrap();
        assert_eq!(config.with_profile(None).unwrap(), config);
        let prod = config.with_profile(Some("prod")).unwrap();
        assert_eq!(prod.engine.query_timeout_secs, Some(5));
        assert_eq!(prod.engine.pool_size, Some(4), "kept from the file");
        assert_eq!(
            prod.sources["pg"].connection_string.as_deref(),
            Some("Driver={PostgreSQL Unicode};Server=prod")
        );
        assert_eq!(prod.sources.len(), 2);
        let err = config
            .with_profile(Some("staging"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("staging") && err.contains("prod"), "{err}");
        // A mistyped key in a profile is an error even while the profile is not chosen.
        let typo = format!("{text}\n[profiles.qa.engine]\nquery_timeout = 1\n");
        let err = Config::parse(&typo, "text").unwrap_err().to_string();
        assert!(
            err.contains("[profiles.qa]") && err.contains("query_timeout"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn secrets_come_from_files_and_never_appear_in_errors() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pg_password");
        std::fs::write(&secret, "s3cr3t-from-file\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let reference = format!(
            "Pwd=${{file:{}}};Uid=${{env:IBARROW_CONFIG_TEST_USER}}",
            secret.display()
        );
        // SAFETY: only this test reads or writes this variable.
        unsafe { std::env::set_var("IBARROW_CONFIG_TEST_USER", "ibarrow") };
        assert_eq!(
            expand_env(&reference, "[sources.pg] connection_string").unwrap(),
            "Pwd=s3cr3t-from-file;Uid=ibarrow"
        );
        // A file others may change is refused, naming what to do but not the secret.
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = expand_env(&reference, "[sources.pg] connection_string")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chmod go-w") && !err.contains("s3cr3t"),
            "{err}"
        );
        let missing = format!("${{file:{}}}", dir.path().join("absent").display());
        let err = expand_env(&missing, "x").unwrap_err().to_string();
        assert!(
            err.contains("absent") && err.contains("cannot be read"),
            "{err}"
        );
        let relative = expand_env("${file:pg_password}", "x")
            .unwrap_err()
            .to_string();
        assert!(relative.contains("absolute path"), "{relative}");
        let unknown = expand_env("${vault:pg}", "x").unwrap_err().to_string();
        assert!(unknown.contains("${file:"), "{unknown}");
        // A secret with a `;` stays one value of the connection string.
        std::fs::write(&secret, "semi;colon}brace").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!("Uid=u;Pwd=${{file:{}}};Server=x", secret.display());
        assert_eq!(
            expand_in_connection_string(&text, "x").unwrap(),
            "Uid=u;Pwd={semi;colon}}brace};Server=x"
        );
    }

    #[test]
    fn a_source_needs_exactly_one_way_to_connect() {
        let none = SourceConfig::default();
        assert!(
            none.connect("x")
                .unwrap_err()
                .to_string()
                .contains("needs connection_string")
        );
        let both = SourceConfig {
            connection_string: Some("a".into()),
            dsn: Some("b".into()),
            ..SourceConfig::default()
        };
        assert!(
            both.connect("x")
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        let size = |text: &str| text.parse::<ByteSize>().map(|s| s.0);
        assert_eq!(size("512MB"), Ok(512_000_000));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("1.5 gb"), Ok(1_500_000_000));
        assert_eq!(size("4096"), Ok(4096));
        for bad in ["", "MB", "12 parsecs", "-1GB", "0", "0.1"] {
            let err = size(bad).unwrap_err();
            assert!(err.contains("e.g. \"512MB\""), "{bad}: {err}");
        }
        let config = Config::parse("[engine]\nmemory_limit = \"256MB\"\n", "t").unwrap();
        assert_eq!(config.engine.memory_limit, Some(ByteSize(256_000_000)));
        let config = Config::parse("[engine]\nmemory_limit = 1048576\n", "t").unwrap();
        assert_eq!(config.engine.memory_limit, Some(ByteSize(1 << 20)));
        let err = Config::parse("[engine]\nmemory_limit = \"lots\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("`lots` is not a size"), "{err}");
    }
}
