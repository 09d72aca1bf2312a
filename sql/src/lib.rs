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
//! - [`ScanStatement`]: the statement one scan partition sends, in parts (query, columns kept,
//!   conditions, run-time filter, packed rows) rendered once when sent.
//!
//! Literals and identifiers are escaped here and nowhere else.

#![warn(missing_docs)]

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
mod scan_statement;
mod select;
mod session;

pub use aggregate::{AggregateCall, RemoteAggregate};
pub use arithmetic::render_exact_decimal;
pub use capabilities::{
    Capabilities, ColumnStatisticsQuery, IndexQuery, KeyUse, ReplicaLagQuery, SchemaLevel,
    TableRowsQuery, UNNAMED_SCHEMA,
};
pub use dialect::{Dialect, LimitSyntax};
pub use error::SqlError;
pub use filter::render_filter;
pub use join::{JoinKind, RemoteJoin, Side};
pub use literal::render_literal;
pub use packed_row::{PackedColumn, PackedValue};
pub use partition::{integer_split_points, range_predicates};
pub use read_only::check_reads_only;
pub use runtime_filter::{FilterColumn, MAX_RUNTIME_FILTER_VALUES, render_runtime_filter};
pub use scan_statement::{ScanStatement, ScanStatementParts};
pub use select::{RemoteSelect, RemoteTable, SelectColumn};
pub use session::{IsolationLevel, SessionSettings};
