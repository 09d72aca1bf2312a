//! Same-source sub-plan pushdown: parts of a plan that read only one source run in that
//! database as one statement, so only their result travels.
//!
//! Only shapes whose remote answer is certain to equal DataFusion's are rewritten (see each
//! rule); everything else runs in DataFusion as before. Each rewritten part becomes a scan of
//! one remote statement, under the same column names and qualifiers, so the plan above it is
//! unchanged.

mod aggregate;
mod average;

pub use average::{decimal_average, decimal_average_settings};
mod join;

use std::sync::Arc;

use crate::type_map::ColumnFetch;
use crate::{OdbcSource, PassthroughTable};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, Result};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Projection};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule: bottom-up, so that joins of one source fold into one statement before
/// the node above them is looked at.
#[derive(Debug, Default)]
pub struct SubPlanPushdown;

impl OptimizerRule for SubPlanPushdown {
    fn name(&self) -> &str {
        "ibarrow_sub_plan_pushdown"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let replacement = match &plan {
            LogicalPlan::Aggregate(aggregate) => aggregate::pushed_aggregate(aggregate)?,
            LogicalPlan::Join(join) => join::pushed_join(join)?,
            _ => None,
        };
        Ok(match replacement {
            Some(replacement) => Transformed::yes(replacement),
            None => Transformed::no(plan),
        })
    }
}

/// Scans that stand for pushed sub-plans are named with this prefix.
const PUSHED_PREFIX: &str = "__ibarrow_pushed_";

/// A fresh qualifier for the scan that replaces a pushed sub-plan: a plan can hold several
/// (scalar subqueries), and their columns must not be confused.
fn pushed_scan_name(kind: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{PUSHED_PREFIX}{kind}_{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The plan that replaces a pushed sub-plan: a scan of `sql` (whose columns are c0, c1, …
/// in the order of `output`) under the names and qualifiers of `output`.
fn remote_scan(
    kind: &str,
    source: &Arc<OdbcSource>,
    sql: String,
    output: &DFSchema,
    fetch: Vec<ColumnFetch>,
) -> Result<LogicalPlan> {
    let types: Vec<_> = output
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let (scan, columns) = pushed_scan(kind, pushed_table(source, sql, &types, fetch))?;
    let exprs = output
        .iter()
        .zip(columns)
        .map(|((qualifier, field), column)| {
            column.alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(scan),
    )?))
}

/// The statement `sql` as a table whose columns c0, c1, … have `types`.
fn pushed_table(
    source: &Arc<OdbcSource>,
    sql: String,
    types: &[DataType],
    fetch: Vec<ColumnFetch>,
) -> PassthroughTable {
    let fields: Vec<Field> = types
        .iter()
        .enumerate()
        .map(|(i, data_type)| Field::new(format!("c{i}"), data_type.clone(), true))
        .collect();
    PassthroughTable::with_schema(
        Arc::clone(source),
        sql,
        Arc::new(Schema::new(fields)),
        fetch,
    )
}

/// A scan of `table` (a [`pushed_table`]), and its columns as expressions.
fn pushed_scan(kind: &str, table: PassthroughTable) -> Result<(LogicalPlan, Vec<Expr>)> {
    let width = datafusion::datasource::TableProvider::schema(&table)
        .fields()
        .len();
    let scan_name = pushed_scan_name(kind);
    let scan = LogicalPlanBuilder::scan(
        scan_name.as_str(),
        provider_as_source(Arc::new(table)),
        None,
    )?
    .build()?;
    let columns = (0..width)
        .map(|i| Expr::Column(Column::new(Some(scan_name.as_str()), format!("c{i}"))))
        .collect();
    Ok((scan, columns))
}
