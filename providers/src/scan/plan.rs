//! [`OdbcExec`], the plan node of a remote scan: its statements, properties computed once,
//! display, statistics and the run-time filters DataFusion offers it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::DynamicFilterTracking;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use ibarrow_sql::{FilterColumn, RemoteTable, ScanStatement};

use super::dynamic_filters::SentConditions;
use super::fetch::SMALL_RESULT_ROWS;
use super::opener::PartitionScan;
use super::packed::PackedLayout;
use crate::error::OdbcError;
use crate::source::OdbcSource;
use crate::type_map::ColumnFetch;

/// A scan of one table narrowed by filters sent with it: what index advice looks at (the
/// engine's monitor compares the rows it returned with the table's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredScan {
    /// The table scanned.
    pub table: RemoteTable,
    /// The columns the sent filters compare, in the order they first appear.
    pub columns: Vec<String>,
    /// The database's estimate of the table's rows.
    pub table_rows: u64,
}

/// The `ExecutionPlan` of a remote scan: one statement per partition, its rows streamed as
/// Arrow batches.
#[derive(Debug)]
pub struct OdbcExec {
    source: Arc<OdbcSource>,
    /// One per partition, as planned (run-time filters and packing are added when sent).
    statements: Vec<ScanStatement>,
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
    /// Dynamic filters from joins above (see the notes of `scan`), over this scan's columns.
    runtime_filters: Vec<Arc<dyn PhysicalExpr>>,
    /// The dynamic filters inside `runtime_filters` that hash joins produce: the scan waits
    /// for them to be complete before it sends its statement.
    join_filters: Vec<Arc<dyn PhysicalExpr>>,
    /// What each started partition sent of them (`None`: nothing), for EXPLAIN ANALYZE.
    sent: SentConditions,
    /// The database's estimate of the rows all statements return, for DataFusion's choice of
    /// hash-join build sides ([`Self::with_row_estimate`]).
    row_estimate: Option<usize>,
    /// What the database knows of each output column's values, for the same choice and
    /// DataFusion's join-size estimates ([`Self::with_column_statistics`]).
    column_statistics: Option<Arc<[ScanColumnStatistics]>>,
    /// Why the table is read in this many ranges, for EXPLAIN.
    partitioning_reason: Option<String>,
    /// The most rows a statement can return ([`Self::with_max_rows`]).
    max_rows: Option<usize>,
    /// The table and columns its sent filters compare, for index advice.
    filtered_scan: Option<FilteredScan>,
    /// Statements that may write: the source's primary alone runs them.
    on_primary: bool,
    /// The endpoint each started partition ran on, for EXPLAIN ANALYZE of a source with
    /// replicas.
    ran_on: EndpointsUsed,
    /// The run-time filters a join above would have sent are not sent: the join runs in
    /// another stage of a cluster (`NoteDroppedRuntimeFilters`), shown by EXPLAIN.
    runtime_filters_dropped: bool,
    /// The cluster executor running this copy of the scan (`executor 127.0.0.1:50051`): each
    /// partition it runs counts in a metric named after it (`task0 on executor …`), so EXPLAIN ANALYZE of a cluster query shows which executor
    /// ran each ODBC task.
    executor: Option<String>,
}

/// What an [`OdbcExec`] is apart from its source, for sending a planned scan to a cluster
/// executor, which rebuilds it on its own source of the same name ([`OdbcExec::from_parts`]).
/// Holds no connection string, so no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct OdbcExecParts {
    /// One per partition.
    pub statements: Vec<ibarrow_sql::ScanStatementParts>,
    /// What the scan yields.
    pub schema: SchemaRef,
    /// How each column is read.
    pub fetch: Vec<ColumnFetch>,
    /// The statements are SELECTs ibarrow built ([`OdbcExec::built_by_ibarrow`]).
    pub built_by_ibarrow: bool,
    /// Small results are read whole ([`OdbcExec::read_whole_when_small`]).
    pub read_whole: bool,
    /// The database's estimate of the rows ([`OdbcExec::with_row_estimate`]).
    pub row_estimate: Option<usize>,
    /// What the database knows of each column ([`OdbcExec::with_column_statistics`]).
    pub column_statistics: Option<Vec<ScanColumnStatistics>>,
    /// Why the table is read in this many ranges.
    pub partitioning_reason: Option<String>,
    /// The most rows a statement can return ([`OdbcExec::with_max_rows`]).
    pub max_rows: Option<usize>,
    /// Run on the primary alone ([`OdbcExec::on_primary`]).
    pub on_primary: bool,
    /// Run-time filters were planned but are not sent (a join in another stage), or the
    /// scan held some when it was sent.
    pub runtime_filters_dropped: bool,
}

/// The endpoint each started partition of a scan ran on, by partition.
pub(super) type EndpointsUsed = Arc<std::sync::Mutex<std::collections::BTreeMap<usize, String>>>;

impl OdbcExec {
    /// `schema` is what the plan yields; `fetch` how each of its columns is read.
    pub fn new(
        source: Arc<OdbcSource>,
        statements: Vec<ScanStatement>,
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
            column_statistics: None,
            partitioning_reason: None,
            max_rows: None,
            filtered_scan: None,
            on_primary: false,
            ran_on: EndpointsUsed::default(),
            runtime_filters_dropped: false,
            executor: None,
        }
    }

    /// The scan as [`OdbcExecParts`]. Run-time filters are not among them: they are
    /// expressions shared with a join of the same process.
    pub fn parts(&self) -> OdbcExecParts {
        OdbcExecParts {
            statements: self.statements.iter().map(ScanStatement::parts).collect(),
            schema: Arc::clone(&self.schema),
            fetch: self.fetch.clone(),
            built_by_ibarrow: self.built_by_ibarrow,
            read_whole: self.read_whole,
            row_estimate: self.row_estimate,
            column_statistics: self.column_statistics.as_deref().map(<[_]>::to_vec),
            partitioning_reason: self.partitioning_reason.clone(),
            max_rows: self.max_rows,
            on_primary: self.on_primary,
            runtime_filters_dropped: self.runtime_filters_dropped
                || !self.runtime_filters.is_empty(),
        }
    }

    /// The scan [`Self::parts`] described, on `source` (the executor's source of the same
    /// name), run by `executor`.
    pub fn from_parts(source: Arc<OdbcSource>, parts: OdbcExecParts, executor: &str) -> Self {
        let dialect = source.dialect();
        let statements = parts
            .statements
            .into_iter()
            .map(|statement| ScanStatement::from_parts(dialect, statement))
            .collect();
        let mut exec = OdbcExec::new(source, statements, parts.schema, parts.fetch)
            .with_row_estimate(parts.row_estimate)
            .with_partitioning_reason(parts.partitioning_reason)
            .with_max_rows(parts.max_rows);
        if let Some(columns) = parts.column_statistics {
            exec = exec.with_column_statistics(columns);
        }
        exec.built_by_ibarrow = parts.built_by_ibarrow;
        exec.read_whole = parts.read_whole;
        exec.on_primary = parts.on_primary;
        exec.runtime_filters_dropped = parts.runtime_filters_dropped;
        exec.executor = Some(executor.to_string());
        exec
    }

    /// Whether a join above could narrow this scan with its keys (the statement can be
    /// wrapped and the source takes run-time filters).
    pub fn takes_runtime_filters(&self) -> bool {
        self.filter_columns().is_some()
    }

    /// The same scan, shown as having lost the run-time filters of a join in another stage.
    pub fn with_runtime_filters_dropped(&self) -> Self {
        let mut copy = self.unrun_copy();
        copy.runtime_filters_dropped = true;
        copy
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
        copy.column_statistics = self.column_statistics.clone();
        copy.partitioning_reason = self.partitioning_reason.clone();
        copy.max_rows = self.max_rows;
        copy.filtered_scan = self.filtered_scan.clone();
        copy.on_primary = self.on_primary;
        copy.runtime_filters_dropped = self.runtime_filters_dropped;
        copy.executor = self.executor.clone();
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

    /// Reports what the database knows of each output column (in the order of the scan's
    /// schema): distinct values and NULLs become DataFusion's column statistics, and the
    /// average bytes of every column a total byte size, which DataFusion compares before rows
    /// when it picks a hash join's build side.
    pub fn with_column_statistics(mut self, columns: Vec<ScanColumnStatistics>) -> Self {
        self.column_statistics =
            (columns.len() == self.schema.fields().len()).then(|| columns.into());
        self
    }

    /// The table and the columns its sent filters compare, for index advice.
    pub fn with_filtered_scan(mut self, scan: Option<FilteredScan>) -> Self {
        self.filtered_scan = scan;
        self
    }

    /// The table and columns its sent filters compare, for index advice (`None`: none sent).
    pub fn filtered_scan(&self) -> Option<&FilteredScan> {
        self.filtered_scan.as_ref()
    }

    /// The most rows each statement can return (a pushed limit, a pinned primary key): its
    /// fetch buffers are sized for no more rows, so a point lookup does not bind buffers for
    /// thousands. `None`: as many as `batch_rows` and `max_bytes_per_batch` allow.
    pub fn with_max_rows(mut self, rows: Option<usize>) -> Self {
        self.max_rows = rows;
        self
    }

    /// Runs the statements on the source's primary alone: a native statement that may write.
    pub fn on_primary(mut self) -> Self {
        self.on_primary = true;
        self
    }

    /// Why the table is read in this many ranges (automatic or configured), shown by EXPLAIN.
    pub fn with_partitioning_reason(mut self, reason: Option<String>) -> Self {
        self.partitioning_reason = reason;
        self
    }

    /// Reads each result whole when PostgreSQL estimates it at most [`SMALL_RESULT_ROWS`]
    /// rows (asked with EXPLAIN on the scan's own connection, under its deadline): psqlODBC
    /// streams results through a cursor, and PostgreSQL runs a cursor's query without
    /// parallel workers (a pushed TPC-H Q1 takes 0.68 s so, 0.49 s read whole). Meant for
    /// statements whose answers are usually small, such as pushed aggregates.
    pub fn read_whole_when_small(mut self) -> Self {
        self.read_whole = self
            .source
            .dialect()
            .capabilities()
            .reads_small_results_whole();
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

    /// How rows are packed into one text value each (see `packed.rs`), or `None`
    /// to fetch them column by column.
    fn packed_layout(&self) -> Option<PackedLayout> {
        if !self.source.options().packed_rows
            || !self.source.dialect().capabilities().packs_rows()
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
            || !self.source.dialect().capabilities().sends_runtime_filters()
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

    /// The statements sent to the database as planned, one per partition (without the
    /// run-time filters added when they start, and with rows unpacked).
    pub fn statements(&self) -> Vec<String> {
        self.statements
            .iter()
            .map(ScanStatement::render_unpacked)
            .collect()
    }

    /// The source the statements run on.
    pub fn source(&self) -> &Arc<OdbcSource> {
        &self.source
    }
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
                if let Some(reason) = &self.partitioning_reason {
                    write!(f, "partitioning=({reason}), ")?;
                }
                if self.read_whole {
                    write!(f, "read_whole_below={SMALL_RESULT_ROWS}, ")?;
                }
                if self.packed_layout().is_some() {
                    write!(f, "rows=packed, ")?;
                }
                self.fmt_endpoints(f, ", ")?;
                write!(f, "sql=")?;
                if let [single] = self.statements().as_slice() {
                    write!(f, "{single}")?;
                } else {
                    write!(f, "[{}]", self.statements().join("; "))?;
                }
                self.fmt_runtime_filter(f, ", ")
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "source={}", self.source.name())?;
                writeln!(f, "partitions={}", self.statements.len())?;
                if self.packed_layout().is_some() {
                    writeln!(f, "rows=packed")?;
                }
                self.fmt_endpoints(f, "\n")?;
                write!(f, "sql={}", self.statements().join("; "))?;
                self.fmt_runtime_filter(f, "\n")
            }
        }
    }
}

impl OdbcExec {
    /// Where the statements of a source with replicas go: chosen as each starts, so plain
    /// EXPLAIN gives the policy and EXPLAIN ANALYZE the endpoint of each partition in order.
    /// Followed by `separator`; nothing for a source with one endpoint.
    fn fmt_endpoints(&self, f: &mut fmt::Formatter, separator: &str) -> fmt::Result {
        if self.source.endpoints().len() < 2 {
            return Ok(());
        }
        let ran_on = self.ran_on.lock().map(|r| r.clone()).unwrap_or_default();
        if ran_on.is_empty() {
            let replicas = &self.source.options().replicas;
            return if self.on_primary {
                write!(f, "endpoints=primary{separator}")
            } else {
                write!(
                    f,
                    "endpoints=pending (read_from={}, balance={}){separator}",
                    replicas.read_from, replicas.balance
                )
            };
        }
        let labels: Vec<&str> = (0..self.statements.len())
            .map(|partition| ran_on.get(&partition).map_or("-", String::as_str))
            .collect();
        write!(f, "endpoints=[{}]{separator}", labels.join(", "))
    }

    /// What the join's filter added to the statements: known once the scan has started (so
    /// EXPLAIN ANALYZE shows it, plain EXPLAIN says it is pending).
    fn fmt_runtime_filter(&self, f: &mut fmt::Formatter, separator: &str) -> fmt::Result {
        if self.runtime_filters_dropped {
            return write!(
                f,
                "{separator}runtime_filter=dropped (Ballista sends no join filters to scans)"
            );
        }
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
        let columns = self.column_statistics.as_deref().unwrap_or_default();
        Ok(Arc::new(scan_statistics(&self.schema, rows, columns)))
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
        let Some(statement) = self.statements.get(partition) else {
            return Err(DataFusionError::Internal(format!(
                "OdbcExec has {} partitions, partition {partition} was requested",
                self.statements.len()
            )));
        };
        let packed = self.packed_layout();
        let statement = match &packed {
            Some(layout) => statement
                .clone()
                .pack_rows(&layout.columns(&self.schema))
                .map_err(|source| {
                    DataFusionError::from(OdbcError::Sql {
                        source_name: self.source.name().to_string(),
                        source,
                    })
                })?,
            None => statement.clone(),
        };
        if let Some(executor) = &self.executor {
            MetricBuilder::new(&self.metrics)
                .counter(format!("task{partition} on {executor}"), partition)
                .add(1);
        }
        let scan = PartitionScan {
            source: Arc::clone(&self.source),
            statement,
            schema: Arc::clone(&self.schema),
            fetch: self.fetch.clone(),
            filter_columns: self.filter_columns().unwrap_or_default(),
            runtime_filters: self.runtime_filters.clone(),
            join_filters: self.join_filters.clone(),
            sent: Arc::clone(&self.sent),
            read_whole_when_small: self.read_whole,
            planned_rows: self.row_estimate.filter(|_| self.statements.len() == 1),
            max_rows: self.max_rows,
            packed,
            on_primary: self.on_primary,
            ran_on: Arc::clone(&self.ran_on),
        };
        Ok(scan.open(partition, &self.metrics, context))
    }
}

/// What a database knows of one column a scan reads ([`OdbcExec::with_column_statistics`]);
/// `None` where it does not know.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScanColumnStatistics {
    /// Distinct values in the whole table.
    pub distinct: Option<usize>,
    /// The fraction of values that are NULL.
    pub null_fraction: Option<f64>,
    /// Average bytes of a value.
    pub avg_bytes: Option<usize>,
}

/// DataFusion's statistics of `rows` read from a table with `schema`, whose columns the
/// database describes as `columns` (in the schema's order; empty: nothing known). A filtered
/// or partial read has at most as many distinct values as rows; the byte size is given only
/// when every column's width is known.
pub(crate) fn scan_statistics(
    schema: &SchemaRef,
    rows: usize,
    columns: &[ScanColumnStatistics],
) -> Statistics {
    let mut statistics = Statistics::new_unknown(schema).with_num_rows(Precision::Inexact(rows));
    if columns.len() != statistics.column_statistics.len() {
        return statistics;
    }
    for (out, known) in statistics.column_statistics.iter_mut().zip(columns) {
        if let Some(distinct) = known.distinct {
            out.distinct_count = Precision::Inexact(distinct.min(rows));
        }
        if let Some(fraction) = known.null_fraction {
            out.null_count = Precision::Inexact((rows as f64 * fraction).round() as usize);
        }
    }
    let row_bytes: Option<usize> = columns.iter().map(|c| c.avg_bytes).sum();
    if let Some(row_bytes) = row_bytes {
        statistics.total_byte_size = Precision::Inexact(rows.saturating_mul(row_bytes));
    }
    statistics
}
