//! What a DataFusion session needs for ODBC tables to work at their best: [`install`].

use std::sync::Arc;

use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;

use crate::pushdown::SubPlanPushdown;
use crate::scan::AwaitJoinFilters;

/// A join build side of up to this many bytes of key columns may hand its key list to the
/// scans of the other side (see [`install`]).
const JOIN_KEY_LIST_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Sets a session up for [`crate::OdbcTable`]s: same-source joins and aggregates run in their
/// database as one statement (`SubPlanPushdown`), remote scans below hash joins wait for the
/// joins' run-time filters before sending their statements ([`AwaitJoinFilters`]), and joins
/// hand key lists, not only key ranges, to those scans. Call it after `with_config`:
///
/// ```no_run
/// use datafusion::execution::session_state::SessionStateBuilder;
/// use datafusion::prelude::SessionContext;
///
/// let state = ibarrow_providers::install(SessionStateBuilder::new().with_default_features())
///     .build();
/// let ctx = SessionContext::new_with_state(state);
/// ```
pub fn install(mut builder: SessionStateBuilder) -> SessionStateBuilder {
    let config = builder.config().get_or_insert_with(SessionConfig::new);
    // A build side with up to this many keys hands the list to the scans of the other side,
    // which send it to their database: remote scans gain far more from it than file scans,
    // for which DataFusion's default is set. One build side may use the largest statement
    // budget (a join split over partitions sends one list per partition; each database's own
    // budget, smaller for SQLite, turns longer lists into ranges). DataFusion also skips the
    // list when the build side's key columns exceed a size (128 KiB by default: 16 384 rows
    // of one 64-bit key); 8 MiB lets the largest list through for 64-bit or short text keys.
    // The build side's hash table is already larger than these columns.
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.hash_join_inlist_pushdown_max_distinct_values =
        ibarrow_sql::MAX_RUNTIME_FILTER_VALUES;
    optimizer.hash_join_inlist_pushdown_max_size = JOIN_KEY_LIST_MAX_BYTES;
    builder
        .with_optimizer_rule(Arc::new(SubPlanPushdown))
        .with_physical_optimizer_rule(Arc::new(AwaitJoinFilters))
}
