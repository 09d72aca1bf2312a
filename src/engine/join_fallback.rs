//! A query whose hash join cannot hold its build side under `[engine] memory_limit` runs
//! again with sort-merge joins. DataFusion 55's hash join keeps its whole build side in memory
//! and cannot spill; a sort-merge join sorts both inputs, and sorts spill to disk. It is slower,
//! so it is the fallback, not the plan: a query (not a write) is planned again only when it
//! was refused memory while one of its hash joins asked for or held its build side, before it
//! delivered its first batch (nothing is repeated or lost). The refused plan, which holds the
//! build side, is dropped from the query's run before the new one runs; the network service
//! also keeps the planned query until it ends (server/src/flight.rs), so there the first
//! plan's memory comes back only then.

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

type Batches = futures::stream::BoxStream<
    'static,
    datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch>,
>;

/// What a query needs to be planned again with sort-merge joins.
#[derive(Debug, Clone)]
pub(crate) struct JoinFallback {
    state: SessionState,
    logical: LogicalPlan,
}

impl JoinFallback {
    /// The fallback for `plan`, planned from `logical` in `state` (kept as they are, not
    /// copied: planning is done with them): only under a memory limit, and only when the plan
    /// has a hash join.
    pub(crate) fn for_plan(
        state: SessionState,
        logical: LogicalPlan,
        plan: &Arc<dyn ExecutionPlan>,
    ) -> Option<Self> {
        let limited = matches!(
            state.runtime_env().memory_pool.memory_limit(),
            MemoryLimit::Finite(_)
        );
        // A write runs once: its sink's rollback and the second run could meet on the table.
        (limited && has_hash_join(plan.as_ref()) && !writes(plan.as_ref()))
            .then_some(Self { state, logical })
    }

    /// `stream` (of the plan this fallback was made for), which runs again with sort-merge
    /// joins in `task` when its first item is a hash join's build side refused memory.
    /// `replace` makes the new plan the run's, dropping the refused one (src/monitor.rs).
    pub(crate) fn guard(
        self,
        stream: SendableRecordBatchStream,
        task: Arc<TaskContext>,
        replace: impl FnOnce(Arc<dyn ExecutionPlan>) + Send + 'static,
    ) -> SendableRecordBatchStream {
        let schema = stream.schema();
        let guarded = futures::stream::once(async move {
            let mut stream = stream;
            match stream.next().await {
                Some(Err(err)) if build_side_refused(&err) => {
                    // The refused plan's reservations go before the new plan asks for any.
                    drop(stream);
                    tracing::warn!(
                        error = %err,
                        "a hash join's build side exceeded the memory limit; running the query \
                         again with sort-merge joins, which spill"
                    );
                    match self.sort_merge(task, replace).await {
                        Ok(stream) => stream,
                        Err(again) => failed(both_refused(err, &again)),
                    }
                }
                first => futures::stream::iter(first).chain(stream).boxed(),
            }
        })
        .flatten();
        Box::pin(RecordBatchStreamAdapter::new(schema, guarded))
    }

    async fn sort_merge(
        mut self,
        task: Arc<TaskContext>,
        replace: impl FnOnce(Arc<dyn ExecutionPlan>),
    ) -> Result<Batches, DataFusionError> {
        let limit = match self.state.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(bytes) => bytes,
            _ => usize::MAX,
        };
        let options = self.state.config_mut().options_mut();
        options.optimizer.prefer_hash_join = false;
        // DataFusion 55's physical planner plans a sort-merge join only over inputs
        // repartitioned by the keys: at least two partitions, with join repartitioning on.
        options.optimizer.repartition_joins = true;
        options.execution.target_partitions = options.execution.target_partitions.max(2);
        // Each sort holds memory back for merging what it spilled (10 MB by default): a
        // sort-merge join has a sort on each side in each partition, which a small limit
        // could not give all.
        let merge = &mut options.execution.sort_spill_reservation_bytes;
        *merge = (*merge).min(limit / 16);
        // Merging spilled runs holds a batch of each: smaller batches, more runs merged.
        if options.execution.batch_size.get() > 1024 {
            options.execution.batch_size =
                datafusion::common::config::ConfigNonZeroUsize::try_new(1024)?;
        }
        let plan = self.state.create_physical_plan(&self.logical).await?;
        // The refused plan still holds its build side: it goes before the new one runs.
        replace(Arc::clone(&plan));
        // The settings above, with the query's own memory (src/monitor.rs, QueryMemory).
        let task = Arc::new(TaskContext::from(&self.state).with_runtime(task.runtime_env()));
        let mut stream = datafusion::physical_plan::execute_stream(plan, task)?;
        // A sort-merge plan that fails before its first batch fails with the hash join's
        // error, which tells the user what to change; a later failure is its own.
        match stream.next().await {
            Some(Err(err)) => Err(err),
            first => Ok(futures::stream::iter(first).chain(stream).boxed()),
        }
    }
}

fn failed(err: DataFusionError) -> Batches {
    futures::stream::iter([Err(err)]).boxed()
}

/// The hash join's refusal (it names the limit and what to change) with what the sort-merge
/// plan met.
fn both_refused(hash_join: DataFusionError, sort_merge: &DataFusionError) -> DataFusionError {
    match hash_join.find_root() {
        DataFusionError::ResourcesExhausted(message) => {
            DataFusionError::ResourcesExhausted(format!(
                "{message} Running the query again with sort-merge joins, which spill, failed \
                 too: {}",
                sort_merge.find_root()
            ))
        }
        _ => hash_join,
    }
}

fn writes(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<datafusion::datasource::sink::DataSinkExec>()
        || plan
            .children()
            .into_iter()
            .any(|child| writes(child.as_ref()))
}

fn has_hash_join(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<HashJoinExec>()
        || plan
            .children()
            .into_iter()
            .any(|child| has_hash_join(child.as_ref()))
}

/// Whether `err` is a refusal of memory while a hash join of this query asked for or held its
/// build side (src/monitor.rs, `QueryMemory`, says so in the message).
fn build_side_refused(err: &DataFusionError) -> bool {
    matches!(err.find_root(), DataFusionError::ResourcesExhausted(message)
        if message.contains(crate::monitor::BUILD_SIDE_HINT))
}
