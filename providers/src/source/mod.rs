//! One ODBC database ([`OdbcSource`]): its endpoints (the primary and any replicas, each with
//! its own connection pool and breaker, `endpoints.rs`), dialect and options. Its calls for
//! metadata and health are in `metadata.rs`, the tables it makes in `providers/src/table.rs`.

mod driver_settings;
mod endpoints;
mod metadata;
mod options;
mod retry;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use ibarrow_sql::Dialect;

use crate::connection_string::ConnectionString;
use crate::environment::{OpenConnection, describe, driver_name};
use crate::error::OdbcError;
use crate::pool::ConnectionPool;
use driver_settings::apply_driver_settings;

pub(crate) use endpoints::route;
pub use endpoints::{Balance, Endpoint, EndpointRole, LagReading, ReadFrom, ReplicaOptions};
pub use metadata::{EndpointHealth, SourceHealth};
pub use options::{ScanOptions, SourceOptions};
pub use retry::RetryPolicy;

/// A connected ODBC database. Cheap to share (`Arc`); every method is safe to call from many
/// tasks at once.
#[derive(Debug)]
pub struct OdbcSource {
    name: String,
    dialect: Dialect,
    dbms_name: String,
    /// The primary first, then the replicas in the configuration's order.
    endpoints: Vec<Arc<Endpoint>>,
    /// Turns of `round_robin`, and the tie-breaker of `least_busy`.
    turn: AtomicUsize,
    options: SourceOptions,
    /// The source itself, for the lag readings a call starts in the background.
    this: Weak<OdbcSource>,
    /// When a write last went to the primary: reads follow it there for a while.
    last_write: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long reads of a source with replicas go to the primary after a write through the
/// engine, so that they see it (longer when `max_replica_lag_secs` allows more lag).
const READ_YOUR_WRITES: std::time::Duration = std::time::Duration::from_secs(5);

impl OdbcSource {
    /// Connects to the database of an ODBC connection string (`Driver={…};Server=…;…`).
    pub async fn connect(
        name: &str,
        connection_string: &str,
        options: SourceOptions,
    ) -> Result<Arc<Self>, OdbcError> {
        let parsed = ConnectionString::parse(connection_string)?;
        Self::open(name, parsed, Vec::new(), options).await
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
            Vec::new(),
            options,
        )
        .await
    }

    /// Connects to a database with replicas: writes go to `primary`, reads as
    /// `options.replicas` says. Each endpoint gets its own pool and breaker; the source opens
    /// when any one of them answers (the first in order detects the dialect).
    pub async fn connect_with_replicas(
        name: &str,
        primary: ConnectionString,
        replicas: Vec<ConnectionString>,
        options: SourceOptions,
    ) -> Result<Arc<Self>, OdbcError> {
        Self::open(name, primary, replicas, options).await
    }

    async fn open(
        name: &str,
        primary: ConnectionString,
        replicas: Vec<ConnectionString>,
        options: SourceOptions,
    ) -> Result<Arc<Self>, OdbcError> {
        let source_name = name.to_string();
        let scan = options.scan.clone();
        let tls = options.tls.clone();
        let pool_options = options.pool.clone();
        let has_replicas = !replicas.is_empty();
        // Every endpoint's string gets the driver settings and TLS keys; the first that
        // answers tells the dialect (a primary that is down must not keep reads away).
        let (connection_strings, first, dbms_name) = run_blocking(name, move || {
            let mut prepared = Vec::new();
            for mut connection_string in std::iter::once(primary).chain(replicas) {
                apply_driver_settings(&mut connection_string, &scan);
                if let Some(tls) = &tls {
                    let driver = driver_name(&connection_string);
                    let settings = crate::tls::tls_settings(&driver, tls).map_err(|message| {
                        OdbcError::InvalidConnectionString(format!(
                            "source `{source_name}`: {message}"
                        ))
                    })?;
                    for (key, value) in settings {
                        connection_string.force(key, &value);
                    }
                }
                prepared.push(connection_string);
            }
            let mut first_error = None;
            for (index, connection_string) in prepared.iter().enumerate() {
                match probe(&source_name, connection_string, pool_options.clone()) {
                    Ok((connection, dbms_name)) => {
                        return Ok((prepared, Some((index, connection)), dbms_name));
                    }
                    Err(err) if has_replicas => {
                        tracing::warn!(source = %source_name, endpoint = index, error = %err,
                            "an endpoint does not answer; trying the next one");
                        first_error.get_or_insert(err);
                    }
                    Err(err) => return Err(err),
                }
            }
            Err(first_error.unwrap_or_else(|| OdbcError::Task {
                source_name: source_name.clone(),
                message: "no endpoint to connect to".into(),
            }))
        })
        .await?;
        let dialect = Dialect::from_dbms_name(&dbms_name);
        let mut endpoints = Vec::with_capacity(connection_strings.len());
        for (index, connection_string) in connection_strings.into_iter().enumerate() {
            let (label, role) = match index {
                0 => ("primary".to_string(), EndpointRole::Primary),
                n => (format!("replica{n}"), EndpointRole::Replica),
            };
            let mut session = options.session;
            let read_only = !options.writable || role == EndpointRole::Replica;
            if read_only && dialect.has_read_only_sessions() {
                session.read_only = true;
            }
            let session_setup =
                dialect
                    .session_setup(&session)
                    .map_err(|source| OdbcError::Sql {
                        source_name: name.to_string(),
                        source,
                    })?;
            let pool = Arc::new(
                ConnectionPool::new(name, connection_string, options.pool.clone())
                    .with_session_setup(session_setup),
            );
            let breaker = options.breaker.clone().map(|policy| {
                Arc::new(crate::breaker::CircuitBreaker::new(
                    policy,
                    Arc::new(crate::breaker::SystemClock),
                ))
            });
            endpoints.push(Arc::new(Endpoint::new(label, role, pool, breaker)));
        }
        if let Some((index, connection)) = first {
            adopt_probe(name, &endpoints[index], connection).await?;
        }
        tracing::debug!(source = name, dbms = %dbms_name, %dialect, endpoints = endpoints.len(),
            "connected ODBC source");
        let source = Arc::new_cyclic(|this| Self {
            name: name.to_string(),
            dialect,
            dbms_name,
            endpoints,
            turn: AtomicUsize::new(0),
            options,
            this: this.clone(),
            last_write: std::sync::Mutex::new(None),
        });
        source.read_replica_lags().await;
        Ok(source)
    }

    /// The name the source was connected under; errors and logs quote it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The primary's circuit breaker (`None`: configured without one); each replica has its
    /// own ([`Self::endpoints`]).
    pub fn breaker(&self) -> Option<&Arc<crate::breaker::CircuitBreaker>> {
        self.primary().breaker()
    }
    /// The SQL dialect its statements are written in, detected from `SQL_DBMS_NAME`.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The database's own name for itself (`SQL_DBMS_NAME`).
    pub fn dbms_name(&self) -> &str {
        &self.dbms_name
    }

    /// The primary's connection pool; each replica has its own ([`Self::endpoints`]).
    pub fn pool(&self) -> &Arc<ConnectionPool> {
        self.primary().pool()
    }

    /// The primary, then the replicas.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    fn primary(&self) -> &Arc<Endpoint> {
        &self.endpoints[0]
    }

    /// The options the source was connected with.
    pub fn options(&self) -> &SourceOptions {
        &self.options
    }

    /// The endpoints a call tries, in order ([`route`]); an error naming why each is left out
    /// when none can take it.
    pub(crate) fn route_call(
        &self,
        write: bool,
        endpoint: Option<usize>,
    ) -> Result<Vec<Arc<Endpoint>>, OdbcError> {
        if let Some(index) = endpoint {
            let pinned = self.endpoints.get(index).ok_or_else(|| OdbcError::Task {
                source_name: self.name.clone(),
                message: format!("no endpoint {index}"),
            })?;
            return Ok(vec![Arc::clone(pinned)]);
        }
        if self.endpoints.len() == 1 {
            return Ok(vec![Arc::clone(self.primary())]);
        }
        self.start_due_lag_readings();
        let mut replicas = self.options.replicas.clone();
        if !write && self.wrote_lately() {
            replicas.read_from = ReadFrom::Primary;
        }
        let candidates: Vec<_> = self
            .endpoints
            .iter()
            .map(|e| e.candidate(replicas.max_lag))
            .collect();
        if !write {
            self.start_due_probes(&candidates, replicas.read_from);
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let order = route(&candidates, &replicas, write, turn);
        if order.is_empty() {
            return Err(OdbcError::NoHealthyEndpoint {
                source_name: self.name.clone(),
                reasons: self.unavailable_reasons(write),
            });
        }
        Ok(order
            .into_iter()
            .map(|index| Arc::clone(&self.endpoints[index]))
            .collect())
    }

    /// Notes that a write is starting on the primary: reads follow it there for a while.
    pub(crate) fn note_write(&self) {
        if self.endpoints.len() > 1
            && let Ok(mut last_write) = self.last_write.lock()
        {
            *last_write = Some(std::time::Instant::now());
        }
    }

    /// Probes, with a ping in the background, the breakers of endpoints that are due for a
    /// probe but that reads do not try first (`read_from` names others), so that they come
    /// back into use as fallbacks without a user's read waiting on them.
    fn start_due_probes(&self, candidates: &[endpoints::Candidate], read_from: ReadFrom) {
        const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
        for (index, candidate) in candidates.iter().enumerate() {
            if read_from.prefers(candidate.role)
                || candidate.availability != endpoints::Availability::ProbeDue
            {
                continue;
            }
            let Some(claim) = self.endpoints[index].start_probe() else {
                continue;
            };
            if let (Some(source), Ok(runtime)) =
                (self.this.upgrade(), tokio::runtime::Handle::try_current())
            {
                runtime.spawn(async move {
                    let _claim = claim;
                    source.endpoint_health(index, PROBE_WAIT).await;
                });
            }
        }
    }

    /// Whether a write went to the primary within [`READ_YOUR_WRITES`] (or the allowed lag,
    /// when longer).
    fn wrote_lately(&self) -> bool {
        let window = self
            .options
            .replicas
            .max_lag
            .map_or(READ_YOUR_WRITES, |lag| lag.max(READ_YOUR_WRITES));
        self.last_write
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Whether a read could start now: [`route`] leaves some endpoint in.
    pub fn has_healthy_endpoint(&self) -> bool {
        let replicas = &self.options.replicas;
        let candidates: Vec<_> = self
            .endpoints
            .iter()
            .map(|e| e.candidate(replicas.max_lag))
            .collect();
        !route(&candidates, replicas, false, 0).is_empty()
    }

    /// Why no endpoint can take a call: [`route`] leaves out only endpoints whose breaker is
    /// open (a lagging replica still comes last), so each one's time left is the reason.
    fn unavailable_reasons(&self, write: bool) -> String {
        let reasons: Vec<String> = self
            .endpoints
            .iter()
            .filter(|e| !write || e.role() == EndpointRole::Primary)
            .filter_map(|endpoint| {
                let retry_in = endpoint.breaker()?.availability().err()?;
                Some(format!(
                    "{}: circuit breaker open for {:.0?} more",
                    endpoint.label(),
                    retry_in
                ))
            })
            .chain(write.then(|| "writes go to the primary only".to_string()))
            .collect();
        reasons.join("; ")
    }

    /// Starts a lag reading, in the background, of each replica whose last one is too old.
    fn start_due_lag_readings(&self) {
        let replicas = &self.options.replicas;
        if replicas.max_lag.is_none() {
            return;
        }
        for (index, endpoint) in self.endpoints.iter().enumerate().skip(1) {
            if !endpoint.lag_check_due(replicas.lag_check_interval) {
                continue;
            }
            match (self.this.upgrade(), tokio::runtime::Handle::try_current()) {
                (Some(source), Ok(runtime)) => {
                    runtime.spawn(async move { source.read_replica_lag(index).await });
                }
                _ => endpoint.record_lag(LagReading::Unknown),
            }
        }
    }

    /// Reads every replica's lag now (when `max_replica_lag_secs` is set).
    async fn read_replica_lags(&self) {
        if self.options.replicas.max_lag.is_none() {
            return;
        }
        let readings = (1..self.endpoints.len()).map(|index| {
            self.endpoints[index].lag_check_due(std::time::Duration::ZERO);
            self.read_replica_lag(index)
        });
        futures::future::join_all(readings).await;
    }
}

/// Opens the connection that detects the dialect, under the pool's connect timeout.
fn probe(
    source_name: &str,
    connection_string: &ConnectionString,
    pool_options: crate::pool::PoolOptions,
) -> Result<(OpenConnection, String), OdbcError> {
    let probe = ConnectionPool::new(source_name, connection_string.clone(), pool_options);
    let connection = probe.connect()?;
    let dbms_name = connection
        .database_management_system_name()
        .map_err(|err| {
            let (_, message) = describe(&err, connection_string);
            OdbcError::Odbc {
                source_name: source_name.to_string(),
                context: "reading SQL_DBMS_NAME".into(),
                message,
            }
        })?;
    Ok((connection, dbms_name))
}

/// Sets the probe's session up like the pool's own connections and keeps it there.
async fn adopt_probe(
    name: &str,
    endpoint: &Arc<Endpoint>,
    connection: OpenConnection,
) -> Result<(), OdbcError> {
    let setup_pool = Arc::clone(endpoint.pool());
    let connection = run_blocking(name, move || {
        setup_pool.set_up_session(&connection)?;
        Ok(connection)
    })
    .await?;
    endpoint.pool().adopt(connection);
    Ok(())
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
