//! Rust errors as the exception classes of `ibarrow/_errors.py` (defined in Python so that
//! `ibarrow.TimeoutError` can also be a builtin `TimeoutError`). Messages pass unchanged.

use datafusion::error::DataFusionError;
use ibarrow::OdbcError;
use pyo3::prelude::*;

/// An exception of class `ibarrow.<kind>` carrying `message`.
pub fn error_of_kind(kind: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let class = py
            .import("ibarrow._errors")
            .and_then(|module| module.getattr(kind));
        match class.and_then(|class| class.call1((message.clone(),))) {
            Ok(instance) => PyErr::from_value(instance),
            Err(_) => pyo3::exceptions::PyRuntimeError::new_err(message),
        }
    })
}

pub fn odbc_kind(err: &OdbcError) -> &'static str {
    match err {
        OdbcError::DriverNotInstalled { .. }
        | OdbcError::LoginFailed { .. }
        | OdbcError::ConnectFailed { .. }
        | OdbcError::ConnectionLost { .. }
        | OdbcError::PoolTimeout { .. } => "ConnectionError",
        OdbcError::CircuitOpen { .. } => "CircuitOpenError",
        OdbcError::Timeout { .. } => "TimeoutError",
        OdbcError::InvalidConnectionString(_) | OdbcError::InvalidPartitionColumn { .. } => {
            "ConfigError"
        }
        OdbcError::UnsupportedType { .. } | OdbcError::Truncated { .. } => "ArrowError",
        OdbcError::TableNotFound { .. }
        | OdbcError::SchemaNotFound { .. }
        | OdbcError::AmbiguousName { .. }
        | OdbcError::Odbc { .. } => "SQLError",
        OdbcError::Sql { source, .. } => match source {
            ibarrow::sql::SqlError::Unsupported(_) => "ConfigError",
            _ => "SQLError",
        },
        OdbcError::Task { .. } => "Error",
        OdbcError::Shared(inner) => odbc_kind(inner),
    }
}

/// The ODBC error anywhere in a chain of wrapped errors (DataFusion wraps a scan's error in
/// `External`, `Context`, `Shared` or an Arrow `ExternalError` on its way up).
fn find_odbc<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a OdbcError> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(odbc) = err.downcast_ref::<OdbcError>() {
            return Some(odbc);
        }
        current = err.source();
    }
    None
}

fn datafusion_kind(err: &DataFusionError) -> &'static str {
    if let Some(odbc) = find_odbc(err) {
        return odbc_kind(odbc);
    }
    match err.find_root() {
        DataFusionError::ArrowError(..) => "ArrowError",
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => "SQLError",
        DataFusionError::Configuration(_) => "ConfigError",
        _ => "Error",
    }
}

pub fn kind_of(err: &ibarrow::Error) -> &'static str {
    match err {
        ibarrow::Error::Config { .. }
        | ibarrow::Error::MissingVariable { .. }
        | ibarrow::Error::DuplicateSource(_)
        | ibarrow::Error::UnknownSource(..) => "ConfigError",
        ibarrow::Error::Odbc(odbc) => odbc_kind(odbc),
        ibarrow::Error::DataFusion(df) => datafusion_kind(df),
    }
}

/// `?` on engine results inside `#[pymethods]`.
pub fn to_py(err: impl Into<ibarrow::Error>) -> PyErr {
    let err = err.into();
    error_of_kind(kind_of(&err), err.to_string())
}
