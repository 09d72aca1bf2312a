//! SQLite through the SQLite3 ODBC driver: no server, dynamic typing.

use datafusion::arrow::datatypes::DataType;

use super::{
    Capabilities, ColumnStatisticsQuery, IndexQuery, KeyUse, SchemaLevel, TableRowsQuery, is_text,
};
use crate::session::IsolationLevel;

#[derive(Debug)]
pub struct Sqlite;

impl Capabilities for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite"
    }

    /// SQLite stores any integer in 64 bits whatever width the column declares, and its
    /// driver reports DECIMAL(p,s) columns as text: the declared type name decides.
    fn maps_types_by_declared_name(&self) -> bool {
        true
    }

    /// The driver reports nonsense fractional-second digits: microseconds, the finest kept.
    fn assumed_fraction_digits(&self) -> Option<i16> {
        Some(6)
    }

    /// SQLite keeps whatever is stored, though its driver sizes buffers by the declared length.
    fn enforces_text_lengths(&self) -> bool {
        false
    }

    /// CHAR(n) is not padded.
    fn pads_fixed_char(&self) -> bool {
        false
    }

    /// SQLite returns what it stored, not text converted from the declared type.
    fn converts_unmapped_types_to_text(&self) -> bool {
        false
    }

    fn schema_level(&self) -> SchemaLevel {
        SchemaLevel::None
    }

    /// No statistics are kept, and counting is cheap (no network, a B-tree walk).
    fn table_rows_query(&self) -> Option<TableRowsQuery> {
        Some(TableRowsQuery::CountRows)
    }

    /// `sqlite_stat1`, written by `ANALYZE`: one row per index, for the column it leads with
    /// (whole-table indexes only: a partial index counts the rows it covers).
    fn column_statistics_query(&self) -> Option<ColumnStatisticsQuery> {
        Some(ColumnStatisticsQuery::SqliteStat1(
            "SELECT ii.name, s.stat FROM sqlite_stat1 AS s \
             JOIN pragma_index_list(?) AS il ON il.name = s.idx AND il.partial = 0 \
             JOIN pragma_index_info(s.idx) AS ii ON ii.seqno = 0 WHERE s.tbl = ?",
        ))
    }

    /// An INTEGER PRIMARY KEY is the rowid, which no index lists: it counts as one.
    fn index_query(&self) -> Option<IndexQuery> {
        Some(IndexQuery::ByTableTwice(
            "SELECT idx, seq, col FROM (\
             SELECT il.name AS idx, ii.seqno AS seq, ii.name AS col \
             FROM pragma_index_list(?) AS il JOIN pragma_index_info(il.name) AS ii \
             WHERE il.partial = 0 \
             UNION ALL SELECT 'rowid', 0, name FROM pragma_table_info(?) \
             WHERE pk = 1 AND upper(type) = 'INTEGER') ORDER BY idx, seq",
        ))
    }

    /// Text groups byte-wise (BINARY collation); decimals are floating point and dates text,
    /// and an untyped column compares text and numbers as unequal, so only integers join or
    /// filter exactly.
    fn compares_keys_exactly(&self, key_use: KeyUse, data_type: &DataType) -> bool {
        data_type.is_integer()
            || (key_use == KeyUse::GroupBy
                && (is_text(data_type)
                    || matches!(data_type, DataType::Date32 | DataType::Boolean)))
    }

    /// DECIMAL values are kept as floating point.
    fn keeps_decimals_exact(&self) -> bool {
        false
    }

    fn compares_strings_bytewise(&self) -> bool {
        true
    }

    /// `<`/`>` follow the column's declared collation, which may be NOCASE.
    fn orders_strings_bytewise(&self) -> bool {
        false
    }

    fn sends_runtime_filters(&self) -> bool {
        true
    }

    /// SQLite refuses statements over 1 000 000 bytes (its default limit), which 32 768 keys
    /// of up to 20 characters stay under.
    fn runtime_filter_value_budget(&self) -> usize {
        32_768
    }

    fn max_condition_bytes(&self) -> usize {
        900_000
    }

    fn read_only_session(&self) -> Option<&'static str> {
        Some("PRAGMA query_only = ON")
    }

    /// Transactions are always serializable; read_uncommitted only applies to shared-cache
    /// connections, which ibarrow does not open.
    fn set_isolation(&self, level: IsolationLevel) -> Result<Option<String>, String> {
        match level {
            IsolationLevel::Serializable => Ok(None),
            level => Err(format!(
                "SQLite runs every transaction SERIALIZABLE and cannot use {level}; leave \
                 isolation_level unset or use serializable"
            )),
        }
    }
}
