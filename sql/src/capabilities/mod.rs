//! What each database (and its ODBC driver) does that ibarrow's decisions depend on, beyond
//! spelling SQL: how columns are described and returned, how its catalog is laid out, which
//! comparisons it makes exactly as DataFusion does, how much a statement may carry and how a
//! session is set up.
//!
//! [`Capabilities`] asks the questions; one type per dialect answers them, in the files beside
//! this one. Every default is the answer for a database ibarrow knows nothing about, so each
//! type states only where its database differs. [`Dialect::capabilities`] is the one place a
//! dialect is matched to its type: the other crates ask a dialect's capabilities and never
//! match on [`Dialect`] themselves.

mod ansi;
mod db2;
mod firebird;
mod mysql;
mod postgresql;
mod sqlite;
mod sqlserver;

use datafusion::arrow::datatypes::DataType;

use crate::dialect::Dialect;
use crate::runtime_filter::MAX_RUNTIME_FILTER_VALUES;
use crate::session::IsolationLevel;

/// How a database names the level above its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaLevel {
    /// Schemas, as the SQL standard has them (PostgreSQL, SQL Server …).
    Schema,
    /// Catalogs that stand for schemas (MariaDB/MySQL databases).
    Catalog,
    /// A single unnamed schema (SQLite): tables are written unqualified.
    None,
}

/// The name ibarrow gives the one schema of a database that has a single unnamed one
/// ([`SchemaLevel::None`]): SQLite's own name for it.
pub const UNNAMED_SCHEMA: &str = "main";

/// How a database's own row estimate of a table is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableRowsQuery {
    /// A statistics query taking the schema and the table name as its two parameters.
    Statistics(&'static str),
    /// No statistics are kept, and counting is cheap (SQLite: no network, a B-tree walk).
    CountRows,
}

/// How a table's column statistics are read, for join planning: distinct values, the fraction
/// of NULLs and the average bytes of a value, as far as the database keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnStatisticsQuery {
    /// Rows of (column, distinct values, NULL fraction, average bytes), any of the last three
    /// NULL where unknown; distinct values below zero are minus their fraction of the rows
    /// (PostgreSQL's `n_distinct`). Parameters: the schema, then the table, for each pair of
    /// placeholders in the text.
    BySchemaAndTable(&'static str),
    /// Rows of (column, `sqlite_stat1.stat`) for the indexes that lead with a column: the
    /// stat's first number is the table's rows, its second the rows per distinct value of that
    /// column. Parameters: the table, for each placeholder. Only after `ANALYZE`.
    SqliteStat1(&'static str),
}

/// How a table's indexes are listed: a query whose rows are (index name, position, column
/// name), each index's key parts in their order; an expression's column name is NULL. Partial
/// indexes (which cover some rows only) are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexQuery {
    /// Parameters: the schema, then the table.
    BySchemaAndTable(&'static str),
    /// Parameters: the table, twice (SQLite, whose pragma functions know no schema).
    ByTableTwice(&'static str),
}

/// How a replica's replication lag is read, for `max_replica_lag_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaLagQuery {
    /// One row of one value: the seconds the server's data is behind its primary (0 on a
    /// server that is not a replica, NULL when it cannot tell).
    Seconds(&'static str),
    /// A status statement whose named column holds the seconds behind: no row means the
    /// server is not a replica, NULL that its replication is not running.
    StatusColumn {
        /// The statement.
        statement: &'static str,
        /// The column of the lag in seconds.
        column: &'static str,
    },
}

/// Where keys are compared, for [`Capabilities::compares_keys_exactly`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// GROUP BY of a pushed aggregate: the database must put together exactly the values
    /// DataFusion would.
    GroupBy,
    /// The equality keys of a pushed join: the database must match exactly the rows
    /// DataFusion would.
    Join,
    /// The keys of a run-time filter (ranges and lists) sent to a probe side: the database
    /// must keep every row the join keeps (it may keep more, which the join drops).
    RuntimeFilter,
}

/// What a database does that ibarrow's decisions depend on. Implemented once per dialect.
pub trait Capabilities: Send + Sync {
    /// The database family's name, as messages write it.
    fn name(&self) -> &'static str;

    // Columns: what the driver describes and returns.

    /// The driver's type codes cannot be trusted, the declared type name can.
    fn maps_types_by_declared_name(&self) -> bool {
        false
    }

    /// Fractional-second digits to assume for time and timestamp columns, where the driver
    /// does not report them or reports nonsense. `None`: the driver's report holds.
    fn assumed_fraction_digits(&self) -> Option<i16> {
        None
    }

    /// The driver returns NULL for every BIT value bound as SQL_C_BIT: booleans are fetched
    /// as small integers.
    fn fetches_booleans_as_integers(&self) -> bool {
        false
    }

    /// The database keeps CHAR(n)/VARCHAR(n) values within their declared length.
    fn enforces_text_lengths(&self) -> bool {
        true
    }

    /// CHAR(n) values arrive padded with blanks.
    fn pads_fixed_char(&self) -> bool {
        true
    }

    /// A column without an Arrow counterpart arrives as text the driver converts from the
    /// column's own type, so the database compares it as that type, not as text.
    fn converts_unmapped_types_to_text(&self) -> bool {
        true
    }

    /// `type_name` (lower case) is a timestamp without time zone whose wall-clock value can be
    /// sent as a number in packed rows.
    fn is_zoneless_timestamp(&self, _type_name: &str) -> bool {
        false
    }

    /// The driver cuts text and binary values that overflow their buffer without reporting
    /// it: a value filling its whole buffer counts as cut.
    fn truncates_values_silently(&self) -> bool {
        false
    }

    /// The driver describes NUMERIC without a precision as having one: the catalog is asked
    /// which columns are unconstrained.
    fn hides_unconstrained_numerics(&self) -> bool {
        false
    }

    // Catalog.

    /// How the database names the level above its tables; schemas unless overridden.
    fn schema_level(&self) -> SchemaLevel {
        SchemaLevel::Schema
    }

    /// The name of the one schema of a database that has a single unnamed one
    /// ([`UNNAMED_SCHEMA`]).
    fn single_schema(&self) -> Option<&'static str> {
        (self.schema_level() == SchemaLevel::None).then_some(UNNAMED_SCHEMA)
    }

    /// Catalog search patterns escape a backslash too.
    fn escapes_backslash_in_patterns(&self) -> bool {
        true
    }

    /// How a table's row estimate is read; `None` where the database keeps none.
    fn table_rows_query(&self) -> Option<TableRowsQuery> {
        None
    }

    /// How a table's column statistics are read; `None` where the database keeps none.
    fn column_statistics_query(&self) -> Option<ColumnStatisticsQuery> {
        None
    }

    /// The database estimates a statement's rows without running it.
    fn estimates_statement_rows(&self) -> bool {
        false
    }

    /// How a table's indexes are listed, for index advice; `None` where ibarrow cannot.
    fn index_query(&self) -> Option<IndexQuery> {
        None
    }

    // Scans.

    /// Small results are better read whole than through the driver's cursor.
    fn reads_small_results_whole(&self) -> bool {
        false
    }

    /// Rows can be asked for as one record text each (`ROW(…)::text`), whose parser is proven
    /// against this database.
    fn packs_rows(&self) -> bool {
        false
    }

    // Comparisons: what the database compares exactly as DataFusion does.

    /// Keys of `data_type` compare (group, match, or fall in a range or list) exactly as in
    /// DataFusion when used as `key_use`. Integers always do; unknown databases also group
    /// dates, booleans and decimals, and nothing else.
    fn compares_keys_exactly(&self, key_use: KeyUse, data_type: &DataType) -> bool {
        data_type.is_integer()
            || (key_use == KeyUse::GroupBy
                && matches!(
                    data_type,
                    DataType::Date32 | DataType::Boolean | DataType::Decimal128(..)
                ))
    }

    /// DECIMAL values are kept exact, so summing them equals DataFusion's.
    fn keeps_decimals_exact(&self) -> bool {
        true
    }

    /// The largest result scale of `+ - *` on decimals the database keeps exactly; `None`:
    /// its decimal arithmetic is not proven to equal DataFusion's.
    fn exact_decimal_arithmetic_scale(&self) -> Option<i16> {
        None
    }

    /// String comparisons are byte-wise (as in DataFusion) once the literal is rendered by
    /// [`Dialect::string_literal`] (and, for ordering, with
    /// [`Capabilities::string_order_collation`]). Unknown databases may compare
    /// case-insensitively.
    fn compares_strings_bytewise(&self) -> bool {
        false
    }

    /// `<`/`>` on strings order as DataFusion does (byte-wise), with
    /// [`Capabilities::string_order_collation`] where one is given.
    fn orders_strings_bytewise(&self) -> bool {
        self.compares_strings_bytewise()
    }

    /// The collation clause that makes `<`/`>` on strings byte-wise.
    fn string_order_collation(&self) -> Option<&'static str> {
        None
    }

    /// `LIKE` compares case-sensitively, as DataFusion's does.
    fn like_is_case_sensitive(&self) -> bool {
        false
    }

    // Run-time filters: how much a statement may carry.

    /// Run-time filters are sent: derived tables, IN lists and literals are proven here.
    fn sends_runtime_filters(&self) -> bool {
        false
    }

    /// How many listed key values one run-time condition may send.
    fn runtime_filter_value_budget(&self) -> usize {
        MAX_RUNTIME_FILTER_VALUES
    }

    /// The longest run-time condition with key lists sent in one statement: 16 MiB, unless
    /// the database accepts less.
    fn max_condition_bytes(&self) -> usize {
        16 * 1024 * 1024
    }

    // Sessions: what every connection is set to when it opens.

    /// The statement that makes a session read-only; `None` where there is none.
    fn read_only_session(&self) -> Option<&'static str> {
        None
    }

    /// How a replica's lag behind its primary is read; `None`: it cannot be, and
    /// `max_replica_lag_secs` keeps such replicas out.
    fn replica_lag_query(&self) -> Option<ReplicaLagQuery> {
        None
    }

    /// The statement that sets a session's isolation level (`Ok(None)`: the database is
    /// always at that level), or why it cannot and what to do instead.
    fn set_isolation(&self, level: IsolationLevel) -> Result<Option<String>, String> {
        Err(format!(
            "setting the isolation level ({level}) is not supported for {}; leave \
             isolation_level unset",
            self.name()
        ))
    }
}

impl Dialect {
    /// What this database does that ibarrow's decisions depend on.
    pub fn capabilities(self) -> &'static dyn Capabilities {
        match self {
            Dialect::PostgreSql => &postgresql::PostgreSql,
            Dialect::MySql => &mysql::MySql,
            Dialect::Sqlite => &sqlite::Sqlite,
            Dialect::MsSql => &sqlserver::SqlServer,
            Dialect::Firebird => &firebird::Firebird,
            Dialect::Db2 => &db2::Db2,
            Dialect::Ansi => &ansi::Ansi,
        }
    }
}

/// Text of any width DataFusion has.
pub(crate) fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialect_has_its_own_type_and_name() {
        let names: Vec<&str> = Dialect::ALL
            .iter()
            .map(|d| d.capabilities().name())
            .collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), Dialect::ALL.len(), "{names:?}");
        for dialect in Dialect::ALL {
            assert_eq!(dialect.capabilities().name(), dialect.name());
        }
    }

    #[test]
    fn key_exactness_follows_each_database() {
        let text = DataType::Utf8;
        let decimal = DataType::Decimal128(12, 2);
        let pg = Dialect::PostgreSql.capabilities();
        let mysql = Dialect::MySql.capabilities();
        let sqlite = Dialect::Sqlite.capabilities();
        let unknown = Dialect::Ansi.capabilities();
        for capabilities in [pg, mysql, sqlite, unknown] {
            for key_use in [KeyUse::GroupBy, KeyUse::Join, KeyUse::RuntimeFilter] {
                assert!(capabilities.compares_keys_exactly(key_use, &DataType::Int64));
                assert!(!capabilities.compares_keys_exactly(key_use, &DataType::Float64));
            }
        }
        // Text: PostgreSQL is byte-wise everywhere; MariaDB's collations fold case, so only
        // a run-time filter (which may let more through) sends text keys.
        assert!(pg.compares_keys_exactly(KeyUse::Join, &text));
        assert!(pg.compares_keys_exactly(KeyUse::GroupBy, &text));
        assert!(!mysql.compares_keys_exactly(KeyUse::Join, &text));
        assert!(!mysql.compares_keys_exactly(KeyUse::GroupBy, &text));
        assert!(mysql.compares_keys_exactly(KeyUse::RuntimeFilter, &text));
        // SQLite groups text byte-wise but keeps decimals as floating point.
        assert!(sqlite.compares_keys_exactly(KeyUse::GroupBy, &text));
        assert!(!sqlite.compares_keys_exactly(KeyUse::GroupBy, &decimal));
        assert!(!sqlite.compares_keys_exactly(KeyUse::RuntimeFilter, &DataType::Date32));
        assert!(mysql.compares_keys_exactly(KeyUse::Join, &decimal));
        assert!(!unknown.compares_keys_exactly(KeyUse::Join, &DataType::Date32));
    }

    #[test]
    fn budgets_and_limits_are_per_database() {
        let sqlite = Dialect::Sqlite.capabilities();
        assert!(sqlite.runtime_filter_value_budget() < MAX_RUNTIME_FILTER_VALUES);
        assert!(sqlite.max_condition_bytes() < 1_000_000);
        assert!(Dialect::MySql.capabilities().max_condition_bytes() < 4 * 1024 * 1024);
        for dialect in Dialect::ALL {
            assert!(
                dialect.capabilities().runtime_filter_value_budget() <= MAX_RUNTIME_FILTER_VALUES
            );
        }
    }
}
