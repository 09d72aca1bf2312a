//! ODBC databases as DataFusion tables.
//!
//! - [`OdbcSource`]: one database — its pool ([`pool`]), dialect and catalog ([`discovery`]);
//!   every call to it goes through [`OdbcSource::call`] ([`call`]).
//! - [`OdbcTable`]: a remote table as a `TableProvider` with pushdown.
//! - [`OdbcExec`]: the `ExecutionPlan` streaming one remote statement.
//! - [`install`]: sets a DataFusion session up for these tables (same-source joins and
//!   aggregates pushed as one statement, scans waiting for hash joins' run-time filters).
//! - [`type_map`]: ODBC → Arrow types as pure functions.

#![warn(missing_docs)]

pub mod breaker;
pub mod call;
mod cancel;
pub mod connection_string;
pub mod discovery;
mod environment;
mod error;
mod insert;
mod partitioning;
mod passthrough;
pub mod pool;
mod pushdown;
mod scan;
mod session;
mod source;
mod table;
pub mod tls;
pub mod type_map;

pub use call::{CallContext, CallSpec};
pub use connection_string::ConnectionString;
pub use environment::installed_drivers;
pub use error::OdbcError;
pub use ibarrow_sql::Dialect;
pub use insert::OdbcSink;
pub use partitioning::RangePartitioning;
pub use passthrough::{PassthroughParts, PassthroughTable};
pub use pool::PoolOptions;
pub use pushdown::{SubPlanPushdown, decimal_average, decimal_average_settings};
pub use scan::{
    AwaitJoinFilters, FilteredScan, NoteDroppedRuntimeFilters, OdbcExec, OdbcExecParts,
    ScanColumnStatistics,
};
pub use session::install;
pub use source::{
    Balance, Endpoint, EndpointHealth, EndpointRole, LagReading, OdbcSource, ReadFrom,
    ReplicaOptions, RetryPolicy, ScanOptions, SourceHealth, SourceOptions,
};
pub use table::OdbcTable;
