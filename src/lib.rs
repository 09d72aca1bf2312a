//! ibarrow: federated SQL over ODBC databases, planned by Apache DataFusion.
//!
//! [`Engine`] registers each ODBC source as a DataFusion catalog (`<source>.<schema>.<table>`)
//! from a [`Config`] file or a builder, and answers SQL that joins tables across them. The
//! crates below it: [`sql`] renders remote statements per dialect, [`providers`] turns ODBC
//! databases into DataFusion tables.

#![warn(missing_docs)]

pub mod access;
pub mod audit;
mod catalog;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
mod engine;
mod error;
pub mod governance;
pub mod insights;
#[cfg(feature = "log-setup")]
pub mod logging;
pub mod monitor;
mod passthrough;
mod query;
pub mod rate_limit;
pub mod result_cache;

pub use datafusion;
pub use ibarrow_providers as providers;
pub use ibarrow_sql as sql;

/// What a query builder needs in scope: [`Query`], expressions (`col`, `lit`, operators,
/// scalar functions) and the aggregate functions (`count`, `sum`, `avg`, `min`, `max`,
/// `count_distinct`).
pub mod prelude {
    pub use crate::{Engine, Query, Session};
    pub use datafusion::functions_aggregate::expr_fn::{avg, count, count_distinct, max, min, sum};
    pub use datafusion::logical_expr::SortExpr;
    pub use datafusion::prelude::*;
}

pub use config::{
    AuditConfig, BreakerConfig, ByteSize, Config, RateLimitConfig, ResultCacheConfig, RetryConfig,
    RoleConfig, ServerConfig, ServerTlsConfig, SourceConfig, TableConfig, TlsConfig, UserConfig,
};
pub use engine::{
    Engine, EngineBuilder, PartitionedRun, PhysicalQuery, Planning, PreparedStatement,
    ReloadReport, Session,
};
pub use error::{Error, ErrorKind, Result};
pub use ibarrow_providers::{
    EndpointHealth, EndpointRole, LagReading, OdbcError, OdbcSource, OdbcTable, SourceHealth,
    SourceOptions,
};
pub use query::Query;

/// The Rust blocks of the user documentation, compiled as doctests so that they stay true
/// (python/tests/test_docs.py runs the other blocks).
#[cfg(doctest)]
mod documentation {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/getting-started.md")]
    struct GettingStarted;
    #[doc = include_str!("../docs/rust.md")]
    struct Rust;
}
