//! The error type of the `ibarrow` crate.

use thiserror::Error;

/// What can go wrong in the engine; [`Error::kind`] says which kind of failure it is.
#[derive(Debug, Error)]
pub enum Error {
    /// The configuration or a setting is invalid: a bad key or value, a file that cannot be read.
    #[error("configuration {location}: {message}")]
    Config {
        /// Where: the file, section or key.
        location: String,
        /// What is wrong, and what to do about it.
        message: String,
    },
    /// A `${NAME}` reference in the configuration names an environment variable that is not set.
    #[error(
        "environment variable `{name}` is not set (used as ${{{name}}} in {location}); \
         export it or write the value into the configuration"
    )]
    MissingVariable {
        /// The variable's name.
        name: String,
        /// The key that refers to it.
        location: String,
    },
    /// No source is registered under the name; holds the name and the registered names,
    /// comma-separated.
    #[error("no source named `{0}`; register it first (sources: {1})")]
    UnknownSource(String, String),
    /// A source is registered under a name already in use.
    #[error("a source named `{0}` is already registered; pick another name")]
    DuplicateSource(String),
    /// The query text was refused before planning (size, characters, statement kind).
    #[error("{0}")]
    InputRejected(String),
    /// A table or column a query builder step names does not exist (src/query.rs).
    #[error("{message}")]
    UnknownName {
        /// The name as given.
        name: String,
        /// The existing names closest to it, closest first.
        close: Vec<String>,
        /// The message: what was not found, where, and the closest names.
        message: String,
    },
    /// A quota of `[engine] rate_limits` is used up.
    #[error("rate limit: {message}")]
    RateLimited {
        /// Which quota of whom is used up, and when to retry.
        message: String,
        /// How long until the quota allows another query.
        retry_after: std::time::Duration,
    },
    /// The user's roles do not grant what the statement reads or writes (src/access/).
    #[error("{0}")]
    AccessDenied(String),
    /// A database call failed: connecting, reading metadata or running a statement.
    #[error(transparent)]
    Odbc(#[from] ibarrow_providers::OdbcError),
    /// Planning or running a query failed in DataFusion (a scan's ODBC error may be wrapped in it).
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// The crate's result type, with [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The ODBC error in `err`'s chain of causes (DataFusion's `External`, `Context`, `Shared` and
/// Arrow's `ExternalError` all give their inner error as their source), also inside an error
/// of this crate.
fn odbc_in<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ibarrow_providers::OdbcError> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(odbc) = err.downcast_ref::<ibarrow_providers::OdbcError>() {
            return Some(odbc);
        }
        if let Some(ours) = err.downcast_ref::<Error>() {
            return ours.odbc();
        }
        current = err.source();
    }
    None
}

/// What kind of failure an error is, for callers that branch on it (Python's exception
/// classes, the query log's error kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A setting, argument or configuration names something invalid or unknown.
    Config,
    /// The query text was refused before planning.
    Input,
    /// A quota of `[engine] rate_limits` is used up.
    RateLimit,
    /// The user's roles do not grant what the statement reads or writes.
    AccessDenied,
    /// The database could not be reached, refused the login or dropped the connection.
    Connection,
    /// The source's circuit breaker is open after repeated failures: its calls fail at once.
    CircuitOpen,
    /// A remote call did not finish within the source's `query_timeout_secs`.
    Timeout,
    /// The query was refused by the planner or the database.
    Sql,
    /// A value could not be converted (unsupported type, value too long).
    Arrow,
    /// The query needed more memory than `[engine] memory_limit` allows and could not spill.
    Memory,
    /// A failure inside the engine (a task that failed, an unexpected DataFusion error).
    Internal,
}

impl ErrorKind {
    /// The kind's name in the query log, metrics and audit log: `config`, `rate_limit`, `sql`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Input => "input",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Connection => "connection",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Sql => "sql",
            ErrorKind::Arrow => "arrow",
            ErrorKind::Memory => "memory",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind of an ODBC error from a source.
    pub fn of_odbc(err: &ibarrow_providers::OdbcError) -> Self {
        use ibarrow_providers::OdbcError as E;
        match err {
            E::DriverNotInstalled { .. }
            | E::LoginFailed { .. }
            | E::ConnectFailed { .. }
            | E::ConnectionLost { .. }
            | E::PoolTimeout { .. } => ErrorKind::Connection,
            E::CircuitOpen { .. } | E::NoHealthyEndpoint { .. } => ErrorKind::CircuitOpen,
            E::Timeout { .. } => ErrorKind::Timeout,
            E::InvalidConnectionString(_) | E::InvalidPartitionColumn { .. } => ErrorKind::Config,
            E::UnsupportedType { .. } | E::Truncated { .. } => ErrorKind::Arrow,
            E::TableNotFound { .. }
            | E::SchemaNotFound { .. }
            | E::AmbiguousName { .. }
            | E::Odbc { .. } => ErrorKind::Sql,
            E::Sql { source, .. } => match source {
                ibarrow_sql::SqlError::Unsupported(_) => ErrorKind::Config,
                _ => ErrorKind::Sql,
            },
            E::ReadOnly { .. } => ErrorKind::Input,
            E::Task { .. } => ErrorKind::Internal,
            E::Shared(inner) => Self::of_odbc(inner),
        }
    }

    /// DataFusion wraps a scan's error in `External`, `Context`, `Shared` or an Arrow
    /// `ExternalError` on its way up: the ODBC error anywhere in the chain decides.
    pub fn of_datafusion(err: &datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(err) = current {
            if let Some(odbc) = err.downcast_ref::<ibarrow_providers::OdbcError>() {
                return Self::of_odbc(odbc);
            }
            if let Some(ours) = err.downcast_ref::<Error>() {
                return ours.kind();
            }
            current = err.source();
        }
        match err.find_root() {
            D::ArrowError(..) => ErrorKind::Arrow,
            D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::NotImplemented(_) => ErrorKind::Sql,
            D::Configuration(_) => ErrorKind::Config,
            D::ResourcesExhausted(_) => ErrorKind::Memory,
            _ => ErrorKind::Internal,
        }
    }
}

impl Error {
    /// The ODBC error at the root of this one, when a database call failed (DataFusion
    /// wraps a scan's error on its way up).
    pub fn odbc(&self) -> Option<&ibarrow_providers::OdbcError> {
        match self {
            Error::Odbc(odbc) => Some(odbc),
            Error::DataFusion(err) => odbc_in(err),
            _ => None,
        }
    }

    /// The source the error happened on, when it names one.
    pub fn source_name(&self) -> Option<&str> {
        self.odbc().and_then(|odbc| odbc.source_name())
    }

    /// The SQLSTATE the database reported, when it did.
    pub fn sqlstate(&self) -> Option<String> {
        self.odbc().and_then(|odbc| odbc.sqlstate())
    }

    /// The statement sent to the database when it failed, when the error is about one.
    pub fn statement(&self) -> Option<&str> {
        self.odbc().and_then(|odbc| odbc.statement())
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. }
            | Error::MissingVariable { .. }
            | Error::DuplicateSource(_)
            | Error::UnknownSource(..) => ErrorKind::Config,
            Error::InputRejected(_) | Error::UnknownName { .. } => ErrorKind::Input,
            Error::RateLimited { .. } => ErrorKind::RateLimit,
            Error::AccessDenied(_) => ErrorKind::AccessDenied,
            Error::Odbc(odbc) => ErrorKind::of_odbc(odbc),
            Error::DataFusion(df) => ErrorKind::of_datafusion(df),
        }
    }
}

#[cfg(test)]
mod odbc_cause_tests {
    use datafusion::error::DataFusionError;
    use ibarrow_providers::OdbcError;

    use super::*;

    fn refused() -> OdbcError {
        OdbcError::Odbc {
            source_name: "pg".into(),
            context: "running `SELECT nope`".into(),
            message: "[42703] column \"nope\" does not exist".into(),
        }
    }

    #[test]
    fn the_database_error_is_found_under_every_wrapper() {
        let wrapped = [
            Error::Odbc(refused()),
            Error::DataFusion(DataFusionError::External(Box::new(refused()))),
            Error::DataFusion(DataFusionError::Context(
                "planning".into(),
                Box::new(DataFusionError::External(Box::new(Error::Odbc(refused())))),
            )),
            Error::DataFusion(DataFusionError::Shared(std::sync::Arc::new(
                DataFusionError::External(Box::new(refused())),
            ))),
        ];
        for err in wrapped {
            assert_eq!(err.source_name(), Some("pg"), "{err:?}");
            assert_eq!(err.sqlstate().as_deref(), Some("42703"), "{err:?}");
            assert_eq!(err.statement(), Some("SELECT nope"), "{err:?}");
            assert_eq!(err.kind(), ErrorKind::Sql);
        }
        let plain = Error::InputRejected("no".into());
        assert_eq!((plain.source_name(), plain.sqlstate()), (None, None));
    }
}
