//! ibarrow: federated SQL over ODBC databases, planned by Apache DataFusion.
//!
//! The engine (`Engine`, catalogs, configuration) builds on the two crates re-exported here:
//! [`sql`] renders remote statements per dialect, [`providers`] turns ODBC databases into
//! DataFusion tables.

pub use datafusion;
pub use ibarrow_providers as providers;
pub use ibarrow_sql as sql;

pub use ibarrow_providers::{OdbcError, OdbcSource, OdbcTable, SourceOptions};
