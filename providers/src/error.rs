//! The one error type of `ibarrow-providers`. Every message says what to do next and never
//! contains a password: connection strings appear only in redacted form.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OdbcError {
    #[error(
        "source `{source_name}`: the ODBC driver `{driver}` is not installed. Installed drivers: \
         {installed}. {install}, or name an installed driver (`odbcinst -q -d` lists them)"
    )]
    DriverNotInstalled {
        source_name: String,
        driver: String,
        installed: String,
        /// What to install, for the drivers whose package is known.
        install: String,
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
            OdbcError::Odbc { context, .. } => {
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
