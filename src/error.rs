//! The error type of the `ibarrow` crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("configuration {location}: {message}")]
    Config { location: String, message: String },
    #[error(
        "environment variable `{name}` is not set (used as ${{{name}}} in {location}); \
         export it or write the value into the configuration"
    )]
    MissingVariable { name: String, location: String },
    #[error("no source named `{0}`; register it first (sources: {1})")]
    UnknownSource(String, String),
    #[error("a source named `{0}` is already registered; pick another name")]
    DuplicateSource(String),
    #[error(transparent)]
    Odbc(#[from] ibarrow_providers::OdbcError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
