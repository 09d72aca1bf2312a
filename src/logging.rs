//! Structured logs with tracing: the level from `IBARROW_LOG` (a tracing filter such as
//! `info` or `ibarrow=debug`; default `warn`), written to stderr as human-readable lines or
//! as JSON lines. Messages never carry passwords: connection strings appear only redacted,
//! and the query log masks string literals when `[engine] log_mask_literals` is set.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use crate::error::{Error, Result};

/// The environment variable holding the log filter.
pub const LOG_ENV: &str = "IBARROW_LOG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}`; use human or json")),
        }
    }
}

/// Installs the process-wide log subscriber, writing to stderr. An invalid `IBARROW_LOG` is
/// an error that quotes it; calling this twice is an error too (the first subscriber stays).
pub fn init(format: LogFormat) -> Result<()> {
    init_with_filter(format, &filter_from_env())
}

/// The filter in `IBARROW_LOG`, else `warn`.
pub fn filter_from_env() -> String {
    std::env::var(LOG_ENV).unwrap_or_else(|_| "warn".to_string())
}

/// [`init`] with a filter given by the caller (Python's `init_logging(level)`).
pub fn init_with_filter(format: LogFormat, filter: &str) -> Result<()> {
    let subscriber = subscriber(format, filter, std::io::stderr)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|err| Error::Config {
        location: "logging".into(),
        message: format!("a log subscriber is already installed: {err}"),
    })
}

/// The subscriber [`init`] installs, writing to `writer` (tests capture the lines).
pub fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).map_err(|err| Error::Config {
        location: format!("{LOG_ENV}={filter}"),
        message: format!("{err}; use a level such as warn, info or debug"),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match format {
        LogFormat::Human => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    })
}
