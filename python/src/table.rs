//! ibarrow tables inside a datafusion-python `SessionContext`, through DataFusion's FFI
//! table-provider protocol (`__datafusion_table_provider__`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::table_provider::FFI_TableProvider;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use tokio::runtime::Handle;

use crate::errors::error_of_kind;
use crate::runtime::runtime;

const PROVIDER_CAPSULE: &std::ffi::CStr = c"datafusion_table_provider";
const CODEC_CAPSULE: &std::ffi::CStr = c"datafusion_logical_extension_codec";
const CODEC_GETTER: &str = "__datafusion_logical_extension_codec__";

/// Polls a future with ibarrow's runtime entered: the host polls `scan` on its own runtime
/// (a different copy of tokio), where ibarrow's blocking tasks and timers do not exist.
struct InRuntime<F> {
    handle: Handle,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _entered = self.handle.enter();
        self.future.as_mut().poll(cx)
    }
}

/// A table provider whose planning work runs on ibarrow's runtime.
#[derive(Debug)]
struct RuntimeBoundTable {
    inner: Arc<dyn TableProvider>,
    handle: Handle,
}

#[async_trait]
impl TableProvider for RuntimeBoundTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let _entered = self.handle.enter();
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        InRuntime {
            handle: self.handle.clone(),
            future: Box::pin(self.inner.scan(state, projection, filters, limit)),
        }
        .await
    }

    fn statistics(&self) -> Option<datafusion::common::Statistics> {
        self.inner.statistics()
    }
}

/// A remote table to register in a datafusion-python `SessionContext`.
#[pyclass(name = "Table", module = "ibarrow._internal", frozen)]
pub struct PyTable {
    provider: Arc<dyn TableProvider>,
    name: String,
}

impl PyTable {
    pub fn new(provider: Arc<dyn TableProvider>, name: String) -> Self {
        Self { provider, name }
    }
}

/// The host's logical codec from `session`: a context exposing the codec getter, or the
/// codec capsule itself (datafusion-python passes either).
fn host_codec(session: &Bound<'_, PyAny>) -> PyResult<FFI_LogicalExtensionCodec> {
    let capsule = if session.hasattr(CODEC_GETTER)? {
        session.call_method0(CODEC_GETTER)?
    } else {
        session.clone()
    };
    let capsule = capsule.cast::<PyCapsule>().map_err(|_| {
        error_of_kind(
            "Error",
            "__datafusion_table_provider__ needs the host's SessionContext or its logical \
             extension codec capsule; register the table with ctx.register_table(name, table)"
                .into(),
        )
    })?;
    let pointer = capsule.pointer_checked(Some(CODEC_CAPSULE))?;
    // SAFETY: the capsule's name says it holds an FFI_LogicalExtensionCodec, and the capsule
    // (so the codec) lives until this function returns; the codec is cloned through its own
    // FFI clone function.
    let codec = unsafe { pointer.cast::<FFI_LogicalExtensionCodec>().as_ref() };
    Ok(codec.clone())
}

/// Refuses a host DataFusion whose FFI layout differs from this build's: mixing them is
/// undefined behaviour (a crash at best), so nothing crosses before this check.
fn check_host_datafusion(py: Python<'_>) -> PyResult<()> {
    let wanted = datafusion_ffi::version();
    let installed: Option<String> = py
        .import("datafusion")
        .and_then(|module| module.getattr("__version__"))
        .and_then(|version| version.extract())
        .ok();
    let install = format!("pip install 'datafusion>={wanted},<{}'", wanted + 1);
    match installed {
        Some(version) if version.split('.').next() == Some(wanted.to_string().as_str()) => Ok(()),
        Some(version) => Err(error_of_kind(
            "Error",
            format!(
                "ibarrow tables speak the FFI of DataFusion {wanted}, but datafusion {version} \
                 is installed; install a matching one: {install}"
            ),
        )),
        None => Err(error_of_kind(
            "Error",
            format!("cannot tell which datafusion version is installed; {install}"),
        )),
    }
}

#[pymethods]
impl PyTable {
    /// The FFI capsule DataFusion's `register_table` asks for, after checking that the host's
    /// DataFusion has this build's FFI layout.
    #[pyo3(signature = (session=None))]
    fn __datafusion_table_provider__<'py>(
        &self,
        py: Python<'py>,
        session: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let Some(session) = session else {
            return Err(error_of_kind(
                "Error",
                "__datafusion_table_provider__ needs the host session; register the table with \
                 ctx.register_table(name, table) (datafusion 55)"
                    .into(),
            ));
        };
        check_host_datafusion(py)?;
        let codec = host_codec(&session)?;
        let handle = runtime()?.handle().clone();
        let provider = Arc::new(RuntimeBoundTable {
            inner: Arc::clone(&self.provider),
            handle: handle.clone(),
        });
        let ffi = FFI_TableProvider::new_with_ffi_codec(provider, true, Some(handle), codec);
        PyCapsule::new_with_value(py, ffi, PROVIDER_CAPSULE)
    }

    fn __repr__(&self) -> String {
        format!("ibarrow.Table({})", self.name)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
}

/// Connects to a database and returns one of its tables (`schema.table`; SQLite tables may
/// leave out `main`), ready for `SessionContext.register_table`. Filters and projections
/// are sent to the database.
#[pyfunction]
#[pyo3(signature = (connection_string, table, source_name="odbc"))]
pub fn odbc_table(
    py: Python<'_>,
    connection_string: &str,
    table: &str,
    source_name: &str,
) -> PyResult<PyTable> {
    let connection_string = connection_string.to_string();
    let wanted = table.to_string();
    let name = source_name.to_string();
    let provider = crate::runtime::wait_for_future(py, async move {
        let source = ibarrow::OdbcSource::connect(
            &name,
            &connection_string,
            ibarrow::SourceOptions::default(),
        )
        .await?;
        let (schema, table) = match wanted.split_once('.') {
            Some((schema, table)) => (schema.to_string(), table.to_string()),
            None if let Some(schema) = source.dialect().capabilities().single_schema() => {
                (schema.to_string(), wanted.clone())
            }
            None => {
                return Err(ibarrow::Error::Config {
                    location: "odbc_table".into(),
                    message: format!(
                        "`{wanted}` has no schema; write it as `schema.table` (for example \
                         `public.{wanted}`)"
                    ),
                });
            }
        };
        let table = source.table(&schema, &table).await?;
        Ok(table as Arc<dyn TableProvider>)
    })?
    .map_err(crate::errors::to_py)?;
    Ok(PyTable::new(provider, table.to_string()))
}
