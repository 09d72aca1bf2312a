//! Query results handed to Python as Arrow through the C stream and C data interfaces: no
//! copies, and no pyarrow needed on the Rust side.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchReader, StructArray};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow::ffi_stream::FFI_ArrowArrayStream;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::errors::{error_of_kind, to_py};
use crate::runtime::{runtime, wait_for_future};

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

    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
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

/// A query's stream read by a consumer that pulls batches itself (pyarrow, polars): each pull
/// waits on the runtime. Used where the consumer, not ibarrow, drives the reading.
struct BlockingReader {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
}

impl Iterator for BlockingReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let runtime = runtime().ok()?;
        runtime
            .block_on(self.stream.next())
            .map(|batch| batch.map_err(|err| ArrowError::ExternalError(Box::new(err))))
    }
}

impl RecordBatchReader for BlockingReader {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// A planned query that has not run yet. Each way of reading it runs it (again).
#[pyclass(name = "QueryResult", module = "ibarrow._internal", frozen)]
pub struct PyQueryResult {
    frame: DataFrame,
}

impl PyQueryResult {
    pub fn new(frame: DataFrame) -> Self {
        Self { frame }
    }
}

#[pymethods]
impl PyQueryResult {
    /// Streams the result batch by batch to the consumer (`pa.RecordBatchReader.from_stream`,
    /// `pa.table`, `pl.DataFrame`).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let frame = self.frame.clone();
        let stream = wait_for_future(py, frame.execute_stream())?.map_err(to_py)?;
        let reader = BlockingReader {
            schema: stream.schema(),
            stream,
        };
        stream_capsule(py, Box::new(reader))
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema: SchemaRef = Arc::new(self.frame.schema().as_arrow().clone());
        schema_capsule(py, &schema)
    }

    /// Runs the query to the end with the GIL released (Ctrl-C cancels it).
    fn collect(&self, py: Python<'_>) -> PyResult<PyArrowBatches> {
        let frame = self.frame.clone();
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = wait_for_future(py, frame.collect())?.map_err(to_py)?;
        Ok(PyArrowBatches { schema, batches })
    }

    /// Starts the query for iteration batch by batch.
    fn execute(&self, py: Python<'_>) -> PyResult<PyBatchStream> {
        let frame = self.frame.clone();
        let stream = wait_for_future(py, frame.execute_stream())?.map_err(to_py)?;
        Ok(PyBatchStream {
            stream: std::sync::Mutex::new(Some(stream)),
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
}

#[pymethods]
impl PyBatchStream {
    /// `(schema capsule, array capsule)` of the next batch, or `None` at the end.
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let mut guard = self
            .stream
            .lock()
            .map_err(|_| error_of_kind("Error", "the result stream was poisoned".into()))?;
        let Some(stream) = guard.as_mut() else {
            return Ok(None);
        };
        let next = wait_for_future(py, stream.next());
        let batch = match next {
            Ok(Some(Ok(batch))) => batch,
            Ok(Some(Err(err))) => {
                *guard = None;
                return Err(to_py(err));
            }
            Ok(None) => {
                *guard = None;
                return Ok(None);
            }
            Err(interrupted) => {
                // Dropping the stream cancels the remote statements.
                *guard = None;
                return Err(interrupted);
            }
        };
        batch_capsules(py, batch).map(Some)
    }

    /// Stops the query and frees its connections.
    fn close(&self) {
        if let Ok(mut guard) = self.stream.lock() {
            *guard = None;
        }
    }
}
