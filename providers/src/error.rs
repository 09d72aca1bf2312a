//! The one error type of `ibarrow-providers`. Every message says what to do next and never
//! contains a password: connection strings appear only in redacted form.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OdbcError {
    #[error(
        "source `{source_name}`: the ODBC driver `{driver}` is not installed. Installed drivers: \
         {installed}. Install the driver (e.g. `apt-get install odbc-postgresql odbc-mariadb \
         libsqliteodbc`) or list them with `odbcinst -q -d`"
    )]
    DriverNotInstalled {
        source_name: String,
        driver: String,
        installed: String,
    },
    #[error(
        "source `{source_name}`: login failed for {connection}: {message}. Check the user name \
         and password"
    )]
    LoginFailed {
        source_name: String,
        connection: String,
        message: String,
    },
    #[error("source `{source_name}`: could not connect with {connection}: {message}")]
    ConnectFailed {
        source_name: String,
        connection: String,
        message: String,
    },
    #[error("invalid connection string: {0}")]
    InvalidConnectionString(String),
    #[error(
        "source `{source_name}`: no connection became free within {waited:?} (all {max_size} \
         pooled connections are in use). Raise the pool size or the acquire timeout, or run \
         fewer queries at once"
    )]
    PoolTimeout {
        source_name: String,
        max_size: usize,
        waited: Duration,
    },
    #[error("source `{source_name}`: table `{table}` not found. Tables in `{schema}`: {available}")]
    TableNotFound {
        source_name: String,
        schema: String,
        table: String,
        available: String,
    },
    #[error("source `{source_name}`: schema `{schema}` not found. Schemas: {available}")]
    SchemaNotFound {
        source_name: String,
        schema: String,
        available: String,
    },
    #[error(
        "source `{source_name}`: the name `{name}` matches several remote objects ({candidates}); \
         quote it with the exact case"
    )]
    AmbiguousName {
        source_name: String,
        name: String,
        candidates: String,
    },
    #[error(
        "source `{source_name}`: column `{column}` of `{table}` has type {type_name}, which \
         ibarrow cannot read: {reason}. Leave the column out of the query or cast it remotely \
         with query passthrough"
    )]
    UnsupportedType {
        source_name: String,
        table: String,
        column: String,
        type_name: String,
        reason: String,
    },
    #[error(
        "source `{source_name}`: a value in column `{column}` is longer than its fetch buffer \
         and would be truncated, so the query stops. {hint}"
    )]
    Truncated {
        source_name: String,
        column: String,
        hint: String,
    },
    #[error(
        "source `{source_name}`: `{column}` cannot split `{table}` into ranges: {reason}. Set \
         `partition_column` to an integer or date column, or remove it"
    )]
    InvalidPartitionColumn {
        source_name: String,
        table: String,
        column: String,
        reason: String,
    },
    #[error(
        "source `{source_name}`: the remote call did not finish within {after:?} and was given \
         up (its statement cancelled, its connection closed). Narrow the query, check that the \
         server answers, or raise query_timeout_secs. Statement: {statement}"
    )]
    Timeout {
        source_name: String,
        after: Duration,
        statement: String,
    },
    #[error(
        "source `{source_name}`: the connection broke while {context}: {message}. Check that \
         the server is up and reachable"
    )]
    ConnectionLost {
        source_name: String,
        context: String,
        message: String,
    },
    #[error(
        "source `{source_name}` is not being called: its circuit breaker opened after repeated \
         connection failures or timeouts. ibarrow tries it again in {retry_in:?}; queries that \
         do not read it are unaffected"
    )]
    CircuitOpen {
        source_name: String,
        retry_in: Duration,
    },
    #[error("source `{source_name}`: {context}: {message}")]
    Odbc {
        source_name: String,
        context: String,
        message: String,
    },
    #[error("source `{source_name}`: {source}")]
    Sql {
        source_name: String,
        #[source]
        source: ibarrow_sql::SqlError,
    },
    #[error("source `{source_name}`: background ODBC task failed: {message}")]
    Task {
        source_name: String,
        message: String,
    },
    #[error(
        "source `{source_name}` is read-only, so {what} is refused: {reason}. Set `writable = \
         true` for the source to let writes through (its sessions then open read-write)"
    )]
    ReadOnly {
        source_name: String,
        what: String,
        reason: String,
    },
    /// One error handed to several waiters (a metadata fetch shared through a cache).
    #[error(transparent)]
    Shared(std::sync::Arc<OdbcError>),
}

impl OdbcError {
    /// Whether a read that failed this way may succeed on a fresh connection.
    pub fn is_transient(&self) -> bool {
        match self {
            OdbcError::Shared(inner) => inner.is_transient(),
            other => matches!(other, OdbcError::ConnectionLost { .. }),
        }
    }

    /// Whether this says the source is unreachable (what a circuit breaker counts), rather than
    /// that the database refused a statement.
    pub fn is_source_failure(&self) -> bool {
        if let OdbcError::Shared(inner) = self {
            return inner.is_source_failure();
        }
        matches!(
            self,
            OdbcError::ConnectionLost { .. }
                | OdbcError::ConnectFailed { .. }
                | OdbcError::Timeout { .. }
        )
    }
}

impl From<OdbcError> for datafusion::error::DataFusionError {
    fn from(err: OdbcError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(err))
    }
}
