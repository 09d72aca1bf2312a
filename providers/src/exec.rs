//! [`OdbcExec`]: runs one remote `SELECT` and streams its rows as Arrow batches.
//!
//! The fetch loop runs on a blocking thread (ODBC calls block) and hands batches to the query
//! through a bounded channel, so memory stays at a few batches whatever the result size. When
//! the consumer drops the stream, the next send fails, the loop ends, the cursor closes and
//! the connection goes back to the pool.
//!
//! A scan on the probe side of a hash join takes the join's run-time filter (the build side's
//! key range and, for few keys, the key list) and sends it with its statement when it starts:
//! rows that cannot match stay in the database. A join reads its build side before it polls
//! this side, so the filter is usually final by then. Operators in between may start the scan
//! earlier: it then waits (bounded) for filters [`crate::AwaitJoinFilters`] marked as coming
//! from hash joins, and sends what the others say at that moment (at first, nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow_odbc::OdbcReaderBuilder;
use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatchOptions, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::DynamicFilterTracking;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::snapshot_physical_expr;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use odbc_api::buffers::TextRowSet;
use odbc_api::handles::{AsStatementRef, Statement};

use crate::call::{CallContext, CallSpec};
use crate::error::OdbcError;
use crate::packed_rows::PackedLayout;
use crate::pool::ConnectionPool;
use crate::source::{OdbcSource, ScanOptions};
use crate::type_map::ColumnFetch;
use ibarrow_sql::{
    Dialect, FilterColumn, filtered_statement, packed_row_statement, packed_rows_proven,
    render_runtime_filter, runtime_filters_proven,
};

/// A scan of a remote table: one statement per partition.
#[derive(Debug)]
pub struct OdbcExec {
    source: Arc<OdbcSource>,
    statements: Vec<String>,
    schema: SchemaRef,
    fetch: Vec<ColumnFetch>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Whether the statements are SELECTs ibarrow built, which may be wrapped (with a
    /// run-time filter, or to pack rows).
    built_by_ibarrow: bool,
    /// Read each result whole rather than through psqlODBC's cursor when PostgreSQL expects
    /// it to be small.
    read_whole: bool,
    /// Dynamic filters from joins above (see the module notes), over this scan's columns.
    runtime_filters: Vec<Arc<dyn PhysicalExpr>>,
    /// The dynamic filters inside `runtime_filters` that hash joins produce: the scan waits
    /// for them to be complete before it sends its statement.
    join_filters: Vec<Arc<dyn PhysicalExpr>>,
    /// What each started partition sent of them (`None`: nothing), for EXPLAIN ANALYZE.
    sent: SentConditions,
    /// The database's estimate of the rows all statements return, for DataFusion's choice of
    /// hash-join build sides ([`Self::with_row_estimate`]).
    row_estimate: Option<usize>,
}

/// Per partition, the run-time condition its statement carried.
type SentConditions = Arc<Mutex<BTreeMap<usize, Option<String>>>>;

fn record_sent(sent: &SentConditions, partition: usize, condition: Option<String>) {
    if let Ok(mut sent) = sent.lock() {
        sent.insert(partition, condition);
    }
}

impl OdbcExec {
    /// `schema` is what the plan yields; `fetch` how each of its columns is read.
    pub fn new(
        source: Arc<OdbcSource>,
        statements: Vec<String>,
        schema: SchemaRef,
        fetch: Vec<ColumnFetch>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(statements.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            source,
            statements,
            schema,
            fetch,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            built_by_ibarrow: false,
            read_whole: false,
            runtime_filters: Vec::new(),
            join_filters: Vec::new(),
            sent: SentConditions::default(),
            row_estimate: None,
        }
    }

    /// The same scan, not yet run.
    fn unrun_copy(&self) -> Self {
        let mut copy = OdbcExec::new(
            Arc::clone(&self.source),
            self.statements.clone(),
            Arc::clone(&self.schema),
            self.fetch.clone(),
        );
        copy.built_by_ibarrow = self.built_by_ibarrow;
        copy.read_whole = self.read_whole;
        copy.runtime_filters = self.runtime_filters.clone();
        copy.join_filters = self.join_filters.clone();
        copy.row_estimate = self.row_estimate;
        copy.properties = Arc::clone(&self.properties);
        copy
    }

    /// This scan waiting for its run-time filters whose expression ids are in `join_filters`
    /// (produced by hash joins), or `None` when it holds none of them.
    pub(crate) fn awaiting_join_filters(&self, join_filters: &BTreeSet<u64>) -> Option<Self> {
        let mut found: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        for filter in &self.runtime_filters {
            // Walking an expression tree without a fallible visitor cannot fail.
            let _ = filter.apply(|expr| {
                if expr.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()
                    && expr
                        .expression_id()
                        .is_some_and(|id| join_filters.contains(&id))
                {
                    found.push(Arc::clone(expr));
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        if found.is_empty() {
            return None;
        }
        let mut waiting = self.unrun_copy();
        waiting.join_filters = found;
        Some(waiting)
    }

    /// Reports `rows` (all partitions together, an estimate) as the scan's statistics: a hash
    /// join builds its table from the side with fewer rows, which without statistics is
    /// simply the side written first.
    pub fn with_row_estimate(mut self, rows: Option<usize>) -> Self {
        self.row_estimate = rows;
        self
    }

    /// Reads each result whole when PostgreSQL estimates it at most [`SMALL_RESULT_ROWS`]
    /// rows (asked with EXPLAIN on the scan's own connection, under its deadline): psqlODBC
    /// streams results through a cursor, and PostgreSQL runs a cursor's query without
    /// parallel workers (a pushed TPC-H Q1 takes 0.68 s so, 0.49 s read whole). Meant for
    /// statements whose answers are usually small, such as pushed aggregates.
    pub fn read_whole_when_small(mut self) -> Self {
        self.read_whole = self.source.dialect() == Dialect::PostgreSql;
        self
    }

    /// Marks the statements as SELECTs ibarrow built, which may be wrapped as derived tables:
    /// joins above may narrow them with run-time filters, and PostgreSQL rows may be packed.
    /// Never for a user's native statement, which may not be a SELECT one can wrap.
    pub fn built_by_ibarrow(mut self) -> Self {
        self.built_by_ibarrow = true;
        self
    }

    /// Whether the statements can be wrapped as derived tables whose columns are named by
    /// this scan's schema (repeated names could not be told apart).
    fn wrappable(&self) -> bool {
        let fields = self.schema.fields();
        let mut names: Vec<&String> = fields.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        self.built_by_ibarrow && names.len() == fields.len()
    }

    /// How rows are packed into one text value each (see [`crate::packed_rows`]), or `None`
    /// to fetch them column by column.
    fn packed_layout(&self) -> Option<PackedLayout> {
        if !self.source.options().packed_rows
            || !packed_rows_proven(self.source.dialect())
            || !self.wrappable()
        {
            return None;
        }
        PackedLayout::new(&self.fetch, self.source.options().scan.max_text_size)
    }

    /// The columns a run-time filter may name, by position; `None` when the statement's result
    /// cannot be wrapped.
    fn filter_columns(&self) -> Option<Vec<FilterColumn>> {
        if !self.source.options().runtime_filters
            || !runtime_filters_proven(self.source.dialect())
            || !self.wrappable()
        {
            return None;
        }
        let fields = self.schema.fields();
        Some(
            fields
                .iter()
                .zip(&self.fetch)
                .map(|(field, fetch)| FilterColumn {
                    name: field.name().clone(),
                    data_type: field.data_type().clone(),
                    stored_as_read: !fetch.read_as_text && !fetch.trim_trailing_blanks,
                })
                .collect(),
        )
    }

    /// The run-time conditions the partitions that ran have sent, each once, in partition
    /// order.
    pub fn runtime_conditions_sent(&self) -> Vec<String> {
        let Ok(sent) = self.sent.lock() else {
            return Vec::new();
        };
        let mut conditions: Vec<String> = Vec::new();
        for condition in sent.values().flatten() {
            if !conditions.contains(condition) {
                conditions.push(condition.clone());
            }
        }
        conditions
    }

    /// Whether any partition has started.
    fn has_run(&self) -> bool {
        self.sent.lock().is_ok_and(|sent| !sent.is_empty())
    }

    /// The statements sent to the database, one per partition.
    pub fn statements(&self) -> &[String] {
        &self.statements
    }

    pub fn source(&self) -> &Arc<OdbcSource> {
        &self.source
    }
}

/// How long a scan waits for the hash joins above it to complete their filters: a build side
/// slower than this lets the scan start with what the filters say then, as it would without
/// waiting.
const JOIN_FILTER_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until every filter in `join_filters` (dynamic filters produced by hash joins) is
/// complete, at most [`JOIN_FILTER_WAIT_LIMIT`].
async fn wait_for_join_filters(join_filters: &[Arc<dyn PhysicalExpr>]) {
    let complete = futures::future::join_all(
        join_filters
            .iter()
            .filter_map(|filter| filter.downcast_ref::<DynamicFilterPhysicalExpr>())
            .map(DynamicFilterPhysicalExpr::wait_complete),
    );
    if tokio::time::timeout(JOIN_FILTER_WAIT_LIMIT, complete)
        .await
        .is_err()
    {
        tracing::info!(
            "a remote scan waited {JOIN_FILTER_WAIT_LIMIT:?} for its join's run-time filter and \
             starts with the filter as it stands"
        );
    }
}

/// The run-time filters as they stand, as one SQL condition.
fn runtime_condition(
    dialect: Dialect,
    columns: &[FilterColumn],
    filters: &[Arc<dyn PhysicalExpr>],
) -> Option<String> {
    let conditions: Vec<String> = filters
        .iter()
        .filter_map(|filter| snapshot_physical_expr(Arc::clone(filter)).ok())
        .filter_map(|filter| render_runtime_filter(dialect, columns, &filter))
        .collect();
    (!conditions.is_empty()).then(|| conditions.join(" AND "))
}

impl DisplayAs for OdbcExec {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match format {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "OdbcExec: source={}, dialect={}, partitions={}, ",
                    self.source.name(),
                    self.source.dialect(),
                    self.statements.len()
                )?;
                if self.read_whole {
                    write!(f, "read_whole_below={SMALL_RESULT_ROWS}, ")?;
                }
                if self.packed_layout().is_some() {
                    write!(f, "rows=packed, ")?;
                }
                write!(f, "sql=")?;
                if let [single] = self.statements.as_slice() {
                    write!(f, "{single}")?;
                } else {
                    write!(f, "[{}]", self.statements.join("; "))?;
                }
                self.fmt_runtime_filter(f, ", ")
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "source={}", self.source.name())?;
                writeln!(f, "partitions={}", self.statements.len())?;
                if self.packed_layout().is_some() {
                    writeln!(f, "rows=packed")?;
                }
                write!(f, "sql={}", self.statements.join("; "))?;
                self.fmt_runtime_filter(f, "\n")
            }
        }
    }
}

impl OdbcExec {
    /// What the join's filter added to the statements: known once the scan has started (so
    /// EXPLAIN ANALYZE shows it, plain EXPLAIN says it is pending).
    fn fmt_runtime_filter(&self, f: &mut fmt::Formatter, separator: &str) -> fmt::Result {
        if self.runtime_filters.is_empty() {
            return Ok(());
        }
        if !self.has_run() {
            return write!(f, "{separator}runtime_filter=pending");
        }
        // Key lists run to thousands of values: the plan shows their start.
        const SHOWN: usize = 600;
        let sent = self.runtime_conditions_sent();
        match (!sent.is_empty()).then(|| sent.join(" | ")) {
            Some(condition) if condition.len() > SHOWN => {
                let mut end = SHOWN;
                while !condition.is_char_boundary(end) {
                    end -= 1;
                }
                write!(
                    f,
                    "{separator}runtime_filter={}… ({} characters)",
                    &condition[..end],
                    condition.len()
                )
            }
            Some(condition) => write!(f, "{separator}runtime_filter={condition}"),
            None => write!(f, "{separator}runtime_filter=none"),
        }
    }
}

impl ExecutionPlan for OdbcExec {
    fn name(&self) -> &'static str {
        "OdbcExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // A join computes its dynamic filter only when it finds a consumer here.
        for filter in &self.runtime_filters {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let filters: Vec<Arc<dyn PhysicalExpr>> = child_pushdown_result
            .parent_filters
            .into_iter()
            .map(|result| result.filter)
            .collect();
        // The scan narrows its rows but does not promise to apply a filter exactly: whatever
        // needs the filter keeps evaluating it.
        let mut propagation = FilterPushdownPropagation::with_parent_pushdown_result(vec![
                PushedDown::No;
                filters.len()
            ]);
        let dynamic: Vec<_> = filters
            .into_iter()
            .filter(|filter| DynamicFilterTracking::classify(filter).contains_dynamic_filter())
            .collect();
        if phase == FilterPushdownPhase::Post
            && !dynamic.is_empty()
            && self.filter_columns().is_some()
        {
            let mut narrowed = self.unrun_copy();
            narrowed.runtime_filters.extend(dynamic);
            propagation =
                propagation.with_updated_node(Arc::new(narrowed) as Arc<dyn ExecutionPlan>);
        }
        Ok(propagation)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        // A plan run again (a recursive query's next step) resets the joins above, which then
        // no longer update the filters this scan holds: sending them would repeat the previous
        // run's keys.
        let mut reset = self.unrun_copy();
        reset.runtime_filters.clear();
        reset.join_filters.clear();
        Ok(Arc::new(reset))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let statistics = Statistics::new_unknown(&self.schema);
        let rows = match (self.row_estimate, args.partition()) {
            (None, _) => return Ok(Arc::new(statistics)),
            (Some(rows), None) => rows,
            // Range partitions split the rows about evenly.
            (Some(rows), Some(_)) => rows / self.statements.len().max(1),
        };
        Ok(Arc::new(statistics.with_num_rows(Precision::Inexact(rows))))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(sql) = self.statements.get(partition) else {
            return Err(DataFusionError::Internal(format!(
                "OdbcExec has {} partitions, partition {partition} was requested",
                self.statements.len()
            )));
        };
        let source = Arc::clone(&self.source);
        let filter_columns = self.filter_columns().unwrap_or_default();
        let runtime_filters = self.runtime_filters.clone();
        let sent = Arc::clone(&self.sent);

        let mut scan = RemoteScan {
            dialect: source.dialect(),
            sql: sql.clone(),
            schema: Arc::clone(&self.schema),
            fetch: self.fetch.clone(),
            options: source.options().scan.clone(),
            remote_time: MetricBuilder::new(&self.metrics).subset_time("remote_time", partition),
            read_whole: MetricBuilder::new(&self.metrics).counter("read_whole", partition),
            delivered: std::cell::Cell::new(false),
            unfiltered: None,
            read_whole_when_small: self.read_whole,
            planned_rows: self.row_estimate.filter(|_| self.statements.len() == 1),
            packed: self.packed_layout(),
        };
        // The scan holds about one batch in its fetch buffers and up to `prefetch_batches` in
        // the channel: reserved in the query's memory pool, sized by the batches seen.
        let held_batches = scan.options.prefetch_batches.max(1) + 1;
        let output_rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let output_bytes = MetricBuilder::new(&self.metrics).output_bytes(partition);
        // Nothing happens until the stream is first polled: then the statement runs as a call
        // of the source (crate::call), whose deadline counts from here.
        let batches = futures::stream::once(async move {
            // The filters as they stand now (see the module notes).
            let condition = runtime_condition(source.dialect(), &filter_columns, &runtime_filters);
            if let Some(condition) = &condition {
                let filtered = filtered_statement(source.dialect(), &scan.sql, condition).map_err(
                    |source_error| OdbcError::Sql {
                        source_name: source.name().to_string(),
                        source: source_error,
                    },
                )?;
                let plain = std::mem::replace(&mut scan.sql, filtered);
                scan.unfiltered = Some((plain, Arc::clone(&sent), partition));
            }
            if !runtime_filters.is_empty() {
                record_sent(&sent, partition, condition);
            }
            let spec = CallSpec::new(&source, "a scan").statement(scan.statement_to_send()?);
            let (sender, receiver) = mpsc::channel(scan.options.prefetch_batches.max(1));
            let call = async move { source.call(spec, move |call| scan.run(call, &sender)).await };
            Ok::<_, DataFusionError>(batches_of_call(receiver, call))
        })
        .try_flatten();
        let reservation = MemoryConsumer::new(format!(
            "OdbcExec[{}] partition {partition}",
            self.source.name()
        ))
        .register(context.memory_pool());
        // What EXPLAIN ANALYZE reports per remote scan: rows, Arrow bytes, time in the driver.
        let batches = batches
            .inspect_ok(move |batch| {
                output_rows.add(batch.num_rows());
                let bytes = batch.get_array_memory_size();
                output_bytes.add(bytes);
                if bytes * held_batches > reservation.size() {
                    reservation.resize(bytes * held_batches);
                }
            })
            .boxed();
        // Waiting for the joins' filters comes first, outside the statement's deadline.
        let batches = if self.join_filters.is_empty() {
            batches
        } else {
            let join_filters = self.join_filters.clone();
            let filter_wait =
                MetricBuilder::new(&self.metrics).subset_time("runtime_filter_wait", partition);
            futures::stream::once(async move {
                let timer = filter_wait.timer();
                wait_for_join_filters(&join_filters).await;
                timer.done();
                batches
            })
            .flatten()
            .boxed()
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }
}

type BatchSender = mpsc::Sender<Result<RecordBatch>>;

/// Up to this many estimated rows, a result may be read whole ([`OdbcExec::read_whole_when_small`]).
pub const SMALL_RESULT_ROWS: u64 = 100_000;

type BatchStream = futures::stream::BoxStream<'static, Result<RecordBatch>>;

/// The batches a scan's call sends through `receiver`, then the call's error if it failed
/// (a timeout ends the stream at once, whatever the fetch thread is doing). Dropping the
/// stream drops the call, which cancels the statement if it does not stop by itself.
fn batches_of_call(
    receiver: mpsc::Receiver<Result<RecordBatch>>,
    call: impl std::future::Future<Output = Result<(), OdbcError>> + Send + 'static,
) -> BatchStream {
    enum State {
        Running(futures::future::BoxFuture<'static, Result<(), OdbcError>>),
        /// The call succeeded: what is left in the channel, then the end.
        Draining,
        Done,
    }
    futures::stream::unfold(
        (receiver, State::Running(Box::pin(call))),
        |(mut receiver, state)| async move {
            let mut running = match state {
                State::Running(running) => running,
                State::Draining => {
                    let batch = receiver.recv().await?;
                    return Some((batch, (receiver, State::Draining)));
                }
                State::Done => return None,
            };
            let outcome = tokio::select! {
                biased;
                batch = receiver.recv() => match batch {
                    Some(batch) => return Some((batch, (receiver, State::Running(running)))),
                    // The fetch thread let go of its sender: the call is ending.
                    None => running.await,
                },
                outcome = &mut running => outcome,
            };
            match outcome {
                Ok(()) => {
                    let batch = receiver.recv().await?;
                    Some((batch, (receiver, State::Draining)))
                }
                Err(err) => {
                    // A fetch thread still sending (past a deadline) stops at its next batch.
                    receiver.close();
                    Some((Err(err.into()), (receiver, State::Done)))
                }
            }
        },
    )
    .boxed()
}

/// What the fetch thread needs, detached from the plan.
struct RemoteScan {
    /// Whether a batch went to the query already (then a retry could double rows).
    delivered: std::cell::Cell<bool>,
    /// With a run-time filter: the statement without it, and where to record that it was
    /// dropped. A key the column's type cannot hold (text that is no valid UUID or enum
    /// label) makes the database refuse the statement, though such a key matches nothing.
    unfiltered: Option<(String, SentConditions, usize)>,
    /// See [`OdbcExec::read_whole_when_small`].
    read_whole_when_small: bool,
    /// The database's estimate of this statement's rows made while planning (one-statement
    /// scans only), so deciding `read_whole` needs no second EXPLAIN unless a run-time filter
    /// changed the statement.
    planned_rows: Option<usize>,
    /// Statements read whole after the estimate (EXPLAIN ANALYZE's `read_whole`).
    read_whole: Count,

    /// Time spent executing and fetching in the driver (and converting to Arrow).
    remote_time: Time,
    dialect: Dialect,
    sql: String,
    schema: SchemaRef,
    fetch: Vec<ColumnFetch>,
    /// Rows come packed into one text value each; `None`: column by column.
    packed: Option<PackedLayout>,
    options: ScanOptions,
}

impl RemoteScan {
    /// The statement as sent: `sql`, rows packed where they are.
    fn statement_to_send(&self) -> Result<String, OdbcError> {
        match &self.packed {
            Some(layout) => {
                packed_row_statement(self.dialect, &self.sql, &layout.columns(&self.schema))
                    .map_err(|source| OdbcError::Sql {
                        source_name: String::new(),
                        source,
                    })
            }
            None => Ok(self.sql.clone()),
        }
    }

    /// One run of the scan's call. A statement refused with a run-time filter runs once more
    /// without it, on the same connection; the call retries lost connections.
    fn run(&mut self, call: &CallContext<'_>, sender: &BatchSender) -> Result<(), OdbcError> {
        loop {
            let err = match self.fetch(call, sender) {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            if self.delivered.get() || call.was_cancelled() || call.is_discarded() {
                return Err(err);
            }
            let Some((plain, sent, partition)) = self.unfiltered.take() else {
                return Err(err);
            };
            tracing::warn!(
                source = call.source_name(),
                error = %err,
                "the database refused a join's run-time filter; reading without it"
            );
            self.sql = plain;
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
        let mut sql = self.statement_to_send().map_err(|err| match err {
            OdbcError::Sql { source, .. } => OdbcError::Sql {
                source_name: pool.source_name().to_string(),
                source,
            },
            other => other,
        })?;
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
        let fetch_schema = self.fetch_schema();
        if let Some(layout) = &self.packed {
            return self.read_packed(call, cursor, layout, &fetch_schema, sender, started);
        }
        let reader = OdbcReaderBuilder::new()
            .with_schema(Arc::clone(&fetch_schema))
            .with_max_text_size(self.options.max_text_size)
            .with_max_binary_size(self.options.max_binary_size)
            .with_max_num_rows_per_batch(self.options.batch_rows.max(1))
            .with_max_bytes_per_batch(self.options.max_bytes_per_batch)
            .trim_fixed_sized_characters(false)
            .build(cursor)
            .map_err(|err| OdbcError::Odbc {
                source_name: pool.source_name().to_string(),
                context: format!("binding buffers for `{}`", self.sql),
                message: err.to_string(),
            })?;
        let mut reader = reader;
        let result = self.read_rows(call, sender, || {
            reader
                .next()
                .map(|batch| batch.map_err(|err| self.read_error(pool, &fetch_schema, err)))
        });
        // No cancel can start once the statement is unpublished, so `was_cancelled` is final.
        call.unpublish();
        close_reader(reader, call.was_cancelled() || result.is_err());
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

    /// Fetches rows packed into one text value each ([`crate::packed_rows`]) and parses them.
    fn read_packed<S: AsStatementRef + Statement>(
        &self,
        call: &CallContext<'_>,
        cursor: odbc_api::CursorImpl<S>,
        layout: &PackedLayout,
        fetch_schema: &SchemaRef,
        sender: &BatchSender,
        started: std::time::Instant,
    ) -> Result<(), OdbcError> {
        use odbc_api::Cursor;
        let pool = call.pool();
        let row_bytes = layout.row_bytes();
        let rows_per_batch = (self.options.max_bytes_per_batch / (row_bytes + 1))
            .clamp(1, self.options.batch_rows.max(1));
        let binding_failed = |err: odbc_api::Error| OdbcError::Odbc {
            source_name: pool.source_name().to_string(),
            context: format!("binding buffers for `{}`", self.sql),
            message: err.to_string(),
        };
        let buffer =
            TextRowSet::from_max_str_lens(rows_per_batch, [row_bytes]).map_err(binding_failed)?;
        let mut rows = cursor.bind_buffer(buffer).map_err(binding_failed)?;
        let result = self.read_rows(call, sender, || {
            match rows.fetch_with_truncation_check(true) {
                Ok(None) => None,
                Ok(Some(batch)) => {
                    let texts = (0..batch.num_rows()).map(|row| batch.at(0, row));
                    Some(
                        layout
                            .parse(fetch_schema, batch.num_rows(), texts)
                            .map_err(|problem| self.packed_error(pool, &problem)),
                    )
                }
                Err(odbc_api::Error::TooLargeValueForBuffer { .. }) => Some(Err(self
                    .packed_error(
                        pool,
                        &format!("a row was longer than the {row_bytes} bytes its types allow"),
                    ))),
                Err(err) => Some(Err(OdbcError::Odbc {
                    source_name: pool.source_name().to_string(),
                    context: format!("fetching rows of `{}`", self.sql),
                    message: pool.connection_string().scrub(&err.to_string()),
                })),
            }
        });
        call.unpublish();
        let troubled = call.was_cancelled() || result.is_err();
        if !troubled {
            drop(rows);
        } else if let Ok((cursor, _)) = rows.unbind() {
            // As in `close_reader`: released without closing a cursor the driver may have lost.
            drop(cursor.into_stmt());
        }
        self.finished(pool, result, started)
    }

    fn packed_error(&self, pool: &ConnectionPool, problem: &str) -> OdbcError {
        OdbcError::Odbc {
            source_name: pool.source_name().to_string(),
            context: format!("reading the packed rows of `{}`", self.sql),
            message: format!(
                "{problem}; set `packed_rows = false` for this source to read column by column, \
                 and report the statement"
            ),
        }
    }

    /// Whether PostgreSQL expects the statement to return at most [`SMALL_RESULT_ROWS`] rows:
    /// the planning estimate when the statement is still the planned one, else asked on the
    /// scan's statement handle, so the deadline's cancel covers it. Any failure just means no.
    fn estimated_small(
        &self,
        statement: &mut odbc_api::Preallocated<odbc_api::handles::StatementImpl<'_>>,
    ) -> bool {
        use odbc_api::Cursor;
        if let (Some(rows), None) = (self.planned_rows, &self.unfiltered) {
            return rows as u64 <= SMALL_RESULT_ROWS;
        }
        let explain = crate::discovery::explain_statement(&self.sql);
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
            self.check_silent_truncation(pool, &batch)?;
            rows += batch.num_rows();
            let batch = self.to_output(batch).map_err(|err| OdbcError::Odbc {
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

    /// The schema arrow-odbc binds; a constant column stands in when no column is projected.
    fn fetch_schema(&self) -> SchemaRef {
        if self.schema.fields().is_empty() {
            return Arc::new(Schema::new(vec![Field::new("1", DataType::Int32, true)]));
        }
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .zip(&self.fetch)
            .map(|(field, fetch)| {
                Field::new(field.name(), fetch.fetch_type.clone(), field.is_nullable())
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    fn to_output(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        if self.schema.fields().is_empty() {
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            return RecordBatch::try_new_with_options(Arc::clone(&self.schema), vec![], &options);
        }
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .zip(&self.fetch)
            .map(|((column, field), fetch)| {
                let column = if fetch.trim_trailing_blanks {
                    trim_trailing_blanks(column)?
                } else {
                    Arc::clone(column)
                };
                if column.data_type() == field.data_type() {
                    Ok(column)
                } else {
                    cast(&column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }

    /// MariaDB's driver cuts values that overflow their buffer without reporting it, so a
    /// value filling the whole buffer is treated as cut (a value of exactly that length is
    /// refused too: the message says how to raise the limit).
    fn check_silent_truncation(
        &self,
        pool: &ConnectionPool,
        batch: &RecordBatch,
    ) -> Result<(), OdbcError> {
        if self.dialect != Dialect::MySql {
            return Ok(());
        }
        for (index, column) in batch.columns().iter().enumerate() {
            // Lengths from the offsets: no pass over the values themselves.
            let longest = match column.data_type() {
                DataType::Utf8 => longest_value(column.as_string::<i32>().offsets()),
                DataType::Binary => longest_value(column.as_binary::<i32>().offsets()),
                _ => None,
            };
            let limit = match column.data_type() {
                DataType::Binary => self.options.max_binary_size,
                _ => self.options.max_text_size,
            };
            if longest.is_some_and(|len| len >= limit) {
                return Err(self.truncated(pool, batch.schema().field(index)));
            }
        }
        Ok(())
    }

    fn truncated(&self, pool: &ConnectionPool, field: &Field) -> OdbcError {
        let binary = matches!(field.data_type(), DataType::Binary);
        let (setting, limit) = if binary {
            ("max_binary_size", self.options.max_binary_size)
        } else {
            ("max_text_size", self.options.max_text_size)
        };
        let hint = if self.dialect == Dialect::Sqlite {
            format!(
                "SQLite does not enforce declared lengths, but its driver sizes buffers by them: \
                 declare the column as TEXT or BLOB (the limit is then `{setting}` = {limit} bytes)"
            )
        } else {
            format!("Raise `{setting}` (now {limit} bytes) for this source")
        };
        OdbcError::Truncated {
            source_name: pool.source_name().to_string(),
            column: field.name().clone(),
            hint,
        }
    }

    /// Names the column when a value did not fit its buffer.
    fn read_error(
        &self,
        pool: &ConnectionPool,
        fetch_schema: &Schema,
        err: ArrowError,
    ) -> OdbcError {
        if let ArrowError::ExternalError(inner) = &err
            && let Some(odbc_api::Error::TooLargeValueForBuffer { buffer_index, .. }) =
                inner.downcast_ref::<odbc_api::Error>()
            && let Some(field) = fetch_schema.fields().get(*buffer_index)
        {
            return self.truncated(pool, field);
        }
        OdbcError::Odbc {
            source_name: pool.source_name().to_string(),
            context: format!("fetching rows of `{}`", self.sql),
            message: pool.connection_string().scrub(&err.to_string()),
        }
    }
}

/// Removes the blank padding of CHAR(n) values.
fn trim_trailing_blanks(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let Some(strings) = column.as_string_opt::<i32>() else {
        return Ok(Arc::clone(column));
    };
    let trimmed: StringArray = strings
        .iter()
        .map(|v| v.map(|s| s.trim_end_matches(' ')))
        .collect();
    Ok(Arc::new(trimmed))
}

fn longest_value(offsets: &[i32]) -> Option<usize> {
    offsets.windows(2).map(|w| (w[1] - w[0]) as usize).max()
}

/// Closes a scan's cursor. After `SQLCancel` or a failed fetch some drivers (SQLite's) leave
/// the driver manager believing no cursor is open, and odbc-api panics when closing it fails;
/// such a statement is released without closing its cursor (freeing the statement ends it).
fn close_reader<S: odbc_api::handles::AsStatementRef + Statement>(
    reader: arrow_odbc::OdbcReader<odbc_api::CursorImpl<S>>,
    troubled: bool,
) {
    if !troubled {
        drop(reader);
    } else if let Ok(cursor) = reader.into_cursor() {
        drop(cursor.into_stmt());
    }
}
