//! PostgreSQL through psqlODBC.

use datafusion::arrow::datatypes::DataType;

use super::{
    Capabilities, ColumnStatisticsQuery, IndexQuery, KeyUse, ReplicaLagQuery, TableRowsQuery,
    is_text,
};
use crate::session::IsolationLevel;

#[derive(Debug)]
pub struct PostgreSql;

impl Capabilities for PostgreSql {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    /// `timestamp` keeps a wall-clock value, which packed rows send as a number.
    fn is_zoneless_timestamp(&self, type_name: &str) -> bool {
        matches!(type_name, "timestamp" | "timestamp without time zone")
    }

    /// psqlODBC describes NUMERIC without a precision as having one.
    fn hides_unconstrained_numerics(&self) -> bool {
        true
    }

    /// psqlODBC takes a backslash in a catalog pattern literally.
    fn escapes_backslash_in_patterns(&self) -> bool {
        false
    }

    fn table_rows_query(&self) -> Option<TableRowsQuery> {
        Some(TableRowsQuery::Statistics(
            "SELECT c.reltuples FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ? AND c.relname = ?",
        ))
    }

    /// `pg_stats`, filled by `ANALYZE` (and autovacuum). A scan of a parent table reads its
    /// children too: the statistics over all of them (`inherited`) come first where they exist.
    fn column_statistics_query(&self) -> Option<ColumnStatisticsQuery> {
        Some(ColumnStatisticsQuery::BySchemaAndTable(
            "SELECT DISTINCT ON (attname) attname, n_distinct, null_frac, avg_width \
             FROM pg_catalog.pg_stats WHERE schemaname = ? AND tablename = ? \
             ORDER BY attname, inherited DESC",
        ))
    }

    /// Valid, whole-table indexes only; an expression key part (column 0) has no name.
    fn index_query(&self) -> Option<IndexQuery> {
        Some(IndexQuery::BySchemaAndTable(
            "SELECT i.relname, k.position, a.attname FROM pg_catalog.pg_index x \
             JOIN pg_catalog.pg_class t ON t.oid = x.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
             CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) \
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
             AND k.attnum <> 0 \
             WHERE n.nspname = ? AND t.relname = ? AND x.indisvalid AND x.indpred IS NULL \
             ORDER BY i.relname, k.position",
        ))
    }

    /// `EXPLAIN` estimates a statement's rows without running it.
    fn estimates_statement_rows(&self) -> bool {
        true
    }

    /// psqlODBC streams through a cursor, whose query PostgreSQL runs without parallel
    /// workers: a small result is better read whole.
    fn reads_small_results_whole(&self) -> bool {
        true
    }

    /// The record text of `ROW(…)::text` is what `providers/src/scan/packed.rs` parses.
    fn packs_rows(&self) -> bool {
        true
    }

    /// Byte-wise text everywhere (with `COLLATE "C"` for ordering); exact decimals and dates.
    fn compares_keys_exactly(&self, key_use: KeyUse, data_type: &DataType) -> bool {
        data_type.is_integer()
            || matches!(data_type, DataType::Date32 | DataType::Decimal128(..))
            || match key_use {
                KeyUse::GroupBy => is_text(data_type) || *data_type == DataType::Boolean,
                // The join pushdown is proven with plain text columns.
                KeyUse::Join => *data_type == DataType::Utf8,
                KeyUse::RuntimeFilter => is_text(data_type),
            }
    }

    /// NUMERIC keeps every digit.
    fn exact_decimal_arithmetic_scale(&self) -> Option<i16> {
        Some(i16::MAX)
    }

    fn compares_strings_bytewise(&self) -> bool {
        true
    }

    fn string_order_collation(&self) -> Option<&'static str> {
        Some(" COLLATE \"C\"")
    }

    fn like_is_case_sensitive(&self) -> bool {
        true
    }

    fn sends_runtime_filters(&self) -> bool {
        true
    }

    fn read_only_session(&self) -> Option<&'static str> {
        Some("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    }

    /// A standby without a WAL receiver (its replication broken, or restoring from an
    /// archive) cannot tell (NULL). One that has replayed all it received is not behind,
    /// however long ago its last replayed transaction was (an idle primary writes nothing);
    /// otherwise its lag is the age of that transaction.
    fn replica_lag_query(&self) -> Option<ReplicaLagQuery> {
        Some(ReplicaLagQuery::Seconds(
            "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 \
             WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN NULL \
             WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
             ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) \
             END::float8",
        ))
    }

    fn set_isolation(&self, level: IsolationLevel) -> Result<Option<String>, String> {
        match level {
            IsolationLevel::Snapshot => Err(
                "PostgreSQL has no SNAPSHOT isolation level (its REPEATABLE READ reads from a \
                 snapshot); use repeatable_read"
                    .to_string(),
            ),
            level => Ok(Some(format!(
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {level}"
            ))),
        }
    }
}
