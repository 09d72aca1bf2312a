//! MariaDB and MySQL through MariaDB Connector/ODBC.

use datafusion::arrow::datatypes::DataType;

use super::{
    Capabilities, ColumnStatisticsQuery, IndexQuery, KeyUse, ReplicaLagQuery, SchemaLevel,
    TableRowsQuery, is_text,
};
use crate::session::IsolationLevel;

#[derive(Debug)]
pub struct MySql;

impl Capabilities for MySql {
    fn name(&self) -> &'static str {
        "MySQL/MariaDB"
    }

    /// The driver does not report fractional-second digits: microseconds, the finest kept.
    fn assumed_fraction_digits(&self) -> Option<i16> {
        Some(6)
    }

    /// The driver returns NULL for every BIT value bound as SQL_C_BIT.
    fn fetches_booleans_as_integers(&self) -> bool {
        true
    }

    /// MariaDB strips CHAR(n)'s blanks on reading.
    fn pads_fixed_char(&self) -> bool {
        false
    }

    /// The driver cuts values that overflow their buffer without reporting it.
    fn truncates_values_silently(&self) -> bool {
        true
    }

    /// A MariaDB database is what the standard calls a schema, listed as a catalog.
    fn schema_level(&self) -> SchemaLevel {
        SchemaLevel::Catalog
    }

    fn table_rows_query(&self) -> Option<TableRowsQuery> {
        Some(TableRowsQuery::Statistics(
            "SELECT TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        ))
    }

    /// Distinct values of the columns a whole-value index leads with (its cardinality, which
    /// InnoDB samples); the table's average row length spread over its columns. Every
    /// information_schema read names the schema and table itself, so MariaDB opens that table
    /// only.
    fn column_statistics_query(&self) -> Option<ColumnStatisticsQuery> {
        Some(ColumnStatisticsQuery::BySchemaAndTable(
            "SELECT c.COLUMN_NAME, s.CARDINALITY, NULL, t.AVG_ROW_LENGTH / n.COLUMNS \
             FROM information_schema.COLUMNS c \
             LEFT JOIN (SELECT COLUMN_NAME, max(CARDINALITY) AS CARDINALITY \
              FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
              AND SEQ_IN_INDEX = 1 AND SUB_PART IS NULL \
              AND INDEX_TYPE NOT IN ('FULLTEXT', 'SPATIAL') GROUP BY COLUMN_NAME) s \
              ON s.COLUMN_NAME = c.COLUMN_NAME \
             LEFT JOIN (SELECT AVG_ROW_LENGTH FROM information_schema.TABLES \
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND AVG_ROW_LENGTH > 0) t ON 1 = 1 \
             LEFT JOIN (SELECT greatest(count(*), 1) AS COLUMNS FROM information_schema.COLUMNS \
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?) n ON 1 = 1 \
             WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ?",
        ))
    }

    fn index_query(&self) -> Option<IndexQuery> {
        Some(IndexQuery::BySchemaAndTable(
            "SELECT INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             AND INDEX_TYPE NOT IN ('FULLTEXT', 'SPATIAL') ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        ))
    }

    /// Collations usually fold case and ignore trailing blanks, so text groups and joins
    /// stay in DataFusion; a run-time filter may send text keys, since matching more rows
    /// only gives the join more to drop. Decimals and dates are exact.
    fn compares_keys_exactly(&self, key_use: KeyUse, data_type: &DataType) -> bool {
        data_type.is_integer()
            || matches!(data_type, DataType::Date32 | DataType::Decimal128(..))
            || (key_use == KeyUse::GroupBy && *data_type == DataType::Boolean)
            || (key_use == KeyUse::RuntimeFilter && is_text(data_type))
    }

    /// MariaDB keeps at most 30 decimals.
    fn exact_decimal_arithmetic_scale(&self) -> Option<i16> {
        Some(30)
    }

    /// Compared as binary strings (`Dialect::bytewise_string_column`).
    fn compares_strings_bytewise(&self) -> bool {
        true
    }

    /// Patterns are hexadecimal literals, so `LIKE` is byte-wise.
    fn like_is_case_sensitive(&self) -> bool {
        true
    }

    fn sends_runtime_filters(&self) -> bool {
        true
    }

    /// MySQL 5.7 refuses packets over 4 MiB (MariaDB's default is 16 MiB); text keys travel
    /// as hexadecimal, twice their length.
    fn max_condition_bytes(&self) -> usize {
        4 * 1024 * 1024 - 64 * 1024
    }

    fn read_only_session(&self) -> Option<&'static str> {
        Some("SET SESSION TRANSACTION READ ONLY")
    }

    fn replica_lag_query(&self) -> Option<ReplicaLagQuery> {
        Some(ReplicaLagQuery::StatusColumn {
            statement: "SHOW SLAVE STATUS",
            column: "Seconds_Behind_Master",
        })
    }

    fn set_isolation(&self, level: IsolationLevel) -> Result<Option<String>, String> {
        match level {
            IsolationLevel::Snapshot => Err(
                "MySQL/MariaDB has no SNAPSHOT isolation level (its REPEATABLE READ reads from \
                 a snapshot); use repeatable_read"
                    .to_string(),
            ),
            level => Ok(Some(format!(
                "SET SESSION TRANSACTION ISOLATION LEVEL {level}"
            ))),
        }
    }
}
