//! One ODBC database ([`OdbcSource`]): its connection pool, dialect, breaker and options.
//! Its calls for metadata and health are in `metadata.rs`, the tables it makes in
//! `providers/src/table.rs`.

mod driver_settings;
mod metadata;
mod options;
mod retry;

use std::sync::Arc;

use ibarrow_sql::Dialect;

use crate::connection_string::ConnectionString;
use crate::environment::{describe, driver_name};
use crate::error::OdbcError;
use crate::pool::ConnectionPool;
use driver_settings::apply_driver_settings;

pub use metadata::SourceHealth;
pub use options::{ScanOptions, SourceOptions};
pub use retry::RetryPolicy;

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

    /// The name the source was connected under; errors and logs quote it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source's circuit breaker (`None`: configured without one).
    pub fn breaker(&self) -> Option<&Arc<crate::breaker::CircuitBreaker>> {
        self.breaker.as_ref()
    }
    /// The SQL dialect its statements are written in, detected from `SQL_DBMS_NAME`.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The database's own name for itself (`SQL_DBMS_NAME`).
    pub fn dbms_name(&self) -> &str {
        &self.dbms_name
    }

    /// The source's connection pool.
    pub fn pool(&self) -> &Arc<ConnectionPool> {
        &self.pool
    }

    /// The options the source was connected with.
    pub fn options(&self) -> &SourceOptions {
        &self.options
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
