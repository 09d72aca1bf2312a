//! The fetch thread's side of a scan: runs the statement on the call's connection and sends
//! its batches on, read column by column (`columnar.rs`) or packed (`packed.rs`).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::metrics::{Count, Time};
use ibarrow_sql::{Dialect, ScanStatement};
use odbc_api::handles::{AsStatementRef, Statement};

use super::columnar::{ColumnarBatches, check_silent_truncation, fetch_schema, output_batch};
use super::dynamic_filters::{SentConditions, record_sent};
use super::packed::{PackedBatches, PackedLayout};
use super::stream::BatchSender;
use crate::call::CallContext;
use crate::error::OdbcError;
use crate::pool::ConnectionPool;
use crate::source::ScanOptions;
use crate::type_map::ColumnFetch;

/// Up to this many estimated rows, a result may be read whole ([`crate::OdbcExec::read_whole_when_small`]).
pub const SMALL_RESULT_ROWS: u64 = 100_000;

/// The bytes of the buffers a statement's fetch binds for `fetch` (packed into one text value
/// per row with `packed`), at most: the query's memory pool is charged this much before the
/// statement runs, since the driver fills them outside any reservation. Mirrors arrow-odbc's
/// and `packed.rs`'s sizing: a value buffer and an 8-byte length indicator per column, for as
/// many rows as `batch_rows` and `max_bytes_per_batch` allow.
pub(super) fn fetch_buffer_bytes(
    fetch: &[ColumnFetch],
    packed: Option<&PackedLayout>,
    options: &ScanOptions,
) -> usize {
    const INDICATOR: usize = std::mem::size_of::<isize>();
    // The bytes per row that decide the rows per batch, and those the buffers take.
    let (sized_by, row_bytes) = match packed {
        Some(layout) => (layout.row_bytes() + 1, layout.row_bytes() + 1 + INDICATOR),
        None => {
            let bytes = fetch
                .iter()
                .map(|column| value_buffer_bytes(column, options) + INDICATOR)
                .sum();
            (bytes, bytes)
        }
    };
    let rows = (options.max_bytes_per_batch / sized_by.max(1)).clamp(1, options.batch_rows.max(1));
    rows.saturating_mul(row_bytes)
}

/// One value's buffer for a column read column by column (arrow-odbc binds text and binary
/// with a terminating zero, numbers and dates as their C structs).
fn value_buffer_bytes(column: &ColumnFetch, options: &ScanOptions) -> usize {
    use datafusion::arrow::datatypes::DataType;
    match &column.fetch_type {
        DataType::Boolean | DataType::Int8 | DataType::UInt8 => 1,
        DataType::Int16 | DataType::UInt16 => 2,
        DataType::Int32 | DataType::UInt32 | DataType::Float32 | DataType::Float16 => 4,
        DataType::Int64 | DataType::UInt64 | DataType::Float64 => 8,
        // SQL_DATE_STRUCT, SQL_TIME_STRUCT; SQL_TIMESTAMP_STRUCT.
        DataType::Date32 | DataType::Date64 | DataType::Time32(_) => 6,
        DataType::Timestamp(_, _) | DataType::Time64(_) => 16,
        // Decimals arrive as text: sign, digits, point.
        DataType::Decimal128(precision, _) | DataType::Decimal256(precision, _) => {
            usize::from(*precision) + 3
        }
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            options.max_binary_size
        }
        _ => {
            let declared = column
                .max_text_bytes
                .or(column.declared_text_bytes)
                .map_or(options.max_text_size, |bytes| {
                    bytes.min(options.max_text_size)
                });
            declared + 1
        }
    }
}

/// What the fetch thread needs, detached from the plan.
pub(super) struct RemoteScan {
    /// Whether a batch went to the query already (then a retry could double rows).
    pub delivered: std::cell::Cell<bool>,
    /// With a run-time filter in the statement: where to record that it was dropped. A key
    /// the column's type cannot hold (text that is no valid UUID or enum label) makes the
    /// database refuse the statement, though such a key matches nothing.
    pub runtime_filter_record: Option<(SentConditions, usize)>,
    /// See [`crate::OdbcExec::read_whole_when_small`].
    pub read_whole_when_small: bool,
    /// The database's estimate of this statement's rows made while planning (one-statement
    /// scans only), so deciding `read_whole` needs no second EXPLAIN unless a run-time filter
    /// changed the statement.
    pub planned_rows: Option<usize>,
    /// Statements read whole after the estimate (EXPLAIN ANALYZE's `read_whole`).
    pub read_whole: Count,

    /// Time spent executing and fetching in the driver (and converting to Arrow).
    pub remote_time: Time,
    pub dialect: Dialect,
    /// The statement, in parts until it is sent (the run-time filter can be dropped again).
    pub statement: ScanStatement,
    pub schema: SchemaRef,
    pub fetch: Vec<ColumnFetch>,
    /// Rows come packed into one text value each; `None`: column by column.
    pub packed: Option<PackedLayout>,
    pub options: ScanOptions,
}

impl RemoteScan {
    /// One run of the scan's call. A statement refused with a run-time filter runs once more
    /// without it, on the same connection; the call retries lost connections.
    pub(super) fn run(
        &mut self,
        call: &CallContext<'_>,
        sender: &BatchSender,
    ) -> Result<(), OdbcError> {
        loop {
            let err = match self.fetch(call, sender) {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            if self.delivered.get() || call.was_cancelled() || call.is_discarded() {
                return Err(err);
            }
            let Some((sent, partition)) = self.runtime_filter_record.take() else {
                return Err(err);
            };
            tracing::warn!(
                source = call.source_name(),
                error = %err,
                "the database refused a join's run-time filter; reading without it"
            );
            self.statement.set_runtime_condition(None);
            record_sent(&sent, partition, None);
        }
    }

    fn fetch(&self, call: &CallContext<'_>, sender: &BatchSender) -> Result<(), OdbcError> {
        let connection = call.connection();
        let mut statement = connection
            .preallocate()
            .map_err(|err| connection.failure("allocating a statement", err))?;
        if let Some(timeout) = self.options.query_timeout {
            // Honoured by psqlODBC: a second later than ibarrow's own deadline (which covers the
            // other drivers and silent servers), so the server still stops if a cancel is lost.
            let _ = statement.set_query_timeout_sec(timeout.as_secs() as usize + 1);
        }
        call.publish(statement.as_stmt_ref().as_sys());
        let result = self.fetch_on(call, &mut statement, sender);
        call.unpublish();
        drop(statement);
        result
    }

    fn fetch_on(
        &self,
        call: &CallContext<'_>,
        statement: &mut odbc_api::Preallocated<odbc_api::handles::StatementImpl<'_>>,
        sender: &BatchSender,
    ) -> Result<(), OdbcError> {
        let pool = call.pool();
        let connection = call.connection();
        let started = std::time::Instant::now();
        let executing = self.remote_time.timer();
        let mut sql = self.statement.render();
        if self.read_whole_when_small && self.estimated_small(statement) {
            self.read_whole.add(1);
            // psqlODBC declares a cursor only for statements that start with SELECT or WITH.
            sql = format!("/* ibarrow: small result */ {sql}");
        }
        if call.was_cancelled() {
            return Err(OdbcError::Odbc {
                source_name: pool.source_name().to_string(),
                context: format!("running `{sql}`"),
                message: "cancelled before it started".into(),
            });
        }
        let executed = statement.execute(&sql, ());
        executing.done();
        let cursor = match executed {
            Ok(Some(cursor)) => cursor,
            Ok(None) => {
                return Err(OdbcError::Odbc {
                    source_name: pool.source_name().to_string(),
                    context: format!("running `{sql}`"),
                    message: "the statement returned no result set".into(),
                });
            }
            Err(err) => {
                let context = format!("running `{sql}`");
                return Err(connection.failure(&context, err));
            }
        };
        let fetch_schema = fetch_schema(&self.schema, &self.fetch);
        let mut batches = match &self.packed {
            Some(layout) => Batches::Packed(PackedBatches::new(
                cursor,
                layout,
                &fetch_schema,
                pool,
                &sql,
                &self.options,
            )?),
            None => Batches::Columnar(ColumnarBatches::new(
                cursor,
                &fetch_schema,
                pool,
                &sql,
                self.dialect,
                &self.options,
            )?),
        };
        let result = self.read_rows(call, sender, || batches.next_batch());
        // No cancel can start once the statement is unpublished, so `was_cancelled` is final.
        call.unpublish();
        batches.close(call.was_cancelled() || result.is_err());
        self.finished(pool, result, started)
    }

    fn finished(
        &self,
        pool: &ConnectionPool,
        result: Result<usize, OdbcError>,
        started: std::time::Instant,
    ) -> Result<(), OdbcError> {
        if let Ok(rows) = result {
            tracing::debug!(
                source = pool.source_name(),
                rows,
                packed = self.packed.is_some(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "scan finished"
            );
        }
        result.map(|_| ())
    }

    /// Whether PostgreSQL expects the statement to return at most [`SMALL_RESULT_ROWS`] rows:
    /// the planning estimate when the statement is still the planned one, else asked on the
    /// scan's statement handle, so the deadline's cancel covers it. Any failure just means no.
    fn estimated_small(
        &self,
        statement: &mut odbc_api::Preallocated<odbc_api::handles::StatementImpl<'_>>,
    ) -> bool {
        use odbc_api::Cursor;
        if let (Some(rows), None) = (self.planned_rows, self.statement.runtime_condition()) {
            return rows as u64 <= SMALL_RESULT_ROWS;
        }
        let explain = crate::discovery::explain_statement(&self.statement.render_unpacked());
        let Ok(Some(mut cursor)) = statement.execute(&explain, ()) else {
            return false;
        };
        let mut plan = Vec::new();
        let read = match cursor.next_row() {
            Ok(Some(mut row)) => row.get_text(1, &mut plan).unwrap_or(false),
            _ => false,
        };
        drop(cursor);
        read && crate::discovery::estimated_rows(&String::from_utf8_lossy(&plan))
            .is_some_and(|rows| rows <= SMALL_RESULT_ROWS)
    }

    /// Fetches every batch (or until the consumer goes away) and sends it on; the row count.
    fn read_rows(
        &self,
        call: &CallContext<'_>,
        sender: &BatchSender,
        mut next_batch: impl FnMut() -> Option<Result<RecordBatch, OdbcError>>,
    ) -> Result<usize, OdbcError> {
        let pool = call.pool();
        let mut rows = 0usize;
        loop {
            let fetching = self.remote_time.timer();
            let next = next_batch();
            fetching.done();
            let Some(batch) = next else { break };
            let batch = batch?;
            check_silent_truncation(self.dialect, &self.options, pool, &batch)?;
            rows += batch.num_rows();
            let batch =
                output_batch(&self.schema, &self.fetch, batch).map_err(|err| OdbcError::Odbc {
                    source_name: pool.source_name().to_string(),
                    context: "converting fetched values".into(),
                    message: err.to_string(),
                })?;
            self.delivered.set(true);
            call.produced();
            if sender.blocking_send(Ok(batch)).is_err() {
                // The query no longer wants rows: stop fetching; the cursor is closed next.
                tracing::debug!(
                    source = pool.source_name(),
                    rows,
                    "scan stopped by consumer"
                );
                break;
            }
        }
        Ok(rows)
    }
}

/// A cursor's batches, read one of the two ways.
enum Batches<'a, S: AsStatementRef + Statement> {
    Columnar(ColumnarBatches<'a, S>),
    Packed(PackedBatches<'a, S>),
}

impl<S: AsStatementRef + Statement> Batches<'_, S> {
    fn next_batch(&mut self) -> Option<Result<RecordBatch, OdbcError>> {
        match self {
            Batches::Columnar(batches) => batches.next_batch(),
            Batches::Packed(batches) => batches.next_batch(),
        }
    }

    /// Closes the cursor; `troubled` after a cancel or a failure (see `columnar.rs`).
    fn close(self, troubled: bool) {
        match self {
            Batches::Columnar(batches) => batches.close(troubled),
            Batches::Packed(batches) => batches.close(troubled),
        }
    }
}
