//! `INSERT INTO` a table of a writable source: the rows DataFusion computes are sent as array
//! parameters of one prepared `INSERT`, all in one transaction — committed when the last row
//! is in, rolled back on any error or when the query is dropped before its last row was
//! sent, so a failed insert leaves nothing behind. A connection whose transaction could not
//! be ended cleanly is closed, never pooled (closing it rolls back).

use std::fmt;
use std::sync::Arc;

use arrow_odbc::OdbcWriter;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::sink::DataSink;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::call::{CallContext, CallSpec};
use crate::error::OdbcError;
use crate::pool::PooledConnection;
use crate::source::OdbcSource;

/// Rows per round trip of the array-bound `INSERT`.
const ROWS_PER_ROUND_TRIP: usize = 1000;

enum Message {
    Rows(RecordBatch),
    /// Every row was sent: commit.
    End,
}

/// Writes into one remote table (see the module docs).
#[derive(Debug)]
pub struct OdbcSink {
    source: Arc<OdbcSource>,
    /// The prepared statement, `INSERT INTO t (…) VALUES (?, …)`.
    statement: String,
    schema: SchemaRef,
    metrics: ExecutionPlanMetricsSet,
}

impl OdbcSink {
    pub(crate) fn new(source: Arc<OdbcSource>, statement: String, schema: SchemaRef) -> Self {
        Self {
            source,
            statement,
            schema,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The source written to.
    pub fn source(&self) -> &Arc<OdbcSource> {
        &self.source
    }

    /// The statement the rows are bound to.
    pub fn statement(&self) -> &str {
        &self.statement
    }
}

impl DisplayAs for OdbcSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "OdbcInsert: source={} sql={}",
            self.source.name(),
            self.statement
        )
    }
}

#[async_trait]
impl DataSink for OdbcSink {
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let statement = self.statement.clone();
        let schema = Arc::clone(&self.schema);
        let (sender, receiver) = mpsc::channel(2);
        let mut receiver = Some(receiver);
        let spec = CallSpec::new(&self.source, "inserting rows")
            .statement(self.statement.clone())
            .write();
        let writer = self.source.call(spec, move |call| match receiver.take() {
            Some(receiver) => write_in_transaction(call, &statement, &schema, receiver),
            None => Err(OdbcError::Task {
                source_name: call.source_name().to_string(),
                message: "an insert is never run twice".into(),
            }),
        });
        let written_rows = MetricBuilder::new(&self.metrics).output_rows(0);
        // Rows go to the writer until the input ends (then `End`: commit) or fails (the
        // sender is dropped without `End`: roll back); a writer that fails or passes its
        // deadline first ends the feeding at once.
        let feed = async move {
            while let Some(batch) = data.next().await {
                let batch = batch?;
                written_rows.add(batch.num_rows());
                // A closed channel means the writer failed: its error is reported.
                if sender.send(Message::Rows(batch)).await.is_err() {
                    return Ok(());
                }
            }
            let _ = sender.send(Message::End).await;
            Ok::<(), datafusion::error::DataFusionError>(())
        };
        tokio::pin!(writer);
        tokio::select! {
            biased;
            written = &mut writer => Ok(written?),
            fed = feed => {
                let written = writer.await;
                fed?;
                Ok(written?)
            }
        }
    }
}

/// Runs on a blocking thread: binds, sends and commits, or rolls back.
fn write_in_transaction(
    call: &CallContext<'_>,
    statement: &str,
    schema: &SchemaRef,
    mut receiver: mpsc::Receiver<Message>,
) -> Result<u64, OdbcError> {
    let connection = call.connection();
    connection
        .set_autocommit(false)
        .map_err(|err| connection.failure("starting the insert's transaction", err))?;
    let mut outcome = send_rows(connection, statement, schema, &mut receiver);
    // A caller that gave up (its deadline passed) has been told the insert failed.
    if outcome.is_ok() && call.was_cancelled() {
        outcome = Err(OdbcError::Odbc {
            source_name: connection.source_name().to_string(),
            context: format!("inserting with `{statement}`"),
            message: "the insert was given up before its commit; nothing was inserted".into(),
        });
    }
    let ended = match &outcome {
        Ok(_) => connection
            .commit()
            .map_err(|err| connection.failure("committing the insert", err)),
        Err(_) => connection
            .rollback()
            .map_err(|err| connection.failure("rolling the insert back", err)),
    };
    // Turning autocommit back on commits an open transaction: only after a clean end. A
    // connection left otherwise must not serve the next query.
    if ended.is_err() || connection.set_autocommit(true).is_err() {
        connection.discard();
    }
    let rows = outcome?;
    ended?;
    Ok(rows)
}

/// `batch` with the table's column types: the writer binds buffers of those types, and a
/// plan may deliver another width (an INSERT whose values came as 64-bit parameters).
fn with_table_types(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let same = batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(have, want)| have.data_type() == want.data_type());
    if same {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            datafusion::arrow::compute::cast(column, field.data_type()).map_err(|err| {
                format!(
                    "column `{}` takes {}, and a value cannot be converted to it: {err}",
                    field.name(),
                    field.data_type()
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|err| err.to_string())
}

fn send_rows(
    connection: &PooledConnection,
    statement: &str,
    schema: &SchemaRef,
    receiver: &mut mpsc::Receiver<Message>,
) -> Result<u64, OdbcError> {
    let context = format!("inserting with `{statement}`");
    let prepared = connection
        .prepare(statement)
        .map_err(|err| connection.failure(&context, err))?;
    let writer_error = |err: arrow_odbc::WriterError| {
        // The driver's own error (constraint violation, lost connection) decides the kind.
        match err {
            arrow_odbc::WriterError::ExecuteStatment(odbc)
            | arrow_odbc::WriterError::BindParameterBuffers(odbc)
            | arrow_odbc::WriterError::RebindBuffer(odbc) => connection.failure(&context, odbc),
            other => OdbcError::Odbc {
                source_name: connection.source_name().to_string(),
                context: context.clone(),
                message: other.to_string(),
            },
        }
    };
    let mut writer =
        OdbcWriter::new(ROWS_PER_ROUND_TRIP, schema, prepared).map_err(writer_error)?;
    let mut rows = 0u64;
    loop {
        match receiver.blocking_recv() {
            Some(Message::Rows(batch)) => {
                let batch = with_table_types(batch, schema).map_err(|message| OdbcError::Odbc {
                    source_name: connection.source_name().to_string(),
                    context: context.clone(),
                    message,
                })?;
                writer.write_batch(&batch).map_err(writer_error)?;
                rows += batch.num_rows() as u64;
            }
            Some(Message::End) => {
                writer.flush().map_err(writer_error)?;
                return Ok(rows);
            }
            None => {
                return Err(OdbcError::Odbc {
                    source_name: connection.source_name().to_string(),
                    context,
                    message: "the query ended before every row was sent; nothing was inserted"
                        .into(),
                });
            }
        }
    }
}
