//! The ibarrow 0.1 API: `connect(...)` and a connection whose queries go to the database as
//! written, in its own dialect. Unlike 0.1, every query returns all of its rows and every
//! `QueryConfig` field takes effect (or is refused with a clear error). A connection is an
//! `Engine` with one source, `odbc`, and its queries run in an engine session: the engine's
//! query log and metrics see them as they see every other query.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use ibarrow::sql::{IsolationLevel, SessionSettings};
use ibarrow::{Engine, OdbcSource, Session, SourceOptions};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::errors::{error_of_kind, to_py};
use crate::result::{PyArrowBatches, batch_capsules};
use crate::runtime::wait_for_future;

/// Settings of a 0.1 connection. Sizes in bytes, timeouts in seconds.
#[pyclass(name = "QueryConfig", module = "ibarrow._internal", from_py_object)]
#[derive(Debug, Clone, Default)]
pub struct PyQueryConfig {
    #[pyo3(get, set)]
    pub batch_size: Option<u32>,
    #[pyo3(get, set)]
    pub max_text_size: Option<u32>,
    #[pyo3(get, set)]
    pub max_binary_size: Option<u32>,
    #[pyo3(get, set)]
    pub read_only: bool,
    #[pyo3(get, set)]
    pub connection_timeout: Option<u32>,
    #[pyo3(get, set)]
    pub query_timeout: Option<u32>,
    #[pyo3(get, set)]
    pub isolation_level: Option<String>,
}

#[pymethods]
impl PyQueryConfig {
    #[new]
    #[pyo3(signature = (batch_size=None, max_text_size=None, max_binary_size=None, read_only=false, connection_timeout=None, query_timeout=None, isolation_level=None))]
    fn new(
        batch_size: Option<u32>,
        max_text_size: Option<u32>,
        max_binary_size: Option<u32>,
        read_only: bool,
        connection_timeout: Option<u32>,
        query_timeout: Option<u32>,
        isolation_level: Option<String>,
    ) -> Self {
        Self {
            batch_size,
            max_text_size,
            max_binary_size,
            read_only,
            connection_timeout,
            query_timeout,
            isolation_level,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "QueryConfig(batch_size={:?}, max_text_size={:?}, max_binary_size={:?}, \
             read_only={}, connection_timeout={:?}, query_timeout={:?}, isolation_level={:?})",
            self.batch_size,
            self.max_text_size,
            self.max_binary_size,
            self.read_only,
            self.connection_timeout,
            self.query_timeout,
            self.isolation_level
        )
    }
}

impl PyQueryConfig {
    fn source_options(&self) -> PyResult<SourceOptions> {
        let mut options = SourceOptions::default();
        let positive = |field: &str, value: u32| {
            if value == 0 {
                Err(error_of_kind(
                    "ConfigError",
                    format!("QueryConfig.{field} must be at least 1"),
                ))
            } else {
                Ok(value)
            }
        };
        if let Some(rows) = self.batch_size {
            options.scan.batch_rows = positive("batch_size", rows)? as usize;
        }
        if let Some(bytes) = self.max_text_size {
            options.scan.max_text_size = positive("max_text_size", bytes)? as usize;
        }
        if let Some(bytes) = self.max_binary_size {
            options.scan.max_binary_size = positive("max_binary_size", bytes)? as usize;
        }
        if let Some(secs) = self.connection_timeout {
            options.pool.connect_timeout = Some(Duration::from_secs(
                positive("connection_timeout", secs)?.into(),
            ));
        }
        if let Some(secs) = self.query_timeout {
            options.scan.query_timeout =
                Some(Duration::from_secs(positive("query_timeout", secs)?.into()));
        }
        let isolation = match &self.isolation_level {
            Some(text) => Some(text.parse::<IsolationLevel>().map_err(|err| {
                error_of_kind("ConfigError", format!("QueryConfig.isolation_level: {err}"))
            })?),
            None => None,
        };
        // As in 0.1, SQL goes to the database as written; `read_only` is the database's own
        // read-only session, not ibarrow's statement check.
        options.writable = true;
        options.session = SessionSettings {
            read_only: self.read_only,
            isolation,
        };
        // A direct connection reports every failure as it happens; no breaker in between.
        options.breaker = None;
        options.pool.max_size = 2;
        Ok(options)
    }
}

/// How `connect` reaches the database.
enum Target {
    ConnectionString(String),
    Dsn(String),
}

/// 0.1 accepted a full connection string in `dsn`; `user` and `password` are appended
/// unless the string already has them.
fn target(
    dsn: Option<&str>,
    connection_string: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
) -> PyResult<Target> {
    let text = match (connection_string, dsn) {
        (Some(text), _) => text,
        (None, Some(dsn)) if dsn.contains('=') => dsn,
        (None, Some(dsn)) => return Ok(Target::Dsn(dsn.to_string())),
        (None, None) => {
            return Err(error_of_kind(
                "ConfigError",
                "connect() needs a data source: pass dsn=\"name\" (from odbc.ini) or \
                 connection_string=\"Driver={...};Server=...\""
                    .into(),
            ));
        }
    };
    let mut parsed = ibarrow::providers::ConnectionString::parse(text).map_err(to_py)?;
    let has_any = |parsed: &ibarrow::providers::ConnectionString, keys: &[&str]| {
        keys.iter().any(|key| parsed.get(key).is_some())
    };
    if let Some(user) = user
        && !has_any(&parsed, &["UID", "User", "Username", "User ID"])
    {
        parsed.set_default("UID", user);
    }
    if let Some(password) = password
        && !has_any(&parsed, &["PWD", "Password"])
    {
        parsed.set_default("PWD", password);
    }
    Ok(Target::ConnectionString(parsed.expose()))
}

#[pyclass(name = "Connection", module = "ibarrow._internal", frozen)]
pub struct PyConnection {
    session: std::sync::Mutex<Option<Session>>,
    description: String,
}

/// The name of a 0.1 connection's one source in its engine.
const SOURCE: &str = "odbc";

impl PyConnection {
    fn session(&self) -> PyResult<Session> {
        self.session
            .lock()
            .ok()
            .and_then(|session| session.clone())
            .ok_or_else(|| {
                error_of_kind(
                    "ConnectionError",
                    "the connection is closed; open a new one with ibarrow.connect(...)".into(),
                )
            })
    }

    /// Runs `sql` as written on the database and reads every row.
    fn run(&self, py: Python<'_>, sql: &str) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
        let session = self.session()?;
        let sql = sql.to_string();
        wait_for_future(py, async move {
            // A native result may repeat a column name (`SELECT a.id, b.id ...`): the
            // session runs it unplanned.
            let stream = session.native(SOURCE, &sql).await?;
            let schema = stream.schema();
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            Ok::<_, ibarrow::Error>((schema, batches))
        })?
        .map_err(to_py)
    }
}

#[pymethods]
impl PyConnection {
    /// The result as Arrow batches (the Python wrapper turns them into frames).
    fn query(&self, py: Python<'_>, sql: &str) -> PyResult<PyArrowBatches> {
        let (schema, batches) = self.run(py, sql)?;
        Ok(PyArrowBatches::new(schema, batches))
    }

    /// The result as the bytes of an Arrow IPC stream.
    fn query_arrow_ipc<'py>(&self, py: Python<'py>, sql: &str) -> PyResult<Bound<'py, PyBytes>> {
        let (schema, batches) = self.run(py, sql)?;
        let arrow_error =
            |err: arrow::error::ArrowError| error_of_kind("ArrowError", err.to_string());
        let mut writer =
            arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(arrow_error)?;
        for batch in &batches {
            writer.write(batch).map_err(arrow_error)?;
        }
        let bytes = writer.into_inner().map_err(arrow_error)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// `(schema capsule, array capsule)`: every row as one struct array (C data interface).
    fn query_arrow_c_data_capsules<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (schema, batches) = self.run(py, sql)?;
        let all = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|err| error_of_kind("ArrowError", err.to_string()))?;
        batch_capsules(py, all)
    }

    /// Whether the database answers a trivial query.
    fn test_connection(&self, py: Python<'_>) -> PyResult<bool> {
        let source = self.session()?.engine().source(SOURCE).map_err(to_py)?;
        let health = wait_for_future(
            py,
            async move { source.health(Duration::from_secs(10)).await },
        )?;
        Ok(health.reachable)
    }

    /// Closes the pooled connections; later queries raise ConnectionError.
    fn close(&self) {
        if let Ok(mut session) = self.session.lock() {
            *session = None;
        }
    }

    fn __repr__(&self) -> String {
        format!("ibarrow.Connection({})", self.description)
    }
}

/// Opens a 0.1-style connection. See the Python wrapper `ibarrow.connect` for the arguments.
#[pyfunction]
#[pyo3(signature = (dsn=None, user=None, password=None, config=None, connection_string=None))]
pub fn connect(
    py: Python<'_>,
    dsn: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
    config: Option<PyQueryConfig>,
    connection_string: Option<&str>,
) -> PyResult<PyConnection> {
    let options = config.unwrap_or_default().source_options()?;
    let target = target(dsn, connection_string, user, password)?;
    let user = user.map(str::to_string);
    let password = password.map(str::to_string);
    let (source, description) = match target {
        Target::ConnectionString(text) => {
            let description = ibarrow::providers::ConnectionString::parse(&text)
                .map(|parsed| parsed.redacted())
                .unwrap_or_default();
            let source = wait_for_future(py, async move {
                OdbcSource::connect("odbc", &text, options).await
            })?;
            (source, description)
        }
        Target::Dsn(dsn) => {
            let description = format!("DSN={dsn}");
            let source = wait_for_future(py, async move {
                OdbcSource::connect_dsn("odbc", &dsn, user.as_deref(), password.as_deref(), options)
                    .await
            })?;
            (source, description)
        }
    };
    let source = source.map_err(to_py)?;
    let engine = wait_for_future(py, async move {
        let engine = Engine::builder().build().await?;
        engine.register_connected(SOURCE, source).await?;
        Ok::<_, ibarrow::Error>(engine)
    })?
    .map_err(to_py)?;
    let session = engine.session(&ibarrow::governance::os_user(), "python-0.1");
    Ok(PyConnection {
        session: std::sync::Mutex::new(Some(session)),
        description,
    })
}
