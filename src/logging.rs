//! Structured logs with tracing: the level from `IBARROW_LOG` (a tracing filter such as
//! `info` or `ibarrow=debug`; default `warn`), written to stderr as human-readable lines or
//! as JSON lines. Messages never carry passwords: connection strings appear only redacted,
//! and the query log masks string literals when `[engine] log_mask_literals` is set.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use crate::error::{Error, Result};

/// The environment variable holding the log filter.
pub const LOG_ENV: &str = "IBARROW_LOG";

/// How log lines are written to stderr (`--log-format human|json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line.
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

/// The filter of the installed subscriber, which [`set_filter`] replaces.
static FILTER: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

/// [`init`] with a filter given by the caller (Python's `init_logging(level)`, the REPL and
/// the server with `[engine] log_level`).
pub fn init_with_filter(format: LogFormat, filter: &str) -> Result<()> {
    let (subscriber, handle) = reloadable(format, filter, std::io::stderr)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|err| Error::Config {
        location: "logging".into(),
        message: format!("a log subscriber is already installed: {err}"),
    })?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// Replaces the filter of the subscriber [`init`] installed (a reloaded `[engine]
/// log_level`); an invalid filter is an error and the one in force stays.
pub fn set_filter(filter: &str) -> Result<()> {
    let parsed = parse_filter(filter)?;
    let Some(handle) = FILTER.get() else {
        return Err(Error::Config {
            location: "logging".into(),
            message: "no log subscriber of ibarrow is installed, so there is no level to change"
                .into(),
        });
    };
    handle.reload(parsed).map_err(|err| Error::Config {
        location: "logging".into(),
        message: format!("the log level cannot be changed: {err}"),
    })
}

/// Checks that `filter` is a log filter (`warn`, `ibarrow=debug,info`), as `[engine]
/// log_level` must be, without installing it.
pub fn validate_filter(filter: &str) -> Result<()> {
    parse_filter(filter).map(|_| ())
}

fn parse_filter(filter: &str) -> Result<EnvFilter> {
    EnvFilter::try_new(filter).map_err(|err| Error::Config {
        location: format!("log filter `{filter}`"),
        message: format!("{err}; use a level such as warn, info or debug"),
    })
}

type Reloadable = (
    Box<dyn tracing::Subscriber + Send + Sync>,
    tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
);

/// A subscriber writing to `writer` whose filter can be replaced through the handle.
fn reloadable<W>(format: LogFormat, filter: &str, writer: W) -> Result<Reloadable>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(parse_filter(filter)?);
    let registry = tracing_subscriber::registry().with(filter);
    let lines = tracing_subscriber::fmt::layer().with_writer(writer);
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
        LogFormat::Human => Box::new(registry.with(lines)),
        LogFormat::Json => Box::new(registry.with(lines.json().flatten_event(true))),
    };
    Ok((subscriber, handle))
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
    Ok(reloadable(format, filter, writer)?.0)
}
