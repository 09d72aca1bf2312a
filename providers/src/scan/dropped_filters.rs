//! [`NoteDroppedRuntimeFilters`]: where a hash join cannot hand its run-time filter to a
//! remote scan on its probe side, EXPLAIN says so instead of losing it silently.
//!
//! On a Ballista cluster the join and the scan run in different stages, often in different
//! processes, and Ballista turns DataFusion's join dynamic filters off (and prefers sort-merge
//! joins, which have none): the scan then reads every row a local run would have kept in the
//! database. The scans marked are those on the side a local hash join would probe: a hash
//! join's right input, or a sort-merge join's input with more estimated rows.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{HashJoinExec, SortMergeJoinExec};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};

use super::plan::OdbcExec;

/// The physical optimizer rule marking the scans under a hash join's probe side that would
/// have taken its run-time filter, when join dynamic filters are off.
#[derive(Debug, Default)]
pub struct NoteDroppedRuntimeFilters;

impl PhysicalOptimizerRule for NoteDroppedRuntimeFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let optimizer = &config.optimizer;
        if optimizer.enable_dynamic_filter_pushdown && optimizer.enable_join_dynamic_filter_pushdown
        {
            return Ok(plan);
        }
        plan.transform_down(|node| {
            let children: Vec<Arc<dyn ExecutionPlan>> =
                node.children().into_iter().cloned().collect();
            let probe_index = if node.is::<HashJoinExec>() {
                1
            } else if node.is::<SortMergeJoinExec>() {
                larger_input(&children)
            } else {
                return Ok(Transformed::no(node));
            };
            let Some(probe) = children.get(probe_index).cloned() else {
                return Ok(Transformed::no(node));
            };
            let marked = probe.transform_down(|below| match below.downcast_ref::<OdbcExec>() {
                Some(scan) if scan.takes_runtime_filters() => Ok(Transformed::yes(Arc::new(
                    scan.with_runtime_filters_dropped(),
                )
                    as Arc<dyn ExecutionPlan>)),
                _ => Ok(Transformed::no(below)),
            })?;
            if !marked.transformed {
                return Ok(Transformed::no(node));
            }
            let mut new_children = children;
            new_children[probe_index] = marked.data;
            node.replace_children(
                new_children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
            )
            .map(Transformed::yes)
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "note_dropped_runtime_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The index of the input (of two) with more estimated rows; the right one when unknown.
fn larger_input(children: &[Arc<dyn ExecutionPlan>]) -> usize {
    let statistics = StatisticsContext::new();
    let rows = |child: &Arc<dyn ExecutionPlan>| {
        statistics
            .compute(child.as_ref(), &StatisticsArgs::new())
            .ok()
            .and_then(|computed| computed.num_rows.get_value().copied())
    };
    match (
        children.first().and_then(rows),
        children.get(1).and_then(rows),
    ) {
        (Some(left), Some(right)) if left > right => 0,
        _ => 1,
    }
}
