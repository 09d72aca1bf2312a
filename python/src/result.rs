//! Query results handed to Python as Arrow through the C stream and C data interfaces: no
//! copies, and no pyarrow needed on the Rust side.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchReader, StructArray};
use arrow::datatypes::SchemaRef;
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow::ffi_stream::FFI_ArrowArrayStream;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, TryStreamExt};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::errors::{error_of_kind, to_py};
use crate::runtime::wait_for_future;

const STREAM_CAPSULE: &std::ffi::CStr = c"arrow_array_stream";
const SCHEMA_CAPSULE: &std::ffi::CStr = c"arrow_schema";
const ARRAY_CAPSULE: &std::ffi::CStr = c"arrow_array";

pub fn stream_capsule<'py>(
    py: Python<'py>,
    reader: Box<dyn RecordBatchReader + Send>,
) -> PyResult<Bound<'py, PyCapsule>> {
    PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(reader), STREAM_CAPSULE)
}

pub fn schema_capsule<'py>(py: Python<'py>, schema: &SchemaRef) -> PyResult<Bound<'py, PyCapsule>> {
    let ffi = FFI_ArrowSchema::try_from(schema.as_ref())
        .map_err(|err| error_of_kind("ArrowError", err.to_string()))?;
    PyCapsule::new_with_value(py, ffi, SCHEMA_CAPSULE)
}

/// `(schema capsule, array capsule)` of one batch as a struct array (`__arrow_c_array__`).
pub fn batch_capsules<'py>(py: Python<'py>, batch: RecordBatch) -> PyResult<Bound<'py, PyTuple>> {
    let data = StructArray::from(batch).into();
    let array = FFI_ArrowArray::new(&data);
    let schema = FFI_ArrowSchema::try_from(data.data_type())
        .map_err(|err| error_of_kind("ArrowError", err.to_string()))?;
    let schema = PyCapsule::new_with_value(py, schema, SCHEMA_CAPSULE)?;
    let array = PyCapsule::new_with_value(py, array, ARRAY_CAPSULE)?;
    PyTuple::new(py, [schema.into_any(), array.into_any()])
}

/// Batches already in memory, readable once more through `__arrow_c_stream__`.
#[pyclass(name = "ArrowBatches", module = "ibarrow._internal", frozen)]
pub struct PyArrowBatches {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl PyArrowBatches {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self { schema, batches }
    }
}

#[pymethods]
impl PyArrowBatches {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // The protocol lets a producer ignore the requested schema; the consumer casts.
        let _ = requested_schema;
        let reader = arrow::record_batch::RecordBatchIterator::new(
            self.batches.clone().into_iter().map(Ok),
            Arc::clone(&self.schema),
        );
        stream_capsule(py, Box::new(reader))
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        schema_capsule(py, &self.schema)
    }

    fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A planned query that has not run yet. Each way of reading it runs it (again).
#[pyclass(name = "QueryResult", module = "ibarrow._internal", frozen)]
pub struct PyQueryResult {
    frame: DataFrame,
    /// Runs go through the session, so the engine's monitor sees them.
    session: ibarrow::Session,
    sql: String,
}

impl PyQueryResult {
    pub fn new(frame: DataFrame, session: ibarrow::Session, sql: String) -> Self {
        Self {
            frame,
            session,
            sql,
        }
    }
}

#[pymethods]
impl PyQueryResult {
    /// Runs the query to the end (GIL released, Ctrl-C cancels, errors raised as ibarrow's
    /// exceptions) and hands the batches to the consumer (`pa.table`, `pl.DataFrame`)
    /// without copying them. Iterate the result to stream it batch by batch instead.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        self.collect(py)?.__arrow_c_stream__(py, requested_schema)
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema: SchemaRef = Arc::new(self.frame.schema().as_arrow().clone());
        schema_capsule(py, &schema)
    }

    /// Runs the query to the end with the GIL released (Ctrl-C cancels it).
    fn collect(&self, py: Python<'_>) -> PyResult<PyArrowBatches> {
        let frame = self.frame.clone();
        let planned: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let (session, sql) = (&self.session, self.sql.as_str());
        let batches = wait_for_future(py, async move {
            let stream = session.execute(frame, sql).await?;
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            Ok::<_, ibarrow::Error>(batches)
        })?
        .map_err(to_py)?;
        // The batches' own schema is what the consumer must see (the planned one can differ
        // in nullability or metadata).
        let schema = batches.first().map_or(planned, RecordBatch::schema);
        Ok(PyArrowBatches { schema, batches })
    }

    /// Starts the query for iteration batch by batch.
    fn execute(&self, py: Python<'_>) -> PyResult<PyBatchStream> {
        let frame = self.frame.clone();
        let stream = wait_for_future(py, self.session.execute(frame, &self.sql))?.map_err(to_py)?;
        Ok(PyBatchStream {
            stream: std::sync::Mutex::new(Some(stream)),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The plan as text: `EXPLAIN` (with `analyze`, `EXPLAIN ANALYZE`, which runs the query).
    #[pyo3(signature = (verbose=false, analyze=false))]
    fn explain(&self, py: Python<'_>, verbose: bool, analyze: bool) -> PyResult<String> {
        let frame = self.frame.clone();
        let batches = wait_for_future(py, async move {
            frame.explain(verbose, analyze)?.collect().await
        })?
        .map_err(to_py)?;
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .map_err(|err| error_of_kind("ArrowError", err.to_string()))?;
        Ok(text.to_string())
    }
}

/// A running query read batch by batch from Python; each batch is exported through the C
/// data interface (`pa.RecordBatch._import_from_c_capsule`).
#[pyclass(name = "BatchStream", module = "ibarrow._internal", frozen)]
pub struct PyBatchStream {
    stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
    closed: std::sync::atomic::AtomicBool,
}

#[pymethods]
impl PyBatchStream {
    /// `(schema capsule, array capsule)` of the next batch, or `None` at the end.
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        // The stream leaves the mutex while it is awaited (the GIL is released then), so
        // another thread calling `close` never waits on a lock held across the query.
        let taken = self.stream.lock().ok().and_then(|mut slot| slot.take());
        let Some(mut stream) = taken else {
            return Ok(None);
        };
        let next = wait_for_future(py, stream.next());
        let batch = match next {
            Ok(Some(Ok(batch))) => batch,
            Ok(Some(Err(err))) => return Err(to_py(err)),
            Ok(None) => return Ok(None),
            // Dropping the stream cancels the remote statements.
            Err(interrupted) => return Err(interrupted),
        };
        if !self.closed.load(std::sync::atomic::Ordering::SeqCst)
            && let Ok(mut slot) = self.stream.lock()
        {
            *slot = Some(stream);
        }
        batch_capsules(py, batch).map(Some)
    }

    /// Stops the query and frees its connections.
    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut guard) = self.stream.lock() {
            *guard = None;
        }
    }
}
