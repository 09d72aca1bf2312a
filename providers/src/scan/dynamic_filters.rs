//! Run-time filters of a scan: what each partition sent, waiting for hash joins' filters,
//! and the filters as one SQL condition.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr_common::physical_expr::snapshot_physical_expr;
use ibarrow_sql::{Dialect, FilterColumn, render_runtime_filter};

/// Per partition, the run-time condition its statement carried.
pub(super) type SentConditions = Arc<Mutex<BTreeMap<usize, Option<String>>>>;

pub(super) fn record_sent(sent: &SentConditions, partition: usize, condition: Option<String>) {
    if let Ok(mut sent) = sent.lock() {
        sent.insert(partition, condition);
    }
}

/// How long a scan waits for the hash joins above it to complete their filters: a build side
/// slower than this lets the scan start with what the filters say then, as it would without
/// waiting.
const JOIN_FILTER_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until every filter in `join_filters` (dynamic filters produced by hash joins) is
/// complete, at most [`JOIN_FILTER_WAIT_LIMIT`].
pub(super) async fn wait_for_join_filters(join_filters: &[Arc<dyn PhysicalExpr>]) {
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
pub(super) fn runtime_condition(
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
