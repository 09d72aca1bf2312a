//! SQL generation for ibarrow's remote scans, with no ODBC in sight.
//!
//! - [`Dialect`]: what differs between databases (quoting, literals, limits), detected from
//!   the driver's `SQL_DBMS_NAME`.
//! - [`render_filter`]: a DataFusion filter expression as SQL for one dialect, or `None` when
//!   the dialect cannot evaluate it exactly as DataFusion would (the capability gate: such a
//!   filter stays in DataFusion).
//! - [`RemoteSelect`]: the statement a scan sends; [`RemoteAggregate`] and [`RemoteJoin`]:
//!   whole sub-plans of one source as one statement.
//! - [`render_runtime_filter`]: the key ranges and lists a hash join learns at run time, as a
//!   condition the probe side's statement can carry.
//! - [`packed_row_statement`]: a statement whose rows come back as one text value each.
//!
//! Literals and identifiers are escaped here and nowhere else.

mod aggregate;
mod arithmetic;
mod capabilities;
mod dialect;
mod error;
mod filter;
mod join;
mod literal;
mod packed_row;
mod partition;
mod read_only;
mod runtime_filter;
mod select;
mod session;

pub use aggregate::{AggregateCall, RemoteAggregate};
pub use arithmetic::render_exact_decimal;
pub use capabilities::{SchemaLevel, TableRowsQuery, UNNAMED_SCHEMA};
pub use dialect::{Dialect, LimitSyntax};
pub use error::SqlError;
pub use filter::render_filter;
pub use join::{JoinKind, RemoteJoin, Side};
pub use literal::render_literal;
pub use packed_row::{PackedColumn, PackedValue, packed_row_statement, packed_rows_proven};
pub use partition::{integer_split_points, range_predicates};
pub use read_only::check_reads_only;
pub use runtime_filter::{
    FilterColumn, MAX_RUNTIME_FILTER_VALUES, filtered_statement, render_runtime_filter,
    runtime_filters_proven,
};
pub use select::{RemoteSelect, RemoteTable, SelectColumn};
pub use session::{IsolationLevel, SessionSettings};
