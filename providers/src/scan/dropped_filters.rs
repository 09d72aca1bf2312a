//! [`NoteDroppedRuntimeFilters`]: where a hash join cannot hand its run-time filter to a
//! remote scan on its probe side, EXPLAIN says so instead of losing it silently.
//!
//! On a Ballista cluster the join and the scan run in different stages, often in different
//! processes, and Ballista turns DataFusion's join dynamic filters off: the scan then reads
//! every row a local run would have kept in the database.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use datafusion::physical_plan::joins::HashJoinExec;

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
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            let probe = Arc::clone(join.right());
            let marked = probe.transform_down(|below| {
                match below.downcast_ref::<OdbcExec>() {
                    Some(scan) if scan.takes_runtime_filters() => Ok(Transformed::yes(Arc::new(
                        scan.with_runtime_filters_dropped(),
                    )
                        as Arc<dyn ExecutionPlan>)),
                    _ => Ok(Transformed::no(below)),
                }
            })?;
            if !marked.transformed {
                return Ok(Transformed::no(node));
            }
            let build = Arc::clone(join.left());
            node.replace_children(
                vec![build, marked.data],
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
