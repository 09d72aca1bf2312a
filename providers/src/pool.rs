//! The engine's own connection pool, one per source (unixODBC's pooling is not used: it can
//! hand back connections whose backend is gone).
//!
//! A tokio semaphore caps the connections in use and gives the acquire timeout; the ODBC work
//! of checking out (validation, connecting) happens on the blocking thread that then uses the
//! connection. A connection goes back to the idle list when its guard drops, unless it was
//! marked broken.

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odbc_api::{Connection, ConnectionOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::connection_string::ConnectionString;
use crate::environment::{OpenConnection, describe, driver_name, odbc_environment};
use crate::error::OdbcError;

/// Pool limits of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOptions {
    /// Connections open at once, in use or idle.
    pub max_size: usize,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// Connections older than this are closed instead of reused.
    pub max_lifetime: Option<Duration>,
    /// Idle connections unused for this long are closed instead of reused.
    pub idle_timeout: Option<Duration>,
    /// `SQL_ATTR_LOGIN_TIMEOUT` for new connections.
    pub connect_timeout: Option<Duration>,
    /// A connection checked out for longer than this is reported (a warning in the log, once
    /// per checkout, and in health checks): a leak, or a query far slower than expected.
    pub leak_warning: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 8,
            acquire_timeout: Duration::from_secs(30),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            connect_timeout: Some(Duration::from_secs(15)),
            leak_warning: Some(Duration::from_secs(10 * 60)),
        }
    }
}

struct IdleConnection {
    connection: OpenConnection,
    created: Instant,
    returned: Instant,
}

/// The connection pool of one source (see the module docs).
pub struct ConnectionPool {
    source_name: String,
    connection_string: ConnectionString,
    /// The driver it connects through, for the driver manager's one-at-a-time work.
    driver: String,
    options: PoolOptions,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<IdleConnection>>,
    /// Statements run on every new connection (read-only mode, isolation level).
    session_setup: Vec<String>,
    /// Checked-out connections by checkout number, for the leak warning.
    checked_out: Mutex<std::collections::BTreeMap<u64, Checkout>>,
    next_checkout: std::sync::atomic::AtomicU64,
}

struct Checkout {
    since: Instant,
    warned: bool,
}

impl std::fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("source", &self.source_name)
            .field("connection", &self.connection_string)
            .field("options", &self.options)
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// A permit to hold one connection; obtained asynchronously, redeemed on a blocking thread.
/// A call given up on (`providers/src/call.rs`) frees it early through its [`PermitRelease`].
pub struct PoolPermit {
    shared: Arc<PermitShared>,
}

#[derive(Debug)]
struct PermitShared {
    held: Mutex<Option<OwnedSemaphorePermit>>,
    abandoned: std::sync::atomic::AtomicBool,
}

/// Frees a permit's pool slot before its connection comes back, and marks that connection
/// for closing: for a call whose thread a silent network holds.
#[derive(Debug, Clone)]
pub struct PermitRelease(Arc<PermitShared>);

impl PermitRelease {
    /// Frees the pool slot now and marks the connection for closing when it comes back.
    pub fn abandon(&self) {
        self.0
            .abandoned
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut held) = self.0.held.lock() {
            held.take();
        }
    }

    /// Whether [`Self::abandon`] was called.
    pub fn is_abandoned(&self) -> bool {
        self.0.abandoned.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PoolPermit {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        Self {
            shared: Arc::new(PermitShared {
                held: Mutex::new(Some(permit)),
                abandoned: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// A handle that can free this permit's slot early ([`PermitRelease::abandon`]).
    pub fn release_handle(&self) -> PermitRelease {
        PermitRelease(Arc::clone(&self.shared))
    }

    fn is_abandoned(&self) -> bool {
        self.shared
            .abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The slot is free when its holder is done, whoever still keeps a [`PermitRelease`] (a
/// call's watcher may outlive the connection by its grace period).
impl Drop for PoolPermit {
    fn drop(&mut self) {
        if let Ok(mut held) = self.shared.held.lock() {
            held.take();
        }
    }
}

impl ConnectionPool {
    /// An empty pool for the source `source_name`; nothing connects until a checkout. A
    /// `max_size` of 0 counts as 1.
    pub fn new(
        source_name: &str,
        connection_string: ConnectionString,
        options: PoolOptions,
    ) -> Self {
        let max_size = options.max_size.max(1);
        Self {
            source_name: source_name.to_string(),
            driver: driver_name(&connection_string),
            connection_string,
            permits: Arc::new(Semaphore::new(max_size)),
            options: PoolOptions {
                max_size,
                ..options
            },
            idle: Mutex::new(Vec::new()),
            session_setup: Vec::new(),
            checked_out: Mutex::new(std::collections::BTreeMap::new()),
            next_checkout: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Runs `statements` on every connection this pool opens.
    pub fn with_session_setup(mut self, statements: Vec<String>) -> Self {
        self.session_setup = statements;
        self
    }

    /// The pool's limits (`max_size` at least 1).
    pub fn options(&self) -> &PoolOptions {
        &self.options
    }

    /// The connection string new connections are opened with, secrets included.
    pub fn connection_string(&self) -> &ConnectionString {
        &self.connection_string
    }

    /// Connections currently checked out (or reserved for a checkout).
    pub fn in_use(&self) -> usize {
        self.options.max_size - self.permits.available_permits()
    }

    /// Open connections waiting in the idle list for reuse.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// Waits for a free slot, at most `acquire_timeout`.
    pub async fn acquire(&self) -> Result<PoolPermit, OdbcError> {
        self.held_too_long();
        let waited = self.options.acquire_timeout;
        match tokio::time::timeout(waited, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(PoolPermit::new(permit)),
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(OdbcError::PoolTimeout {
                source_name: self.source_name.clone(),
                max_size: self.options.max_size,
                waited,
            }),
        }
    }

    /// Redeems a permit for a live connection: a validated idle one, else a new one. Blocking.
    pub fn checkout(self: &Arc<Self>, permit: PoolPermit) -> Result<PooledConnection, OdbcError> {
        while let Some(idle) = self.pop_idle() {
            if self.is_reusable(&idle) {
                return Ok(PooledConnection {
                    connection: Some(idle.connection),
                    fresh: false,
                    created: idle.created,
                    checkout: self.register_checkout(),
                    pool: Arc::clone(self),
                    broken: std::cell::Cell::new(false),
                    permit,
                });
            }
            // Dropping the connection disconnects it.
        }
        let connection = self.connect()?;
        Ok(PooledConnection {
            connection: Some(connection),
            fresh: true,
            created: Instant::now(),
            checkout: self.register_checkout(),
            pool: Arc::clone(self),
            broken: std::cell::Cell::new(false),
            permit,
        })
    }

    /// Opens a connection outside the pool's accounting (used once to detect the dialect).
    pub fn connect(&self) -> Result<OpenConnection, OdbcError> {
        let env = odbc_environment()?;
        let options = ConnectionOptions {
            login_timeout_sec: self
                .options
                .connect_timeout
                .map(|t| t.as_secs().clamp(1, u64::from(u32::MAX)) as u32),
            packet_size: None,
        };
        // The driver's library by path: the driver manager's lookup of a driver by name fails
        // now and then while other threads connect (crate::environment).
        let mut resolved = self.connection_string.clone();
        if self.connection_string.get("Driver").is_some()
            && let Some(library) = crate::environment::driver_library(&self.driver)
        {
            resolved.force("Driver", &library);
        }
        let text = resolved.expose();
        let connect = || env.connect_with_connection_string(&text, options);
        // The same glitch of the driver manager's (crate::environment) can fail a connect
        // with "can't open lib … file not found" for a listed driver: once more, later.
        let mut opened = crate::environment::open_connection(&self.driver, connect);
        for _ in 0..2 {
            match &opened {
                Err(err) if crate::environment::is_driver_load_failure(err) => {
                    std::thread::sleep(Duration::from_millis(50));
                    opened = crate::environment::open_connection(&self.driver, connect);
                }
                _ => break,
            }
        }
        let connection = opened.map_err(|err| {
            crate::environment::connect_error(&self.source_name, &self.connection_string, err)
        })?;
        self.set_up_session(&connection)?;
        Ok(connection)
    }

    /// Applies the session setup to a connection opened before the pool knew it (the probe
    /// that detects the dialect) or by [`Self::connect`].
    pub fn set_up_session(&self, connection: &Connection<'static>) -> Result<(), OdbcError> {
        for statement in &self.session_setup {
            connection.execute(statement, (), None).map_err(|err| {
                let (state, message) = describe(&err, &self.connection_string);
                OdbcError::Odbc {
                    source_name: self.source_name.clone(),
                    context: format!("setting up the session with `{statement}`"),
                    message: format!("[{state}] {message}"),
                }
            })?;
        }
        Ok(())
    }

    /// Adds a connection opened elsewhere (the one that detected the dialect) to the idle list.
    pub fn adopt(&self, connection: OpenConnection) {
        self.give_back(connection, Instant::now());
    }

    /// The name of the source the pool belongs to.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    fn register_checkout(&self) -> u64 {
        let number = self
            .next_checkout
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut held) = self.checked_out.lock() {
            held.insert(
                number,
                Checkout {
                    since: Instant::now(),
                    warned: false,
                },
            );
        }
        number
    }

    /// Connections checked out for longer than `leak_warning`; each is logged as a warning
    /// the first time it is seen. Runs on every acquire and health check.
    pub fn held_too_long(&self) -> usize {
        let Some(limit) = self.options.leak_warning else {
            return 0;
        };
        let Ok(mut held) = self.checked_out.lock() else {
            return 0;
        };
        let mut count = 0;
        for checkout in held.values_mut() {
            let held_for = checkout.since.elapsed();
            if held_for <= limit {
                continue;
            }
            count += 1;
            if !checkout.warned {
                checkout.warned = true;
                tracing::warn!(
                    source = %self.source_name,
                    held_secs = held_for.as_secs(),
                    limit_secs = limit.as_secs(),
                    "a connection has been checked out for longer than leak_warning_secs: a \
                     result nobody reads to the end, or a query far slower than expected"
                );
            }
        }
        count
    }

    fn pop_idle(&self) -> Option<IdleConnection> {
        self.idle.lock().ok()?.pop()
    }

    fn is_reusable(&self, idle: &IdleConnection) -> bool {
        let now = Instant::now();
        if let Some(max) = self.options.max_lifetime
            && now.duration_since(idle.created) > max
        {
            return false;
        }
        if let Some(max) = self.options.idle_timeout
            && now.duration_since(idle.returned) > max
        {
            return false;
        }
        !idle.connection.is_dead().unwrap_or(true)
    }

    fn give_back(&self, connection: OpenConnection, created: Instant) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(IdleConnection {
                connection,
                created,
                returned: Instant::now(),
            });
        }
    }
}

/// A checked-out connection; returns to its pool when dropped.
pub struct PooledConnection {
    connection: Option<OpenConnection>,
    /// Opened for this checkout, not taken from the idle list.
    fresh: bool,
    created: Instant,
    checkout: u64,
    pool: Arc<ConnectionPool>,
    broken: std::cell::Cell<bool>,
    // Released after the connection is back in the idle list (fields drop in order).
    permit: PoolPermit,
}

impl PooledConnection {
    /// Whether the connection was opened for this checkout rather than reused: a lost
    /// connection then says the server drops sessions, not that an idle one went stale.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The name of the source the connection belongs to.
    pub fn source_name(&self) -> &str {
        &self.pool.source_name
    }

    /// The pool the connection returns to.
    pub fn pool(&self) -> &Arc<ConnectionPool> {
        &self.pool
    }

    /// Closes the connection instead of reusing it (its state is unknown after an error).
    pub fn discard(&self) {
        self.broken.set(true);
    }

    /// Whether the connection will be closed rather than reused.
    pub fn is_discarded(&self) -> bool {
        self.broken.get() || self.permit.is_abandoned()
    }

    /// Turns a driver error into an [`OdbcError`] (secrets scrubbed) and discards the
    /// connection when the error left it dead.
    pub fn failure(&self, context: &str, err: odbc_api::Error) -> OdbcError {
        // psqlODBC reports a backend terminated by a server shutdown as HY000; the driver's
        // own verdict that the connection is dead settles it.
        let dead = self.is_dead();
        let lost = is_connection_lost(&err) || matches!(dead, Ok(true));
        if lost || dead.unwrap_or(true) {
            self.discard();
        }
        let (state, message) = describe(&err, &self.pool.connection_string);
        if lost {
            return OdbcError::ConnectionLost {
                source_name: self.pool.source_name.clone(),
                context: context.to_string(),
                message: format!("[{state}] {message}"),
            };
        }
        OdbcError::Odbc {
            source_name: self.pool.source_name.clone(),
            context: context.to_string(),
            message: if state.is_empty() {
                message
            } else {
                format!("[{state}] {message}")
            },
        }
    }
}

impl Deref for PooledConnection {
    type Target = Connection<'static>;

    fn deref(&self) -> &Self::Target {
        // Taken only by `drop`.
        let Some(connection) = self.connection.as_ref() else {
            unreachable!("a PooledConnection holds its connection until dropped")
        };
        connection
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Ok(mut held) = self.pool.checked_out.lock() {
            held.remove(&self.checkout);
        }
        if let Some(connection) = self.connection.take()
            && !self.is_discarded()
            && !connection.is_dead().unwrap_or(true)
        {
            self.pool.give_back(connection, self.created);
        }
    }
}

/// Errors that mean the connection (not the statement) failed: SQLSTATE class 08, PostgreSQL's
/// 57P01–57P03 (backend terminated, server shutting down or starting), MariaDB's 2006 "server
/// has gone away" and 2013 "lost connection".
fn is_connection_lost(err: &odbc_api::Error) -> bool {
    let odbc_api::Error::Diagnostics { record, .. } = err else {
        return false;
    };
    let state = record.state.as_str();
    state.starts_with("08")
        || matches!(state, "57P01" | "57P02" | "57P03")
        || matches!(record.native_error, 2006 | 2013)
}
