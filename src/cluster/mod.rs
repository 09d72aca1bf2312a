//! Running queries on a Ballista cluster (the `cluster` feature): the client side
//! ([`client_state`]), what a scheduler or executor needs to plan and run ibarrow's scans
//! ([`ClusterSources`], [`logical_codec`], [`physical_codec`], [`scheduler_state`]), and the
//! codecs themselves (`codec.rs`, messages in `wire.rs`).
//!
//! The client plans a statement logically (ibarrow's pushdown rules included) and sends it to
//! the scheduler; the scheduler plans it physically against its own sources, splits it into
//! stages and hands each range partition of a scan to an executor as a task; executors open
//! the sources named in the scans from their own configuration. The processes share the
//! configuration file; no connection string crosses the wire.

mod codec;
mod task_scan;
mod wire;

use std::sync::Arc;

use ballista_core::config::BALLISTA_SCHEDULER_MAX_PARTITIONS_PER_TASK;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

pub use codec::{ClusterSources, IbarrowLogicalCodec, IbarrowPhysicalCodec};
pub use task_scan::{SplitScansIntoTasks, TaskScanExec};

/// The port a `df://host` URL without one means (Ballista's scheduler default).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// The host and port of the scheduler a `df://HOST:PORT` URL names (`df://[::1]:50050` for
/// an IPv6 address; the port defaults to Ballista's, 50050).
pub fn scheduler_host_port(url: &str) -> Result<(String, u16)> {
    let refuse = |why: &str| {
        DataFusionError::Configuration(format!(
            "cluster `{url}`: {why}; write the scheduler as df://HOST:PORT (e.g. \
             df://127.0.0.1:{DEFAULT_SCHEDULER_PORT})"
        ))
    };
    let Some(rest) = url.strip_prefix("df://") else {
        return Err(refuse("not a df:// URL"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(refuse("expected only a host and a port"));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(refuse("an IPv6 address needs its closing `]`"));
        };
        match after.strip_prefix(':') {
            Some(port) => (format!("[{host}]"), Some(port)),
            None if after.is_empty() => (format!("[{host}]"), None),
            None => return Err(refuse("expected `:PORT` after the address")),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return Err(refuse("the host is missing or not one name"));
    }
    let port = match port {
        Some(port) => port
            .parse()
            .map_err(|_| refuse("the port is not a number"))?,
        None => DEFAULT_SCHEDULER_PORT,
    };
    Ok((host, port))
}

/// The gRPC address of the scheduler a `df://HOST:PORT` URL names.
pub fn scheduler_address(url: &str) -> Result<String> {
    let (host, port) = scheduler_host_port(url)?;
    Ok(format!("http://{host}:{port}"))
}

/// The client's logical codec: ibarrow's tables by name, the rest as Ballista encodes it.
pub fn client_logical_codec() -> Arc<dyn LogicalExtensionCodec> {
    Arc::new(IbarrowLogicalCodec::for_client(Arc::new(
        BallistaLogicalExtensionCodec::default(),
    )))
}

/// A scheduler's or executor's logical codec, decoding tables against `sources`.
pub fn logical_codec(sources: &ClusterSources) -> Arc<dyn LogicalExtensionCodec> {
    Arc::new(IbarrowLogicalCodec::with_sources(
        Arc::new(BallistaLogicalExtensionCodec::default()),
        sources.clone(),
    ))
}

/// A scheduler's or executor's physical codec: ibarrow's scans and functions, and Ballista's
/// nodes.
pub fn physical_codec(sources: &ClusterSources) -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(IbarrowPhysicalCodec::new(
        Arc::new(BallistaPhysicalExtensionCodec::default()),
        sources.clone(),
    ))
}

/// `state` sending its queries to the scheduler at `url` (`df://host:port`).
pub(crate) fn client_state(state: SessionState, url: &str) -> Result<SessionState> {
    let address = scheduler_address(url)?;
    let config = state
        .config()
        .clone()
        .with_ballista_logical_extension_codec(client_logical_codec());
    SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build()
        .upgrade_for_ballista(address)
}

/// The session a scheduler plans a client's query in: the engine's catalogs, functions and
/// rules, under the configuration the client sent, with EXPLAIN noting the run-time filters
/// that cannot cross stages, and each scan split into its tasks' ranges (`task_scan.rs`).
///
/// Two of Ballista's settings are fixed here, whatever the client sent:
/// - each task runs one partition (`max_partitions_per_task = 1`), so the key ranges of a
///   scan spread over the executors, each range on its own connection;
/// - stages are planned by the static planner: the adaptive one runs a fixed list of
///   physical rules instead of the session's, so it would skip `SplitScansIntoTasks`, and
///   every task would then read the first ranges of each scan.
pub fn scheduler_state(sources: &ClusterSources, config: SessionConfig) -> Result<SessionState> {
    let config = config
        .upgrade_for_ballista()
        .with_ballista_adaptive_query_planner(false)
        .set_usize(BALLISTA_SCHEDULER_MAX_PARTITIONS_PER_TASK, 1);
    let state = sources.engine().context().state();
    Ok(SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .with_physical_optimizer_rule(Arc::new(ibarrow_providers::NoteDroppedRuntimeFilters))
        .with_physical_optimizer_rule(Arc::new(SplitScansIntoTasks))
        .build())
}

#[cfg(test)]
mod tests {
    use super::{scheduler_address, scheduler_host_port};

    #[test]
    fn scheduler_urls() {
        assert_eq!(
            scheduler_address("df://127.0.0.1:50070").unwrap(),
            "http://127.0.0.1:50070"
        );
        assert_eq!(
            scheduler_address("df://sched").unwrap(),
            "http://sched:50050"
        );
        assert_eq!(
            scheduler_host_port("df://[::1]:50071").unwrap(),
            ("[::1]".to_string(), 50071)
        );
        for bad in [
            "http://x:1",
            "df://",
            "df://x:port",
            "df://u:p@x:1",
            "df://x:1/path",
            "df://::1",
            "df://[::1",
        ] {
            let err = scheduler_address(bad).unwrap_err().to_string();
            assert!(err.contains("df://HOST:PORT"), "{bad}: {err}");
        }
    }
}
