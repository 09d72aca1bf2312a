//! Which key ranges of a scan a Ballista task reads.
//!
//! A task runs a slice of its stage's partitions. Ballista's scheduler cuts each task's plan
//! down to its slice by rewriting the leaves it knows (shuffle readers, files, in-memory
//! batches) and leaves any other leaf whole, so an `OdbcExec` would run its first ranges again
//! in every task. [`SplitScansIntoTasks`] therefore gives each scan an input Ballista knows how
//! to cut: in-memory batches, partition `i` holding the number `i`. A task's copy of that input
//! holds the numbers of the ranges it must read ([`TaskScanExec`]), whatever Ballista's rules
//! decide (a slice, every range under a partition merge or a join's build side, the right
//! share of a UNION).

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::{StreamExt, TryStreamExt};
use ibarrow_providers::OdbcExec;

/// The rule wrapping each `OdbcExec` of a plan a scheduler cuts into tasks in a
/// [`TaskScanExec`]. Runs last, after the rules that change scans.
#[derive(Debug, Default)]
pub struct SplitScansIntoTasks;

impl PhysicalOptimizerRule for SplitScansIntoTasks {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if !node.is::<OdbcExec>() {
                return Ok(Transformed::no(node));
            }
            let ranges = node.output_partitioning().partition_count();
            let wrapped = TaskScanExec::new(Arc::clone(&node), range_numbers(ranges)?);
            Ok(Transformed::yes(Arc::new(wrapped) as Arc<dyn ExecutionPlan>))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "split_scans_into_tasks"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// In-memory batches, partition `i` holding the one number `i`.
fn range_numbers(ranges: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = range_schema();
    let partitions = (0..ranges)
        .map(|range| {
            let number = u32::try_from(range).map_err(|_| {
                DataFusionError::Plan(format!("a scan of {ranges} ranges is too many"))
            })?;
            let column = Arc::new(UInt32Array::from(vec![number]));
            Ok(vec![RecordBatch::try_new(
                Arc::clone(&schema),
                vec![column],
            )?])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(MemorySourceConfig::try_new_exec(&partitions, schema, None)?)
}

fn range_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "range",
        DataType::UInt32,
        false,
    )]))
}

/// A remote scan whose partition `p` reads the key ranges that partition `p` of its input
/// names (see the module notes).
#[derive(Debug)]
pub struct TaskScanExec {
    /// The `OdbcExec`, with every range of the table.
    scan: Arc<dyn ExecutionPlan>,
    /// The range numbers, one partition per range this copy of the plan reads.
    ranges: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl TaskScanExec {
    /// `scan` reading the ranges `ranges` names.
    pub fn new(scan: Arc<dyn ExecutionPlan>, ranges: Arc<dyn ExecutionPlan>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(scan.schema()),
            Partitioning::UnknownPartitioning(ranges.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            scan,
            ranges,
            properties,
        }
    }

    /// The scan with every range.
    pub fn scan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.scan
    }
}

impl DisplayAs for TaskScanExec {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.scan.downcast_ref::<OdbcExec>() {
            Some(scan) => scan.fmt_as(format, f)?,
            None => write!(f, "{}", self.scan.name())?,
        }
        write!(f, ", ranges of each task below")
    }
}

impl ExecutionPlan for TaskScanExec {
    fn name(&self) -> &'static str {
        "TaskScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.ranges]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [ranges] = children.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "TaskScanExec has one input, {} were given",
                children.len()
            )));
        };
        Ok(Arc::new(TaskScanExec::new(
            Arc::clone(&self.scan),
            Arc::clone(ranges),
        )))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.scan.metrics()
    }

    /// The scan's: Ballista's planner sends small join sides to every task (a broadcast)
    /// only when it knows their size.
    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let whole = StatisticsArgs::new();
        let args = match args.partition() {
            // Every range of a scan is estimated alike; the ranges a task kept are numbered
            // from 0 again, so only the count matters.
            Some(partition) if partition < self.scan.output_partitioning().partition_count() => {
                args
            }
            Some(_) => &whole,
            None => args,
        };
        StatisticsContext::new().compute(self.scan.as_ref(), args)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let numbers = self.ranges.execute(partition, Arc::clone(&context))?;
        let scan = Arc::clone(&self.scan);
        let rows = futures::stream::once(async move {
            let batches: Vec<RecordBatch> = numbers.try_collect().await?;
            let mut ranges = Vec::new();
            for batch in &batches {
                let Some(column) = batch.column(0).as_any().downcast_ref::<UInt32Array>() else {
                    return Err(DataFusionError::Internal(
                        "the range numbers of a scan are not UInt32".into(),
                    ));
                };
                ranges.extend(column.iter().flatten().map(|n| n as usize));
            }
            let streams = ranges
                .into_iter()
                .map(|range| scan.execute(range, Arc::clone(&context)))
                .collect::<Result<Vec<_>>>()?;
            Ok::<_, DataFusionError>(futures::stream::iter(streams).flatten())
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }
}
