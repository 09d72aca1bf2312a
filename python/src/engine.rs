//! `ibarrow.Engine`: the federation engine from Python.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py;
use crate::result::PyQueryResult;
use crate::runtime::wait_for_future;
use crate::table::PyTable;

#[pyclass(name = "Engine", module = "ibarrow._internal", frozen)]
pub struct PyEngine {
    engine: ibarrow::Engine,
    /// Every query runs in this session: its user and client meet the engine's rate limits
    /// and appear in its logs.
    session: ibarrow::Session,
    /// The file and profile `from_config` read, which `reload` reads again by default.
    origin: Option<(std::path::PathBuf, Option<String>)>,
}

fn session_of(engine: &ibarrow::Engine, user: Option<&str>, client: &str) -> ibarrow::Session {
    let user = user.map_or_else(ibarrow::governance::os_user, str::to_string);
    engine.session(&user, client)
}

/// `memory_limit=`: bytes, or text with a unit ("512MB", "2GiB").
#[derive(FromPyObject)]
pub enum MemoryLimit {
    Bytes(u64),
    Text(String),
}

impl MemoryLimit {
    fn bytes(self) -> PyResult<u64> {
        match self {
            MemoryLimit::Bytes(0) => Err(crate::errors::error_of_kind(
                "ConfigError",
                "memory_limit: 0 bytes; give a size such as \"512MB\"".into(),
            )),
            MemoryLimit::Bytes(bytes) => Ok(bytes),
            MemoryLimit::Text(text) => text
                .parse::<ibarrow::ByteSize>()
                .map(|size| size.0)
                .map_err(|message| {
                    crate::errors::error_of_kind("ConfigError", format!("memory_limit: {message}"))
                }),
        }
    }
}

#[pymethods]
impl PyEngine {
    /// An engine without sources; add them with `register_odbc`.
    #[new]
    #[pyo3(signature = (target_partitions=None, user=None, client="python", memory_limit=None, cluster=None))]
    fn new(
        py: Python<'_>,
        target_partitions: Option<usize>,
        user: Option<&str>,
        client: &str,
        memory_limit: Option<MemoryLimit>,
        cluster: Option<&str>,
    ) -> PyResult<Self> {
        let mut builder = ibarrow::Engine::builder();
        if let Some(url) = cluster {
            builder = builder.cluster(url);
        }
        if let Some(partitions) = target_partitions {
            builder = builder.target_partitions(partitions);
        }
        if let Some(limit) = memory_limit {
            builder = builder.memory_limit(limit.bytes()?);
        }
        let engine = wait_for_future(py, builder.build())?.map_err(to_py)?;
        let session = session_of(&engine, user, client);
        Ok(Self {
            engine,
            session,
            origin: None,
        })
    }

    /// An engine with the sources of a TOML configuration file, `profile` applied (default:
    /// the one IBARROW_PROFILE names).
    #[staticmethod]
    #[pyo3(signature = (path, user=None, client="python", profile=None, cluster=None))]
    fn from_config(
        py: Python<'_>,
        path: std::path::PathBuf,
        user: Option<&str>,
        client: &str,
        profile: Option<&str>,
        cluster: Option<&str>,
    ) -> PyResult<Self> {
        let mut config = read_config(&path, profile)?;
        if let Some(url) = cluster {
            config.engine.cluster = Some(url.to_string());
        }
        let engine = wait_for_future(py, ibarrow::Engine::from_config(config))?.map_err(to_py)?;
        let session = session_of(&engine, user, client);
        Ok(Self {
            engine,
            session,
            origin: Some((path, profile.map(str::to_string))),
        })
    }

    /// Reads a configuration file (by default the one `from_config` read, with its profile)
    /// and applies it (`Engine::reload`): a dict of what changed (`added`, `removed`,
    /// `changed`, `roles_changed`, `limits_changed`, `log_level`, `needs_restart`). A file
    /// that is refused changes nothing.
    #[pyo3(signature = (path=None, profile=None))]
    fn reload<'py>(
        &self,
        py: Python<'py>,
        path: Option<std::path::PathBuf>,
        profile: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (path, profile) = match (path, &self.origin) {
            (Some(path), _) => (path, profile.map(str::to_string)),
            (None, Some((path, opened_with))) => (
                path.clone(),
                profile.map(str::to_string).or(opened_with.clone()),
            ),
            (None, None) => {
                return Err(crate::errors::error_of_kind(
                    "ConfigError",
                    "this engine was not opened from a configuration file; give the path to \
                     reload"
                        .into(),
                ));
            }
        };
        let config = read_config(&path, profile.as_deref())?;
        if let Some(level) = &config.engine.log_level {
            ibarrow::logging::validate_filter(level).map_err(to_py)?;
        }
        let report = wait_for_future(py, self.engine.reload(&config))?.map_err(to_py)?;
        if let Some(level) = &report.log_level {
            // Applied when `init_logging` installed ibarrow's logger, and IBARROW_LOG does
            // not choose the level.
            if std::env::var_os(ibarrow::logging::LOG_ENV).is_none() {
                let _ = ibarrow::logging::set_filter(level);
            }
        }
        let dict = PyDict::new(py);
        dict.set_item("added", report.added)?;
        dict.set_item("removed", report.removed)?;
        dict.set_item("changed", report.changed)?;
        dict.set_item("roles_changed", report.roles_changed)?;
        dict.set_item("limits_changed", report.limits_changed)?;
        dict.set_item("log_level", report.log_level)?;
        dict.set_item("needs_restart", report.needs_restart)?;
        Ok(dict)
    }

    /// Connects an ODBC database as source `name` (tables become `name.schema.table`), with
    /// its replicas when given (the `replicas`, `read_from`, `balance` and
    /// `max_replica_lag_secs` settings of a configuration file's source).
    #[pyo3(signature = (
        name, connection_string, *, replicas=None, read_from=None, balance=None,
        max_replica_lag_secs=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn register_odbc(
        &self,
        py: Python<'_>,
        name: &str,
        connection_string: &str,
        replicas: Option<Vec<String>>,
        read_from: Option<String>,
        balance: Option<String>,
        max_replica_lag_secs: Option<u64>,
    ) -> PyResult<()> {
        let config = ibarrow::SourceConfig {
            connection_string: Some(connection_string.to_string()),
            replicas,
            read_from,
            balance,
            max_replica_lag_secs,
            ..Default::default()
        };
        wait_for_future(py, self.engine.register_source(name, &config))?.map_err(to_py)
    }

    /// Plans `query` (str, or UTF-8 bytes) in the engine's own session, with `params` for its
    /// placeholders; nothing runs until the result is read.
    #[pyo3(signature = (query, params=None))]
    fn sql(
        &self,
        py: Python<'_>,
        query: &Bound<'_, PyAny>,
        params: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyQueryResult> {
        plan_in(py, &self.session, query, params)
    }

    /// Plans `query` once in the engine's own session, for running with new values.
    fn prepare(&self, py: Python<'_>, query: &Bound<'_, PyAny>) -> PyResult<PyPreparedStatement> {
        prepare_in(py, &self.session, query)
    }

    /// A session of this engine for another user or client (a web app's end user, say).
    #[pyo3(signature = (user, client="python"))]
    fn session(&self, user: &str, client: &str) -> PySession {
        PySession {
            session: self.engine.session(user, client),
        }
    }

    /// The engine's insights (slowest statements, users, sources, cache, index advice) as
    /// JSON text; `ibarrow.Engine.insights()` returns it parsed.
    fn insights_json(&self, py: Python<'_>) -> PyResult<String> {
        let insights = wait_for_future(py, self.engine.insights())?;
        serde_json::to_string(&insights)
            .map_err(|err| crate::errors::error_of_kind("Error", err.to_string()))
    }

    /// Counters of the queries run so far, as Prometheus text.
    fn metrics_prometheus(&self) -> String {
        self.engine.metrics().to_prometheus()
    }

    /// Forgets the cached schemas and tables of a source.
    fn refresh(&self, py: Python<'_>, source: &str) -> PyResult<()> {
        wait_for_future(py, self.engine.refresh(source))?.map_err(to_py)
    }

    /// The registered sources' names.
    fn sources(&self) -> Vec<String> {
        self.engine.source_names()
    }

    /// The table `name` (`source.schema.table`) as the start of a query built step by step.
    fn table(&self, py: Python<'_>, name: &str) -> PyResult<crate::query::PyQuery> {
        query_table(py, &self.session, name)
    }

    /// A table of the engine (`source.schema.table`) for a datafusion-python context.
    fn export_table(&self, py: Python<'_>, name: &str) -> PyResult<PyTable> {
        // Handed to another context, the table escapes the engine's plan checks: only a table
        // the user reads whole is given out (ibarrow::Session::export_table).
        let session = self.session.clone();
        let reference = name.to_string();
        let provider =
            wait_for_future(
                py,
                async move { session.export_table(reference.as_str()).await },
            )?
            .map_err(to_py)?;
        Ok(PyTable::new(provider, name.to_string()))
    }

    /// Each source's health: a list of dicts with `source`, `reachable`, `latency_ms`,
    /// `error`, `breaker`, `pool_max`, `in_use`, `idle`, `held_too_long` and `endpoints` (the
    /// primary and each replica: `endpoint`, `role`, `reachable`, `latency_ms`, `error`,
    /// `breaker`, `statements`, `failed_over`, `lag_secs`).
    #[pyo3(signature = (timeout=5.0))]
    fn health<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let timeout = Duration::try_from_secs_f64(timeout).map_err(|err| {
            crate::errors::error_of_kind("ConfigError", format!("timeout: {err}"))
        })?;
        let report = wait_for_future(py, self.engine.health(timeout))?;
        report
            .into_iter()
            .map(|health| {
                let dict = PyDict::new(py);
                dict.set_item("source", health.source)?;
                dict.set_item("reachable", health.reachable)?;
                dict.set_item(
                    "latency_ms",
                    health.latency.map(|l| l.as_secs_f64() * 1000.0),
                )?;
                dict.set_item("error", health.error)?;
                dict.set_item("breaker", health.breaker.map(|b| format!("{b:?}")))?;
                dict.set_item("pool_max", health.pool_max)?;
                dict.set_item("in_use", health.in_use)?;
                dict.set_item("idle", health.idle)?;
                dict.set_item("held_too_long", health.held_too_long)?;
                let endpoints = health
                    .endpoints
                    .iter()
                    .map(|e| {
                        let endpoint = PyDict::new(py);
                        endpoint.set_item("endpoint", &e.label)?;
                        endpoint.set_item("role", format!("{:?}", e.role).to_lowercase())?;
                        endpoint.set_item("reachable", e.reachable)?;
                        endpoint
                            .set_item("latency_ms", e.latency.map(|l| l.as_secs_f64() * 1000.0))?;
                        endpoint.set_item("error", &e.error)?;
                        endpoint.set_item("breaker", e.breaker.map(|b| format!("{b:?}")))?;
                        endpoint.set_item("statements", e.statements)?;
                        endpoint.set_item("failed_over", e.failed_over)?;
                        endpoint.set_item(
                            "lag_secs",
                            match e.lag {
                                Some(ibarrow::LagReading::Behind(lag)) => Some(lag.as_secs_f64()),
                                _ => None,
                            },
                        )?;
                        Ok(endpoint)
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                dict.set_item("endpoints", endpoints)?;
                Ok(dict)
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("ibarrow.Engine(sources={:?})", self.engine.source_names())
    }
}

/// Queries of one user and client on an engine: rate limits and the query log count them.
#[pyclass(name = "Session", module = "ibarrow._internal", frozen)]
pub struct PySession {
    session: ibarrow::Session,
}

#[pymethods]
impl PySession {
    #[pyo3(signature = (query, params=None))]
    fn sql(
        &self,
        py: Python<'_>,
        query: &Bound<'_, PyAny>,
        params: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyQueryResult> {
        plan_in(py, &self.session, query, params)
    }

    fn prepare(&self, py: Python<'_>, query: &Bound<'_, PyAny>) -> PyResult<PyPreparedStatement> {
        prepare_in(py, &self.session, query)
    }

    /// The table `name` as the start of a query of this session.
    fn table(&self, py: Python<'_>, name: &str) -> PyResult<crate::query::PyQuery> {
        query_table(py, &self.session, name)
    }

    #[getter]
    fn user(&self) -> &str {
        self.session.user()
    }

    #[getter]
    fn client(&self) -> &str {
        self.session.client()
    }

    fn __repr__(&self) -> String {
        format!(
            "ibarrow.Session(user={:?}, client={:?})",
            self.session.user(),
            self.session.client()
        )
    }
}

/// A statement planned once ([`ibarrow::PreparedStatement`]); every `execute` binds new
/// values and gives a result that runs when read.
#[pyclass(name = "PreparedStatement", module = "ibarrow._internal", frozen)]
pub struct PyPreparedStatement {
    prepared: ibarrow::PreparedStatement,
}

#[pymethods]
impl PyPreparedStatement {
    #[pyo3(signature = (params=None))]
    fn execute(
        &self,
        py: Python<'_>,
        params: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyQueryResult> {
        let params = match params {
            Some(params) => crate::params::param_values(params)?,
            None => datafusion::common::ParamValues::List(Vec::new()),
        };
        let frame = wait_for_future(py, self.prepared.bind(params))?.map_err(to_py)?;
        result_of(
            py,
            self.prepared.session(),
            frame,
            self.prepared.sql().to_string(),
        )
    }

    /// The placeholders and the type each needs (`None`: any).
    fn parameter_types(&self) -> PyResult<Vec<(String, Option<String>)>> {
        Ok(self
            .prepared
            .parameter_types()
            .map_err(to_py)?
            .into_iter()
            .map(|(name, data_type)| (name, data_type.map(|t| t.to_string())))
            .collect())
    }

    #[getter]
    fn sql(&self) -> &str {
        self.prepared.sql()
    }

    fn __repr__(&self) -> String {
        format!("ibarrow.PreparedStatement({:?})", self.prepared.sql())
    }
}

/// The configuration at `path` with `profile` applied (else the one `IBARROW_PROFILE` names).
fn read_config(path: &std::path::Path, profile: Option<&str>) -> PyResult<ibarrow::Config> {
    match profile {
        Some(profile) => ibarrow::Config::from_file_with_profile(path, Some(profile)),
        None => ibarrow::Config::from_file(path),
    }
    .map_err(to_py)
}

/// The table `name` of `session` as a [`crate::query::PyQuery`].
fn query_table(
    py: Python<'_>,
    session: &ibarrow::Session,
    name: &str,
) -> PyResult<crate::query::PyQuery> {
    let query = wait_for_future(py, session.table(name))?.map_err(to_py)?;
    Ok(crate::query::PyQuery::new(query))
}

/// `query` as text: str, or bytes that must be UTF-8.
fn query_text(query: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(bytes) = query.cast::<pyo3::types::PyBytes>() {
        Ok(ibarrow::governance::decode(bytes.as_bytes())
            .map_err(to_py)?
            .to_string())
    } else {
        query.extract::<String>()
    }
}

/// Plans `query` in `session`, with `params` bound to its placeholders when given.
fn plan_in(
    py: Python<'_>,
    session: &ibarrow::Session,
    query: &Bound<'_, PyAny>,
    params: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyQueryResult> {
    let text = query_text(query)?;
    let frame = match params {
        Some(params) => {
            let params = crate::params::param_values(params)?;
            wait_for_future(py, session.sql_with_params(&text, params))?
        }
        None => wait_for_future(py, session.sql(&text))?,
    }
    .map_err(to_py)?;
    result_of(py, session, frame, text)
}

fn prepare_in(
    py: Python<'_>,
    session: &ibarrow::Session,
    query: &Bound<'_, PyAny>,
) -> PyResult<PyPreparedStatement> {
    let text = query_text(query)?;
    let prepared = wait_for_future(py, session.prepare(&text))?.map_err(to_py)?;
    Ok(PyPreparedStatement { prepared })
}

/// The result of a planned `frame`. A result is read again on every read: an INSERT runs
/// once, here, and its result holds the row count.
fn result_of(
    py: Python<'_>,
    session: &ibarrow::Session,
    frame: datafusion::dataframe::DataFrame,
    text: String,
) -> PyResult<PyQueryResult> {
    if matches!(
        frame.logical_plan(),
        datafusion::logical_expr::LogicalPlan::Dml(_)
    ) {
        let run = async {
            use futures::TryStreamExt;
            let batches: Vec<_> = session
                .execute(frame, &text)
                .await?
                .try_collect()
                .await
                .map_err(ibarrow::Error::from)?;
            Ok::<_, ibarrow::Error>(session.engine().context().read_batches(batches)?)
        };
        let done = wait_for_future(py, run)?.map_err(to_py)?;
        return Ok(PyQueryResult::new(done, session.clone(), text));
    }
    Ok(PyQueryResult::new(frame, session.clone(), text))
}

/// Sends ibarrow's logs to stderr: `level` is a tracing filter (`info`, `ibarrow=debug`;
/// default `IBARROW_LOG`, else `warn`), `format` is `human` or `json`. Once per process.
#[pyfunction]
#[pyo3(signature = (level=None, format="human"))]
pub fn init_logging(level: Option<&str>, format: &str) -> PyResult<()> {
    let format = format
        .parse::<ibarrow::logging::LogFormat>()
        .map_err(|message| crate::errors::error_of_kind("ConfigError", message))?;
    let filter = level.map_or_else(ibarrow::logging::filter_from_env, str::to_string);
    ibarrow::logging::init_with_filter(format, &filter).map_err(to_py)
}
