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
//! earlier: it then waits (bounded) for filters [`AwaitJoinFilters`] marked as coming from
//! hash joins, and sends what the others say at that moment (at first, nothing).
//!
//! The parts, as DataFusion splits a data source: `plan.rs` is the plan node and its display,
//! `dynamic_filters.rs` what the scan does with run-time filters, `join_filter_wait.rs`
//! the rule marking those of hash joins and `dropped_filters.rs` the rule noting those a
//! cluster cannot send, `opener.rs` starts one partition, `stream.rs` turns
//! the call into the partition's stream, `fetch.rs` runs the statement on the fetch thread,
//! reading column by column (`columnar.rs`) or rows packed into one text value each
//! (`packed.rs`).

mod columnar;
mod dropped_filters;
mod dynamic_filters;
mod fetch;
mod join_filter_wait;
mod opener;
mod packed;
mod plan;
mod stream;

pub use dropped_filters::NoteDroppedRuntimeFilters;
pub use join_filter_wait::AwaitJoinFilters;
pub(crate) use plan::scan_statistics;
pub use plan::{FilteredScan, OdbcExec, OdbcExecParts, ScanColumnStatistics};
