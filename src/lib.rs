//! ibarrow: federated SQL over ODBC databases, planned by Apache DataFusion.
//!
//! [`Engine`] registers each ODBC source as a DataFusion catalog (`<source>.<schema>.<table>`)
//! from a [`Config`] file or a builder, and answers SQL that joins tables across them. The
//! crates below it: [`sql`] renders remote statements per dialect, [`providers`] turns ODBC
//! databases into DataFusion tables.

pub mod access;
pub mod audit;
mod catalog;
pub mod config;
mod engine;
mod error;
pub mod governance;
pub mod insights;
#[cfg(feature = "log-setup")]
pub mod logging;
pub mod monitor;
mod passthrough;
pub mod rate_limit;
pub mod result_cache;

pub use datafusion;
pub use ibarrow_providers as providers;
pub use ibarrow_sql as sql;

pub use config::{
    AuditConfig, BreakerConfig, ByteSize, Config, RateLimitConfig, ResultCacheConfig, RetryConfig,
    RoleConfig, ServerConfig, ServerTlsConfig, SourceConfig, TableConfig, TlsConfig, UserConfig,
};
pub use engine::{
    Engine, EngineBuilder, PartitionedRun, PhysicalQuery, Planning, PreparedStatement, Session,
};
pub use error::{Error, ErrorKind, Result};
pub use ibarrow_providers::{OdbcError, OdbcSource, OdbcTable, SourceHealth, SourceOptions};
