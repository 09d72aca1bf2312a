//! What each database (and its ODBC driver) does that ibarrow's decisions depend on, beyond
//! spelling SQL: how columns are described and returned, how its catalog is laid out, and
//! which comparisons it makes exactly as DataFusion does. Every database-specific decision of
//! the other crates asks one of these; none matches on [`Dialect`] itself.

use crate::dialect::Dialect;

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

impl Dialect {
    // Columns: what the driver describes and returns.

    /// The driver's type codes cannot be trusted, the declared type name can: SQLite stores any
    /// integer in 64 bits whatever width the column declares, and its driver reports
    /// DECIMAL(p,s) columns as text.
    pub fn maps_types_by_declared_name(self) -> bool {
        self == Dialect::Sqlite
    }

    /// Fractional-second digits to assume for time and timestamp columns, where the driver
    /// does not report them (MariaDB's) or reports nonsense (SQLite's): microseconds, the
    /// finest either keeps. `None`: the driver's report holds.
    pub fn assumed_fraction_digits(self) -> Option<i16> {
        matches!(self, Dialect::MySql | Dialect::Sqlite).then_some(6)
    }

    /// The driver returns NULL for every BIT value bound as SQL_C_BIT (MariaDB's): booleans
    /// are fetched as small integers.
    pub fn fetches_booleans_as_integers(self) -> bool {
        self == Dialect::MySql
    }

    /// The database keeps CHAR(n)/VARCHAR(n) values within their declared length (SQLite keeps
    /// whatever is stored, though its driver sizes buffers by the declared length).
    pub fn enforces_text_lengths(self) -> bool {
        self != Dialect::Sqlite
    }

    /// CHAR(n) values arrive padded with blanks (MariaDB strips them on reading; SQLite does
    /// not pad).
    pub fn pads_fixed_char(self) -> bool {
        !matches!(self, Dialect::Sqlite | Dialect::MySql)
    }

    /// A column without an Arrow counterpart arrives as text the driver converts from the
    /// column's own type, so the database compares it as that type, not as text (SQLite
    /// returns what it stored).
    pub fn converts_unmapped_types_to_text(self) -> bool {
        self != Dialect::Sqlite
    }

    /// `type_name` (lower case) is a timestamp without time zone whose wall-clock value can be
    /// sent as a number in packed rows (PostgreSQL's `timestamp`).
    pub fn is_zoneless_timestamp(self, type_name: &str) -> bool {
        self == Dialect::PostgreSql
            && matches!(type_name, "timestamp" | "timestamp without time zone")
    }

    /// The driver cuts text and binary values that overflow their buffer without reporting
    /// it (MariaDB's): a value filling its whole buffer counts as cut.
    pub fn truncates_values_silently(self) -> bool {
        self == Dialect::MySql
    }

    /// The driver describes NUMERIC without a precision as having one (psqlODBC): the catalog
    /// is asked which columns are unconstrained.
    pub fn hides_unconstrained_numerics(self) -> bool {
        self == Dialect::PostgreSql
    }

    // Catalog.

    pub fn schema_level(self) -> SchemaLevel {
        match self {
            Dialect::MySql => SchemaLevel::Catalog,
            Dialect::Sqlite => SchemaLevel::None,
            _ => SchemaLevel::Schema,
        }
    }

    /// The name of the one schema of a database that has a single unnamed one
    /// ([`UNNAMED_SCHEMA`]).
    pub fn single_schema(self) -> Option<&'static str> {
        (self.schema_level() == SchemaLevel::None).then_some(UNNAMED_SCHEMA)
    }

    /// Catalog search patterns escape a backslash too (all but PostgreSQL, whose driver takes
    /// it literally).
    pub fn escapes_backslash_in_patterns(self) -> bool {
        self != Dialect::PostgreSql
    }

    /// How a table's row estimate is read; `None` where the database keeps none.
    pub fn table_rows_query(self) -> Option<TableRowsQuery> {
        match self {
            Dialect::PostgreSql => Some(TableRowsQuery::Statistics(
                "SELECT c.reltuples FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = ? AND c.relname = ?",
            )),
            Dialect::MySql => Some(TableRowsQuery::Statistics(
                "SELECT TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            )),
            Dialect::Sqlite => Some(TableRowsQuery::CountRows),
            _ => None,
        }
    }

    /// The database estimates a statement's rows without running it (PostgreSQL's `EXPLAIN`).
    pub fn estimates_statement_rows(self) -> bool {
        self == Dialect::PostgreSql
    }

    // Scans.

    /// Small results are better read whole than through the driver's cursor: psqlODBC streams
    /// through a cursor, whose query PostgreSQL runs without parallel workers.
    pub fn reads_small_results_whole(self) -> bool {
        self == Dialect::PostgreSql
    }

    // Pushdown: what the database compares exactly as DataFusion does.

    /// GROUP BY on text puts the same values together as DataFusion does (byte-wise, no
    /// case folding, trailing blanks significant).
    pub fn groups_strings_bytewise(self) -> bool {
        matches!(self, Dialect::PostgreSql | Dialect::Sqlite)
    }

    /// DECIMAL values are kept exact, so grouping and summing them equals DataFusion's
    /// (SQLite keeps them as floating point).
    pub fn keeps_decimals_exact(self) -> bool {
        self != Dialect::Sqlite
    }

    /// A join on dates or decimals matches the same rows as DataFusion's.
    pub fn joins_dates_and_decimals_exactly(self) -> bool {
        matches!(self, Dialect::PostgreSql | Dialect::MySql)
    }

    /// A join on text matches the same rows as DataFusion's (byte-wise equality).
    pub fn joins_strings_exactly(self) -> bool {
        self == Dialect::PostgreSql
    }
}
