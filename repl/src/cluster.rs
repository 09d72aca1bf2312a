//! `ibarrow cluster scheduler` and `ibarrow cluster executor`: Ballista's scheduler and
//! executor processes with ibarrow's codecs, each opening the sources of the configuration
//! file itself (src/cluster/), so that queries sent with `ibarrow --cluster df://HOST:PORT`
//! run across the executors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use ibarrow::Engine;
use ibarrow::cluster::{self, ClusterSources};

/// How the scheduler sees executors: a heartbeat every few seconds, and an executor silent
/// for `executor_timeout` is dropped and its tasks run elsewhere.
const HEARTBEAT_SECS: u64 = 5;

/// Opens the sources of the configuration at `path` for the process named `process`. A
/// source that cannot be opened does not stop the process: tasks reading it fail with the
/// reason, naming this process.
async fn open_sources(
    path: &Path,
    profile: Option<&str>,
    process: &str,
) -> Result<ClusterSources, String> {
    let mut config = crate::read_config(Some(path), profile)?;
    crate::check_log_level(&config)?;
    crate::apply_log_level(&config);
    // This process runs what it is sent: it is no client of a cluster itself.
    config.engine.cluster = None;
    // Serving, users and audit belong to the client side (`ibarrow serve`).
    config.server = None;
    config.audit = None;
    let sources = std::mem::take(&mut config.sources);
    let engine = Engine::from_config(config)
        .await
        .map_err(|err| err.to_string())?;
    let mut unavailable = BTreeMap::new();
    for (name, source) in &sources {
        if let Err(err) = engine.register_source(name, source).await {
            tracing::warn!(%process, source = %name, error = %err,
                "a source cannot be opened; tasks that read it fail on this process");
            unavailable.insert(name.clone(), err.to_string());
        }
    }
    Ok(ClusterSources::new(engine, process, unavailable))
}

/// Forwards the `log` records of Ballista to ibarrow's log lines.
fn forward_ballista_logs() {
    // Fails only when a logger is already installed, which then keeps its lines. odbc-api's
    // records stay out, as in every other ibarrow process (its driver-manager notices are
    // noise at warn).
    let _ = tracing_log::LogTracer::builder()
        .ignore_crate("odbc_api")
        .init();
}

fn runtime(program: &str, log_format: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    let runtime = crate::start(program, log_format)?;
    forward_ballista_logs();
    Ok(runtime)
}

/// `ibarrow cluster scheduler`.
pub(crate) fn scheduler(
    bind: SocketAddr,
    config: &Path,
    profile: Option<&str>,
    executor_timeout_secs: u64,
    log_format: &str,
) -> ExitCode {
    let program = "ibarrow cluster scheduler";
    let runtime = match runtime(program, log_format) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(async {
        let sources = open_sources(config, profile, "scheduler").await?;
        let mut settings = SchedulerConfig {
            bind_host: bind.ip().to_string(),
            external_host: bind.ip().to_string(),
            bind_port: bind.port(),
            executor_timeout_seconds: executor_timeout_secs,
            expire_dead_executor_interval_seconds: HEARTBEAT_SECS,
            // The range partitions of a scan spread over the executors, each on its own
            // connections, rather than filling one executor first.
            task_distribution: TaskDistributionPolicy::RoundRobin,
            override_logical_codec: Some(cluster::logical_codec(&sources)),
            override_physical_codec: Some(cluster::physical_codec(&sources)),
            ..SchedulerConfig::default()
        };
        let planning = sources.clone();
        settings.override_session_builder = Some(Arc::new(move |session_config| {
            cluster::scheduler_state(&planning, session_config)
        }));
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|err| format!("cannot listen on {bind}: {err}"))?;
        let settings = Arc::new(settings);
        let cluster_state = BallistaCluster::new_from_config(&settings)
            .await
            .map_err(|err| err.to_string())?;
        let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster_state, settings)
            .await
            .map_err(|err| err.to_string())?;
        eprintln!("{program}: listening on df://{bind}");
        start_grpc_service_with_listener(listener, server)
            .await
            .map_err(|err| err.to_string())
    });
    finish(program, runtime, outcome)
}

/// What `ibarrow cluster executor` is given.
pub(crate) struct ExecutorArgs<'a> {
    pub scheduler: &'a str,
    pub config: &'a Path,
    pub profile: Option<&'a str>,
    pub bind: SocketAddr,
    pub grpc_port: Option<u16>,
    pub concurrent_tasks: Option<usize>,
    pub log_format: &'a str,
}

/// `ibarrow cluster executor`.
pub(crate) fn executor(args: ExecutorArgs) -> ExitCode {
    let program = "ibarrow cluster executor";
    let runtime = match runtime(program, args.log_format) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(async {
        let (scheduler_host, scheduler_port) =
            cluster::scheduler_host_port(args.scheduler).map_err(|e| e.strip_backtrace())?;
        // The scheduler and the other executors reach this one at its --bind address, which
        // is also its name in the cluster.
        if args.bind.ip().is_unspecified() {
            return Err(format!(
                "--bind {}: give the address the scheduler and the other executors reach this \
                 executor at (e.g. --bind 10.0.0.5:{}), not an unspecified one",
                args.bind,
                args.bind.port()
            ));
        }
        let executor_id = args.bind.to_string();
        let sources = open_sources(
            args.config,
            args.profile,
            &format!("executor {executor_id}"),
        )
        .await?;
        // Shuffle files live as long as the process.
        let work_dir = tempfile::Builder::new()
            .prefix("ibarrow-executor-")
            .tempdir()
            .map_err(|err| format!("cannot create a work directory: {err}"))?;
        let grpc_port = match args.grpc_port {
            Some(port) => port,
            None => args
                .bind
                .port()
                .checked_add(1)
                .ok_or_else(|| format!("--bind {}: give --grpc-port as well", args.bind))?,
        };
        let settings = ExecutorProcessConfig {
            executor_id,
            bind_host: args.bind.ip().to_string(),
            external_host: Some(args.bind.ip().to_string()),
            port: args.bind.port(),
            grpc_port,
            scheduler_host,
            scheduler_port,
            scheduler_connect_timeout_seconds: 60,
            vcores: args.concurrent_tasks.unwrap_or(0),
            work_dir: work_dir.path().to_str().map(str::to_string),
            print_thread_info: false,
            executor_heartbeat_interval_seconds: HEARTBEAT_SECS,
            override_logical_codec: Some(cluster::logical_codec(&sources)),
            override_physical_codec: Some(cluster::physical_codec(&sources)),
            ..ExecutorProcessConfig::default()
        };
        eprintln!(
            "{program}: {} serving tasks of {}",
            args.bind, args.scheduler
        );
        let ran = start_executor_process(Arc::new(settings))
            .await
            .map_err(|err| err.to_string());
        drop(work_dir);
        ran
    });
    finish(program, runtime, outcome)
}

fn finish(
    program: &str,
    runtime: tokio::runtime::Runtime,
    outcome: Result<(), String>,
) -> ExitCode {
    runtime.shutdown_timeout(crate::EXIT_GRACE);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            ExitCode::FAILURE
        }
    }
}
