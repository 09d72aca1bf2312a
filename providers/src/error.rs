//! The one error type of `ibarrow-providers`. Every message says what to do next and never
//! contains a password: connection strings appear only in redacted form.

use std::time::Duration;

use thiserror::Error;

/// Everything that can go wrong with an ODBC source, from a missing driver to a refused
/// write; each message says what to do next.
#[derive(Debug, Error)]
pub enum OdbcError {
    /// The connection string names a driver the driver manager does not list.
    #[error(
        "source `{source_name}`: the ODBC driver `{driver}` is not installed. Installed drivers: \
         {installed}. {install}, or name an installed driver (`odbcinst -q -d` lists them)"
    )]
    DriverNotInstalled {
        /// The source the error happened on.
        source_name: String,
        /// The driver the connection string names.
        driver: String,
        /// The installed drivers, comma-separated (`none` when there are none).
        installed: String,
        /// What to install, for the drivers whose package is known.
        install: String,
    },
    /// The database refused the user name or password.
    #[error(
        "source `{source_name}`: login failed for {connection}: {message}. Check the user name \
         and password"
    )]
    LoginFailed {
        /// The source the error happened on.
        source_name: String,
        /// The connection string, secrets redacted.
        connection: String,
        /// The driver's message, secrets scrubbed.
        message: String,
    },
    /// Opening a connection failed for a reason other than the login (server down or
    /// unreachable, a wrong setting).
    #[error("source `{source_name}`: could not connect with {connection}: {message}")]
    ConnectFailed {
        /// The source the error happened on.
        source_name: String,
        /// The connection string, secrets redacted.
        connection: String,
        /// The driver's message, secrets scrubbed.
        message: String,
    },
    /// A connection string that cannot be parsed, or TLS settings its driver cannot honour; the
    /// message never quotes a secret.
    #[error("invalid connection string: {0}")]
    InvalidConnectionString(String),
    /// Every pooled connection stayed in use for the whole acquire timeout.
    #[error(
        "source `{source_name}`: no connection became free within {waited:?} (all {max_size} \
         pooled connections are in use). Raise the pool size or the acquire timeout, or run \
         fewer queries at once"
    )]
    PoolTimeout {
        /// The source the error happened on.
        source_name: String,
        /// The pool's size: connections open at once.
        max_size: usize,
        /// How long the call waited (the pool's acquire timeout).
        waited: Duration,
    },
    /// No table or view of that name in the schema, even ignoring case.
    #[error("source `{source_name}`: table `{table}` not found. Tables in `{schema}`: {available}")]
    TableNotFound {
        /// The source the error happened on.
        source_name: String,
        /// The schema searched.
        schema: String,
        /// The table name asked for.
        table: String,
        /// The schema's tables, comma-separated (at most 50; `none` when it has none).
        available: String,
    },
    /// No schema of that name, even ignoring case.
    #[error("source `{source_name}`: schema `{schema}` not found. Schemas: {available}")]
    SchemaNotFound {
        /// The source the error happened on.
        source_name: String,
        /// The schema name asked for.
        schema: String,
        /// The source's schemas, comma-separated.
        available: String,
    },
    /// A name with no exact match matches several remote names that differ only in case.
    #[error(
        "source `{source_name}`: the name `{name}` matches several remote objects ({candidates}); \
         quote it with the exact case"
    )]
    AmbiguousName {
        /// The source the error happened on.
        source_name: String,
        /// The name as the query spells it.
        name: String,
        /// The remote names it matches, comma-separated.
        candidates: String,
    },
    /// A column of a type ibarrow cannot read.
    #[error(
        "source `{source_name}`: column `{column}` of `{table}` has type {type_name}, which \
         ibarrow cannot read: {reason}. Leave the column out of the query or cast it remotely \
         with query passthrough"
    )]
    UnsupportedType {
        /// The source the error happened on.
        source_name: String,
        /// The table of the column.
        table: String,
        /// The column's name.
        column: String,
        /// The database's name for the column's type.
        type_name: String,
        /// Why the type cannot be read.
        reason: String,
    },
    /// A value longer than its column's fetch buffer: the query stops rather than cut it.
    #[error(
        "source `{source_name}`: a value in column `{column}` is longer than its fetch buffer \
         and would be truncated, so the query stops. {hint}"
    )]
    Truncated {
        /// The source the error happened on.
        source_name: String,
        /// The column whose value did not fit.
        column: String,
        /// What to change: the size limit to raise, or for SQLite the column's declared type.
        hint: String,
    },
    /// The configured `partition_column` cannot split the table into key ranges.
    #[error(
        "source `{source_name}`: `{column}` cannot split `{table}` into ranges: {reason}. Set \
         `partition_column` to an integer or date column, or remove it"
    )]
    InvalidPartitionColumn {
        /// The source the error happened on.
        source_name: String,
        /// The table to be split.
        table: String,
        /// The configured partition column.
        column: String,
        /// Why it cannot: no such column, or neither an integer nor a date.
        reason: String,
    },
    /// A remote call outlived its deadline (by default the query timeout) and was given up.
    #[error(
        "source `{source_name}`: the remote call did not finish within {after:?} and was given \
         up (its statement cancelled, its connection closed). Narrow the query, check that the \
         server answers, or raise query_timeout_secs. Statement: {statement}"
    )]
    Timeout {
        /// The source the error happened on.
        source_name: String,
        /// The deadline that passed.
        after: Duration,
        /// The statement sent, or what the call was doing when it sent none.
        statement: String,
    },
    /// The connection broke during a call (the server went away or became unreachable).
    #[error(
        "source `{source_name}`: the connection broke while {context}: {message}. Check that \
         the server is up and reachable"
    )]
    ConnectionLost {
        /// The source the error happened on.
        source_name: String,
        /// What the call was doing ("running `SELECT …`").
        context: String,
        /// The driver's message with its SQLSTATE (`[08S01] …`), secrets scrubbed.
        message: String,
    },
    /// The source's circuit breaker is open: the call failed without reaching the driver.
    #[error(
        "source `{source_name}` is not being called: its circuit breaker opened after repeated \
         connection failures or timeouts. ibarrow tries it again in {retry_in:?}; queries that \
         do not read it are unaffected"
    )]
    CircuitOpen {
        /// The source the error happened on.
        source_name: String,
        /// Time until the breaker lets a probe call through.
        retry_in: Duration,
    },
    /// No endpoint of a source with replicas can take the call: each one's breaker is open (a
    /// write: the primary's).
    #[error(
        "source `{source_name}` has no endpoint that can take this call now ({reasons}). ibarrow \
         tries an endpoint again when its circuit breaker lets a probe through; queries that do \
         not read this source are unaffected"
    )]
    NoHealthyEndpoint {
        /// The source the error happened on.
        source_name: String,
        /// Why each endpoint is left out (`primary: circuit breaker open for 12s more; …`).
        reasons: String,
    },
    /// Any other driver error during a call.
    #[error("source `{source_name}`: {context}: {message}")]
    Odbc {
        /// The source the error happened on.
        source_name: String,
        /// What the call was doing; a statement in it is in backticks ([`OdbcError::statement`]).
        context: String,
        /// The driver's message, with its SQLSTATE when it gave one, secrets scrubbed.
        message: String,
    },
    /// A statement could not be written in the source's dialect (a name it cannot quote, a
    /// setting it cannot honour …).
    #[error("source `{source_name}`: {source}")]
    Sql {
        /// The source the error happened on.
        source_name: String,
        /// What the SQL renderer refused, and why.
        #[source]
        source: ibarrow_sql::SqlError,
    },
    /// A call's blocking task failed without a driver error (it panicked or never ran).
    #[error("source `{source_name}`: background ODBC task failed: {message}")]
    Task {
        /// The source the error happened on.
        source_name: String,
        /// What happened to the task.
        message: String,
    },
    /// A write sent to a source that is not `writable`.
    #[error(
        "source `{source_name}` is read-only, so {what} is refused: {reason}. Set `writable = \
         true` for the source to let writes through (its sessions then open read-write)"
    )]
    ReadOnly {
        /// The source the error happened on.
        source_name: String,
        /// The refused write (`INSERT INTO t`, a passthrough statement).
        what: String,
        /// Why it counts as a write and was refused.
        reason: String,
    },
    /// One error handed to several waiters (a metadata fetch shared through a cache).
    #[error(transparent)]
    Shared(std::sync::Arc<OdbcError>),
}

impl OdbcError {
    /// The source the error happened on (`None`: an invalid connection string, before a
    /// source has a name).
    pub fn source_name(&self) -> Option<&str> {
        use OdbcError as E;
        match self {
            E::DriverNotInstalled { source_name, .. }
            | E::LoginFailed { source_name, .. }
            | E::ConnectFailed { source_name, .. }
            | E::PoolTimeout { source_name, .. }
            | E::TableNotFound { source_name, .. }
            | E::SchemaNotFound { source_name, .. }
            | E::AmbiguousName { source_name, .. }
            | E::UnsupportedType { source_name, .. }
            | E::Truncated { source_name, .. }
            | E::InvalidPartitionColumn { source_name, .. }
            | E::Timeout { source_name, .. }
            | E::ConnectionLost { source_name, .. }
            | E::CircuitOpen { source_name, .. }
            | E::NoHealthyEndpoint { source_name, .. }
            | E::Odbc { source_name, .. }
            | E::Sql { source_name, .. }
            | E::Task { source_name, .. }
            | E::ReadOnly { source_name, .. } => Some(source_name),
            E::InvalidConnectionString(_) => None,
            E::Shared(inner) => inner.source_name(),
        }
    }

    /// The statement sent to the database when it failed, when the error is about one.
    pub fn statement(&self) -> Option<&str> {
        match self {
            OdbcError::Timeout { statement, .. } => Some(statement),
            // Contexts quote what was sent: "running `SELECT …`".
            OdbcError::Odbc { context, .. } | OdbcError::ConnectionLost { context, .. } => {
                let start = context.find('`')?;
                let end = context.rfind('`')?;
                (end > start + 1).then(|| &context[start + 1..end])
            }
            OdbcError::Shared(inner) => inner.statement(),
            _ => None,
        }
    }

    /// The five-character SQLSTATE the driver reported (`42P01`), when there is one.
    pub fn sqlstate(&self) -> Option<String> {
        let text = match self {
            OdbcError::Shared(inner) => return inner.sqlstate(),
            OdbcError::Odbc { message, .. }
            | OdbcError::LoginFailed { message, .. }
            | OdbcError::ConnectFailed { message, .. }
            | OdbcError::ConnectionLost { message, .. } => message,
            _ => return None,
        };
        sqlstate_in(text)
    }

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

/// The SQLSTATE of a diagnostic: `[42P01] …` as the pool writes it (providers/src/pool.rs,
/// `failure`), or `State: 42P01, Native error: …` as odbc-api prints one.
fn sqlstate_in(text: &str) -> Option<String> {
    let at = if text.starts_with('[') {
        1
    } else {
        text.find("State: ")? + "State: ".len()
    };
    let state: String = text.get(at..)?.chars().take(5).collect();
    (state.len() == 5 && state.chars().all(|c| c.is_ascii_alphanumeric())).then_some(state)
}

#[cfg(test)]
mod diagnostics_tests {
    use super::*;

    #[test]
    fn sqlstate_and_statement_are_read_from_a_diagnostic() {
        let err = OdbcError::Odbc {
            source_name: "pg".into(),
            context: "running `SELECT 1 FROM nowhere`".into(),
            message:
                "ODBC emitted an error calling 'SQLExecDirect': State: 42P01, Native error: 7, \
                      Message: relation does not exist"
                    .into(),
        };
        assert_eq!(err.sqlstate().as_deref(), Some("42P01"));
        assert_eq!(err.statement(), Some("SELECT 1 FROM nowhere"));
        assert_eq!(err.source_name(), Some("pg"));
        let shared = OdbcError::Shared(std::sync::Arc::new(err));
        assert_eq!(shared.sqlstate().as_deref(), Some("42P01"));
        assert_eq!(sqlstate_in("State: 4"), None);
        assert_eq!(
            sqlstate_in("[HY000] server closed").as_deref(),
            Some("HY000")
        );
        assert_eq!(sqlstate_in("[] nothing"), None);
    }
}
