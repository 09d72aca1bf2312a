//! Opens one partition of a scan: nothing happens until its stream is first polled; then it
//! waits for the hash joins' filters (outside the deadline), adds the run-time filters as they
//! stand to its statement and runs it as a call of the source (`providers/src/call.rs`).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use ibarrow_sql::{FilterColumn, ScanStatement};
use tokio::sync::mpsc;

use super::dynamic_filters::{
    SentConditions, record_sent, runtime_condition, wait_for_join_filters,
};
use super::fetch::{RemoteScan, fetch_buffer_bytes};
use super::packed::PackedLayout;
use super::stream::batches_of_call;
use crate::call::CallSpec;
use crate::source::OdbcSource;
use crate::type_map::ColumnFetch;

/// What one partition of a scan needs from its plan node.
pub(super) struct PartitionScan {
    pub source: Arc<OdbcSource>,
    pub statement: ScanStatement,
    pub schema: SchemaRef,
    pub fetch: Vec<ColumnFetch>,
    /// The columns run-time filters may name (empty: the statement cannot be wrapped).
    pub filter_columns: Vec<FilterColumn>,
    pub runtime_filters: Vec<Arc<dyn PhysicalExpr>>,
    /// Those of `runtime_filters` that hash joins produce: waited for before the statement.
    pub join_filters: Vec<Arc<dyn PhysicalExpr>>,
    pub sent: SentConditions,
    pub read_whole_when_small: bool,
    pub planned_rows: Option<usize>,
    /// The most rows the statement can return (`OdbcExec::with_max_rows`).
    pub max_rows: Option<usize>,
    pub packed: Option<PackedLayout>,
    /// Run on the source's primary alone (`OdbcExec::on_primary`).
    pub on_primary: bool,
    /// Where the endpoint that ran the statement is noted, by partition.
    pub ran_on: super::plan::EndpointsUsed,
}

impl PartitionScan {
    pub(super) fn open(
        self,
        partition: usize,
        metrics: &ExecutionPlanMetricsSet,
        context: Arc<TaskContext>,
    ) -> SendableRecordBatchStream {
        let Self {
            source,
            statement,
            schema,
            fetch,
            filter_columns,
            runtime_filters,
            join_filters,
            sent,
            read_whole_when_small,
            planned_rows,
            max_rows,
            packed,
            on_primary,
            ran_on,
        } = self;
        let mut options = source.options().scan.clone();
        if let Some(rows) = max_rows {
            options.batch_rows = options.batch_rows.min(rows.max(1));
        }
        let fetch_buffers = fetch_buffer_bytes(&fetch, packed.as_ref(), &options);
        let mut scan = RemoteScan {
            dialect: source.dialect(),
            statement,
            schema: Arc::clone(&schema),
            fetch,
            options,
            remote_time: MetricBuilder::new(metrics).subset_time("remote_time", partition),
            read_whole: MetricBuilder::new(metrics).counter("read_whole", partition),
            delivered: std::cell::Cell::new(false),
            runtime_filter_record: None,
            read_whole_when_small,
            planned_rows,
            packed,
        };
        // The scan holds its fetch buffers and up to `prefetch_batches` batches in the channel:
        // reserved in the query's memory pool, the buffers before they are allocated, the
        // batches as their sizes are seen.
        let queued_batches = scan.options.prefetch_batches.max(1);
        let output_rows = MetricBuilder::new(metrics).output_rows(partition);
        let output_bytes = MetricBuilder::new(metrics).output_bytes(partition);
        let reservation = Arc::new(
            MemoryConsumer::new(format!("OdbcExec[{}] partition {partition}", source.name()))
                .register(context.memory_pool()),
        );
        let charge_buffers = Arc::clone(&reservation);
        // The statement's deadline counts from the first poll.
        let batches = futures::stream::once(async move {
            // Under a memory limit a scan whose buffers do not fit fails here, before its
            // statement runs; the pool's error names the limit and this scan.
            charge_buffers.try_grow(fetch_buffers)?;
            // The filters as they stand now (see the module notes of `scan`).
            let condition = runtime_condition(source.dialect(), &filter_columns, &runtime_filters);
            if condition.is_some() {
                scan.runtime_filter_record = Some((Arc::clone(&sent), partition));
            }
            if !runtime_filters.is_empty() {
                record_sent(&sent, partition, condition.clone());
            }
            scan.statement.set_runtime_condition(condition);
            let mut spec = CallSpec::new(&source, "a scan").statement(scan.statement.render());
            // A native statement that may write: on the primary, and never run twice.
            if on_primary {
                spec = spec.write();
            }
            let (sender, receiver) = mpsc::channel(scan.options.prefetch_batches.max(1));
            let call = async move {
                source
                    .call(spec, move |call| {
                        if let Ok(mut ran_on) = ran_on.lock() {
                            ran_on.insert(partition, call.endpoint().to_string());
                        }
                        scan.run(call, &sender)
                    })
                    .await
            };
            Ok::<_, DataFusionError>(batches_of_call(receiver, call))
        })
        .try_flatten();
        // What EXPLAIN ANALYZE reports per remote scan: rows, Arrow bytes, time in the driver.
        // The batches held are reserved fallibly: under a memory limit a scan whose batches do
        // not fit fails (the pool's error names the limit) instead of exceeding it.
        let batches = batches
            .and_then(move |batch| {
                output_rows.add(batch.num_rows());
                let bytes = batch.get_array_memory_size();
                output_bytes.add(bytes);
                let held = fetch_buffers + bytes * queued_batches;
                let held = if held > reservation.size() {
                    reservation.try_resize(held)
                } else {
                    Ok(())
                };
                futures::future::ready(held.map(|()| batch))
            })
            .boxed();
        // Waiting for the joins' filters comes first, outside the statement's deadline.
        let batches = if join_filters.is_empty() {
            batches
        } else {
            let filter_wait =
                MetricBuilder::new(metrics).subset_time("runtime_filter_wait", partition);
            futures::stream::once(async move {
                let timer = filter_wait.timer();
                wait_for_join_filters(&join_filters).await;
                timer.done();
                batches
            })
            .flatten()
            .boxed()
        };
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}
