//! [`AwaitJoinFilters`]: lets a remote scan on the probe side of a hash join wait for the
//! join's run-time filter before it sends its statement.
//!
//! A scan sends its run-time filter as it stands when the scan starts. A join reads its build
//! side before polling its probe side, but operators in between (partition merging,
//! repartitioning) start the probe-side scans at once, so they would send nothing and read
//! every row. Waiting costs little: the join reads no probe row before its build side is done
//! anyway. Only hash-join filters are waited for: they are complete once the build side is
//! read, which never depends on the probe side. A top-k or MIN/MAX filter completes only when
//! its input — the scan itself — ends.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};

use super::plan::OdbcExec;

/// The physical optimizer rule marking which of each [`OdbcExec`]'s run-time filters come from
/// hash joins. Runs after DataFusion's own rules, once dynamic filters are in place.
#[derive(Debug, Default)]
pub struct AwaitJoinFilters;

impl PhysicalOptimizerRule for AwaitJoinFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut join_filters = BTreeSet::new();
        plan.apply(|node| {
            if node.downcast_ref::<HashJoinExec>().is_some() {
                join_filters.extend(
                    node.dynamic_expressions_produced()
                        .iter()
                        .filter_map(|filter| filter.expression_id()),
                );
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if join_filters.is_empty() {
            return Ok(plan);
        }
        mark_scans(plan, &join_filters)
    }

    fn name(&self) -> &str {
        "await_join_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Replaces each scan holding one of `join_filters` by one that waits for it. Parents keep
/// their properties (a scan's do not change), and are rebuilt only above a replaced scan.
fn mark_scans(
    plan: Arc<dyn ExecutionPlan>,
    join_filters: &BTreeSet<u64>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(scan) = plan.downcast_ref::<OdbcExec>() {
        return Ok(match scan.awaiting_join_filters(join_filters) {
            Some(waiting) => Arc::new(waiting),
            None => plan,
        });
    }
    let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
    let mut replaced = false;
    let mut new_children = Vec::with_capacity(children.len());
    for child in children {
        let new_child = mark_scans(Arc::clone(&child), join_filters)?;
        replaced |= !Arc::ptr_eq(&child, &new_child);
        new_children.push(new_child);
    }
    if !replaced {
        return Ok(plan);
    }
    plan.replace_children(
        new_children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
    )
}
