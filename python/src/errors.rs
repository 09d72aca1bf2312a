//! Rust errors as the exception classes of `ibarrow/_errors.py` (defined in Python so that
//! `ibarrow.TimeoutError` can also be a builtin `TimeoutError`). Messages pass unchanged.

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

/// The Python class of each kind of error (`ibarrow/_errors.py`).
pub fn class_of(kind: ibarrow::ErrorKind) -> &'static str {
    use ibarrow::ErrorKind as K;
    match kind {
        K::Config => "ConfigError",
        K::Input => "InputError",
        K::RateLimit => "RateLimitError",
        K::AccessDenied => "AccessDeniedError",
        K::Connection => "ConnectionError",
        K::CircuitOpen => "CircuitOpenError",
        K::Timeout => "TimeoutError",
        K::Sql => "SQLError",
        K::Arrow => "ArrowError",
        K::Memory => "MemoryLimitError",
        K::Internal => "Error",
    }
}

/// `?` on engine results inside `#[pymethods]`: the exception of the error's kind, with
/// `kind`, `source`, `sqlstate` and `statement` attributes (`None` when not known).
pub fn to_py(err: impl Into<ibarrow::Error>) -> PyErr {
    let err = err.into();
    let py_err = error_of_kind(class_of(err.kind()), err.to_string());
    Python::attach(|py| {
        let value = py_err.value(py);
        let _ = value.setattr("kind", err.kind().as_str());
        let _ = value.setattr("source", err.source_name());
        let _ = value.setattr("sqlstate", err.sqlstate());
        let _ = value.setattr("statement", err.statement());
    });
    py_err
}
