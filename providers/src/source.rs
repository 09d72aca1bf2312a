//! One ODBC database: its connection pool, its dialect and its catalog.

use std::sync::Arc;

use ibarrow_sql::Dialect;

use crate::call::CallSpec;
use crate::connection_string::ConnectionString;
use crate::discovery::{self, NameMatch, TableEntry};
use crate::environment::{describe, driver_name};
use crate::error::OdbcError;
use crate::partitioning::RangePartitioning;
use crate::pool::{ConnectionPool, PoolOptions};
use crate::table::OdbcTable;
use crate::type_map::map_column;

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

/// How reads that fail with a lost connection before delivering any row are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all (1: no retry).
    pub attempts: u32,
    pub initial_backoff: std::time::Duration,
    pub max_backoff: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The pause before try `attempt + 1`: doubling from `initial_backoff`, capped, with up
    /// to half of it as random jitter so that many scans do not retry in step.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let doubled = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let base = doubled.min(self.max_backoff);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 2000.0);
        base.saturating_sub(jitter)
    }
}

#[cfg(test)]
mod retry_tests {
    use super::RetryPolicy;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_half_jitter() {
        let policy = RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        for (attempt, base) in [(1, 100), (2, 200), (3, 300), (4, 300)] {
            let delay = policy.backoff(attempt).as_millis();
            assert!(delay <= base && delay >= base / 2, "{attempt}: {delay}");
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceOptions {
    pub pool: PoolOptions,
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
        }
    }
}

/// What [`OdbcSource::health`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHealth {
    pub source: String,
    pub reachable: bool,
    /// Round trip of the ping, when it answered.
    pub latency: Option<std::time::Duration>,
    /// Why it is not reachable (no secrets).
    pub error: Option<String>,
    pub breaker: Option<crate::breaker::BreakerState>,
    pub pool_max: usize,
    pub in_use: usize,
    pub idle: usize,
    /// Connections checked out for longer than the pool's `leak_warning`.
    pub held_too_long: usize,
}

/// A connected ODBC database. Cheap to share (`Arc`); every method is safe to call from many
/// tasks at once.
#[derive(Debug)]
pub struct OdbcSource {
    name: String,
    dialect: Dialect,
    dbms_name: String,
    pool: Arc<ConnectionPool>,
    options: SourceOptions,
    breaker: Option<Arc<crate::breaker::CircuitBreaker>>,
}

impl OdbcSource {
    /// Connects to the database of an ODBC connection string (`Driver={…};Server=…;…`).
    pub async fn connect(
        name: &str,
        connection_string: &str,
        options: SourceOptions,
    ) -> Result<Arc<Self>, OdbcError> {
        let parsed = ConnectionString::parse(connection_string)?;
        Self::open(name, parsed, options).await
    }

    /// Connects to a data source configured in `odbc.ini`.
    pub async fn connect_dsn(
        name: &str,
        dsn: &str,
        user: Option<&str>,
        password: Option<&str>,
        options: SourceOptions,
    ) -> Result<Arc<Self>, OdbcError> {
        Self::open(
            name,
            ConnectionString::from_dsn(dsn, user, password),
            options,
        )
        .await
    }

    async fn open(
        name: &str,
        mut connection_string: ConnectionString,
        options: SourceOptions,
    ) -> Result<Arc<Self>, OdbcError> {
        let source_name = name.to_string();
        let scan = options.scan.clone();
        let tls = options.tls.clone();
        let pool_options = options.pool.clone();
        let (connection_string, first, dbms_name) = run_blocking(name, move || {
            apply_driver_settings(&mut connection_string, &scan);
            if let Some(tls) = &tls {
                let driver = driver_name(&connection_string);
                let settings = crate::tls::tls_settings(&driver, tls).map_err(|message| {
                    OdbcError::InvalidConnectionString(format!("source `{source_name}`: {message}"))
                })?;
                for (key, value) in settings {
                    connection_string.force(key, &value);
                }
            }
            // The probe honours the source's connect timeout like every later connection.
            let probe = ConnectionPool::new(&source_name, connection_string.clone(), pool_options);
            let connection = probe.connect()?;
            let dbms_name = connection
                .database_management_system_name()
                .map_err(|err| {
                    let (_, message) = describe(&err, &connection_string);
                    OdbcError::Odbc {
                        source_name: source_name.clone(),
                        context: "reading SQL_DBMS_NAME".into(),
                        message,
                    }
                })?;
            Ok((connection_string, connection, dbms_name))
        })
        .await?;
        let dialect = Dialect::from_dbms_name(&dbms_name);
        let mut session = options.session;
        if !options.writable && dialect.has_read_only_sessions() {
            session.read_only = true;
        }
        let session_setup = dialect
            .session_setup(&session)
            .map_err(|source| OdbcError::Sql {
                source_name: name.to_string(),
                source,
            })?;
        let pool = Arc::new(
            ConnectionPool::new(name, connection_string, options.pool.clone())
                .with_session_setup(session_setup),
        );
        let setup_pool = Arc::clone(&pool);
        let first = run_blocking(name, move || {
            setup_pool.set_up_session(&first)?;
            Ok(first)
        })
        .await?;
        pool.adopt(first);
        tracing::debug!(source = name, dbms = %dbms_name, %dialect, "connected ODBC source");
        let breaker = options.breaker.clone().map(|policy| {
            Arc::new(crate::breaker::CircuitBreaker::new(
                policy,
                Arc::new(crate::breaker::SystemClock),
            ))
        });
        Ok(Arc::new(Self {
            name: name.to_string(),
            dialect,
            dbms_name,
            pool,
            options,
            breaker,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn breaker(&self) -> Option<&Arc<crate::breaker::CircuitBreaker>> {
        self.breaker.as_ref()
    }

    /// Whether the database answers a trivial statement within `timeout` on a pooled
    /// connection, how long that took, and the pool's state. The ping is a call like any
    /// other: an open breaker answers for it, and its outcome counts for the breaker.
    pub async fn health(&self, timeout: std::time::Duration) -> SourceHealth {
        let ping = self.dialect.ping_statement();
        let started = std::time::Instant::now();
        let spec = CallSpec::new(self, "answering a ping")
            .statement(ping)
            .deadline(Some(timeout))
            .once();
        let answered = self
            .call(spec, move |conn| {
                discovery::first_row_as_text(conn, ping, ())
                    .map_err(|err| conn.failure("answering a ping", err))
            })
            .await;
        let (latency, error) = match answered {
            Ok(_) => (Some(started.elapsed()), None),
            Err(OdbcError::Timeout { .. }) => (None, Some(format!("no answer within {timeout:?}"))),
            Err(err) => (None, Some(err.to_string())),
        };
        SourceHealth {
            source: self.name.clone(),
            reachable: error.is_none(),
            latency,
            error,
            breaker: self.breaker.as_ref().map(|b| b.state()),
            pool_max: self.pool.options().max_size,
            in_use: self.pool.in_use(),
            idle: self.pool.idle_count(),
            held_too_long: self.pool.held_too_long(),
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The database's own name for itself (`SQL_DBMS_NAME`).
    pub fn dbms_name(&self) -> &str {
        &self.dbms_name
    }

    pub fn pool(&self) -> &Arc<ConnectionPool> {
        &self.pool
    }

    pub fn options(&self) -> &SourceOptions {
        &self.options
    }

    /// The database's estimate of the rows a SELECT returns, without running it (PostgreSQL
    /// only, see [`crate::discovery::statement_row_estimate`]). Asked while planning, so it
    /// waits at most a second (less under a shorter query timeout): a slow or silent server
    /// costs the estimate, not the query, whose own run reports the trouble under its
    /// deadline. `None` then, on any failure, and while the source's circuit breaker is open
    /// (its queries fail at once, their planning must not wait).
    pub async fn statement_row_estimate(&self, sql: &str) -> Option<u64> {
        const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
        let breaker_open = self
            .breaker
            .as_ref()
            .is_some_and(|b| b.state() == crate::breaker::BreakerState::Open);
        if self.dialect() != Dialect::PostgreSql || breaker_open {
            return None;
        }
        let wait = self
            .options
            .scan
            .query_timeout
            .map_or(LONGEST_WAIT, |timeout| timeout.min(LONGEST_WAIT));
        let (dialect, sql) = (self.dialect(), sql.to_string());
        let spec = CallSpec::new(self, "estimating a statement's rows")
            .statement(crate::discovery::explain_statement(&sql))
            .deadline(Some(wait))
            .once();
        self.call(spec, move |conn| {
            Ok(crate::discovery::statement_row_estimate(
                conn, dialect, &sql,
            ))
        })
        .await
        .ok()?
    }

    /// Schemas of the source (docs/architecture.md, "A query's path", step 4), system schemas left out.
    pub async fn schemas(&self) -> Result<Vec<String>, OdbcError> {
        let dialect = self.dialect;
        let mut schemas = self
            .call(CallSpec::new(self, "listing schemas"), move |conn| {
                let listed = discovery::list_schemas(conn, dialect);
                listed.map_err(|err| conn.failure("listing schemas", err))
            })
            .await?;
        schemas.retain(|name| !discovery::is_system_schema(name));
        Ok(schemas)
    }

    /// Tables and views of a schema, resolved as [`Self::resolve_schema`] does.
    pub async fn tables(&self, schema: &str) -> Result<Vec<TableEntry>, OdbcError> {
        let schema = self.resolve_schema(schema).await?;
        self.tables_in_listed_schema(schema).await
    }

    /// Tables and views of a schema spelled exactly as [`Self::schemas`] lists it.
    pub async fn tables_in_listed_schema(
        &self,
        schema: String,
    ) -> Result<Vec<TableEntry>, OdbcError> {
        let dialect = self.dialect;
        self.call(CallSpec::new(self, "listing tables"), move |conn| {
            let listed = discovery::list_tables(conn, dialect, &schema);
            listed.map_err(|err| conn.failure("listing tables", err))
        })
        .await
    }

    /// The remote spelling of a schema name a user typed.
    pub async fn resolve_schema(&self, schema: &str) -> Result<String, OdbcError> {
        if self.dialect == Dialect::Sqlite {
            return if schema.eq_ignore_ascii_case(discovery::DEFAULT_SCHEMA) {
                Ok(discovery::DEFAULT_SCHEMA.to_string())
            } else {
                Err(OdbcError::SchemaNotFound {
                    source_name: self.name.clone(),
                    schema: schema.to_string(),
                    available: discovery::DEFAULT_SCHEMA.to_string(),
                })
            };
        }
        let dialect = self.dialect;
        let wanted = schema.to_string();
        let all = self
            .call(CallSpec::new(self, "listing schemas"), move |conn| {
                let listed = discovery::list_schemas(conn, dialect);
                listed.map_err(|err| conn.failure("listing schemas", err))
            })
            .await?;
        match discovery::resolve_name(all.iter().map(String::as_str), &wanted) {
            NameMatch::Found(name) => Ok(name.to_string()),
            NameMatch::Ambiguous(candidates) => Err(OdbcError::AmbiguousName {
                source_name: self.name.clone(),
                name: wanted,
                candidates: candidates.join(", "),
            }),
            NameMatch::NotFound => Err(OdbcError::SchemaNotFound {
                source_name: self.name.clone(),
                schema: wanted,
                available: all.join(", "),
            }),
        }
    }

    /// A DataFusion table for `schema.table`; names are resolved case-insensitively when that
    /// is unambiguous. Reads the columns and primary key once, through the catalog functions.
    pub async fn table(
        self: &Arc<Self>,
        schema: &str,
        table: &str,
    ) -> Result<Arc<OdbcTable>, OdbcError> {
        self.table_with_partition_column(schema, table, None).await
    }

    /// [`Self::table`], splitting scans on `partition_column` instead of the primary key.
    pub async fn table_with_partition_column(
        self: &Arc<Self>,
        schema: &str,
        table: &str,
        partition_column: Option<&str>,
    ) -> Result<Arc<OdbcTable>, OdbcError> {
        let schema = self.resolve_schema(schema).await?;
        let dialect = self.dialect;
        let source_name = self.name.clone();
        let wanted = table.to_string();
        let reading = CallSpec::new(self, format!("reading the metadata of `{table}`"));
        let (table_name, kind, columns, primary_key, rows) = self
            .call(reading, move |conn| {
                let entries = discovery::list_tables(conn, dialect, &schema)
                    .map_err(|err| conn.failure("listing tables", err))?;
                let entry =
                    match discovery::resolve_name(entries.iter().map(|e| e.name.as_str()), &wanted)
                    {
                        NameMatch::Found(name) => entries.iter().find(|e| e.name == name).cloned(),
                        NameMatch::Ambiguous(candidates) => {
                            return Err(OdbcError::AmbiguousName {
                                source_name: source_name.clone(),
                                name: wanted.clone(),
                                candidates: candidates.join(", "),
                            });
                        }
                        NameMatch::NotFound => None,
                    };
                let Some(entry) = entry else {
                    let mut available: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
                    available.truncate(50);
                    return Err(OdbcError::TableNotFound {
                        source_name: source_name.clone(),
                        schema: schema.clone(),
                        table: wanted.clone(),
                        available: if available.is_empty() {
                            "none".into()
                        } else {
                            available.join(", ")
                        },
                    });
                };
                let mut columns = discovery::table_columns(conn, dialect, &schema, &entry.name)
                    .map_err(|err| conn.failure("reading columns", err))?;
                if dialect == Dialect::PostgreSql {
                    let unconstrained =
                        discovery::postgres_unconstrained_numerics(conn, &schema, &entry.name)
                            .map_err(|err| conn.failure("reading numeric precisions", err))?;
                    for column in columns
                        .iter_mut()
                        .filter(|c| unconstrained.contains(&c.name))
                    {
                        column.column_size = None;
                    }
                }
                // Views and some drivers have no primary keys; that is not an error.
                let primary_key =
                    discovery::primary_key(conn, dialect, &schema, &entry.name).unwrap_or_default();
                let rows = discovery::row_estimate(conn, dialect, &schema, &entry.name);
                let remote = discovery::remote_table(dialect, &schema, &entry.name);
                Ok((remote, entry.kind, columns, primary_key, rows))
            })
            .await?;
        let mapped = columns.iter().map(|c| map_column(c, dialect)).collect();
        let mut partitioning = self.options.partitioning.clone();
        if let Some(column) = partition_column {
            partitioning.column = Some(column.to_string());
        }
        let table = OdbcTable::new(
            Arc::clone(self),
            table_name,
            kind,
            mapped,
            primary_key,
            rows,
        )
        .with_range_partitioning(&partitioning)?;
        Ok(Arc::new(table))
    }
}

/// Driver keys ibarrow sets. Security settings are forced; performance ones are defaults the
/// user's connection string may override.
fn apply_driver_settings(connection_string: &mut ConnectionString, scan: &ScanOptions) {
    let driver = driver_name(connection_string).to_ascii_lowercase();
    if driver.contains("postgres") || driver.contains("psql") {
        // CommLog/Debug write the password into world-readable files in the temp folder.
        connection_string.force("CommLog", "0");
        connection_string.force("Debug", "0");
        // Without declare/fetch psqlODBC reads the whole result into memory before the first row.
        connection_string.set_default("UseDeclareFetch", "1");
        connection_string.set_default("Fetch", &scan.batch_rows.to_string());
        connection_string.set_default("BoolsAsChar", "0");
        // Unbounded varchar and text are otherwise described as 255 and 8190 characters long.
        let max_text = scan.max_text_size.to_string();
        connection_string.set_default("MaxVarcharSize", &max_text);
        connection_string.set_default("MaxLongVarcharSize", &max_text);
        // A network that goes dead under a connection (no acknowledgements) ends its reads
        // within about a minute instead of the kernel's two hours; ibarrow's own deadline has
        // freed the query long before, this frees the thread.
        connection_string.set_default("KeepaliveTime", "10");
        connection_string.set_default("KeepaliveInterval", "5");
    } else if driver.contains("maria") || driver.contains("mysql") {
        // The driver's own socket limits, past ibarrow's deadline: a server that stops
        // answering frees the thread too (Connector/C reads up to three times each).
        if let Some(timeout) = scan.query_timeout {
            let seconds = (timeout.as_secs() + 5).to_string();
            connection_string.set_default("READ_TIMEOUT", &seconds);
            connection_string.set_default("WRITE_TIMEOUT", &seconds);
        }
    } else if driver.contains("sqlite") {
        // Without StepAPI the driver materialises the whole result before the first row.
        connection_string.set_default("StepAPI", "1");
    }
}

async fn run_blocking<R, F>(source_name: &str, f: F) -> Result<R, OdbcError>
where
    F: FnOnce() -> Result<R, OdbcError> + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| OdbcError::Task {
            source_name: source_name.to_string(),
            message: err.to_string(),
        })?
}
