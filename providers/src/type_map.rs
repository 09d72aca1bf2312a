//! ODBC column descriptions (from `SQLColumns`) → Arrow types, as pure functions.
//!
//! Each column gets two types: the one DataFusion sees ([`MappedColumn::field`]) and the one
//! arrow-odbc fetches ([`MappedColumn::fetch_type`]). They differ where arrow-odbc has no direct
//! buffer for the type (unsigned integers wider than 8 bits): the fetched array is cast
//! losslessly after each batch.

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use ibarrow_sql::Dialect;

/// The SQL type codes of the ODBC specification that the mapping distinguishes.
mod sql_type {
    pub const CHAR: i16 = 1;
    pub const NUMERIC: i16 = 2;
    pub const DECIMAL: i16 = 3;
    pub const INTEGER: i16 = 4;
    pub const SMALLINT: i16 = 5;
    pub const FLOAT: i16 = 6;
    pub const REAL: i16 = 7;
    pub const DOUBLE: i16 = 8;
    pub const DATE_V2: i16 = 9;
    pub const TIME_V2: i16 = 10;
    pub const TIMESTAMP_V2: i16 = 11;
    pub const VARCHAR: i16 = 12;
    pub const TYPE_DATE: i16 = 91;
    pub const TYPE_TIME: i16 = 92;
    pub const TYPE_TIMESTAMP: i16 = 93;
    pub const LONGVARCHAR: i16 = -1;
    pub const BINARY: i16 = -2;
    pub const VARBINARY: i16 = -3;
    pub const LONGVARBINARY: i16 = -4;
    pub const BIGINT: i16 = -5;
    pub const TINYINT: i16 = -6;
    pub const BIT: i16 = -7;
    pub const WCHAR: i16 = -8;
    pub const WVARCHAR: i16 = -9;
    pub const WLONGVARCHAR: i16 = -10;
    pub const GUID: i16 = -11;
    pub const SS_TIME2: i16 = -154;
}

/// One row of `SQLColumns`, reduced to what the mapping needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// `COLUMN_NAME`: the column's name as the database spells it.
    pub name: String,
    /// `DATA_TYPE`: the ODBC SQL type code.
    pub data_type: i16,
    /// `TYPE_NAME`: the database's own name (`int unsigned`, `DECIMAL(15,2)`, `timestamptz`).
    pub type_name: String,
    /// `COLUMN_SIZE`: precision for numbers, characters for text, bytes for binary.
    pub column_size: Option<i32>,
    /// `DECIMAL_DIGITS`: scale for numbers, fractional-second digits for times.
    pub decimal_digits: Option<i16>,
    /// `NULLABLE`: whether the column may hold NULL (unknown counts as nullable).
    pub nullable: bool,
}

/// How one remote column is presented to DataFusion and fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedColumn {
    /// The column as DataFusion sees it: name, Arrow type and nullability.
    pub field: Field,
    /// How its values are fetched and fixed up.
    pub fetch: ColumnFetch,
}

/// How a column's values are read and fixed up after each batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnFetch {
    /// The type arrow-odbc binds ([`fetch_type`]).
    pub fetch_type: DataType,
    /// The database converts the column to text in the SELECT: it is shown as Utf8 but its
    /// driver describes it as something else (unconstrained or 39+ digit numerics …). Such
    /// columns compare differently remotely, so filters on them stay local.
    pub read_as_text: bool,
    /// CHAR(n) values arrive blank-padded from databases that pad (PostgreSQL, SQL Server …);
    /// trailing blanks are removed so values compare as the database compares them.
    pub trim_trailing_blanks: bool,
    /// The most bytes a text value can take, where the database enforces a declared length
    /// (CHAR(n)/VARCHAR(n) up to 254 characters). Lets PostgreSQL scans fetch rows packed
    /// ([`crate::OdbcExec`]).
    pub max_text_bytes: Option<usize>,
    /// The most bytes a text value takes by the length its column declares (4 per character),
    /// enforced or not: drivers size their buffers by it, so it bounds the fetch buffers
    /// (`providers/src/scan/fetch.rs`, `fetch_buffer_bytes`).
    pub declared_text_bytes: Option<usize>,
    /// A PostgreSQL `timestamp` (without time zone): its wall-clock value can be sent as a
    /// number in packed rows. `timestamptz` is not, since the driver and the server may
    /// disagree on the zone it is shown in.
    pub zoneless_timestamp: bool,
}

/// The columns filters may name, for [`ibarrow_sql::render_filter`]: those read as text are
/// left out (the database compares them as their own type), so filters on them stay local.
pub fn filter_schema(
    schema: &datafusion::arrow::datatypes::Schema,
    fetch: &[ColumnFetch],
) -> datafusion::arrow::datatypes::Schema {
    datafusion::arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .zip(fetch)
            .filter(|(_, fetch)| !fetch.read_as_text)
            .map(|(field, _)| std::sync::Arc::clone(field))
            .collect::<Vec<_>>(),
    )
}

/// Maps a column. Types without an exact Arrow counterpart (intervals, JSON, UUID, geometry,
/// numerics wider than 38 digits …) are read as text, which every driver can produce.
pub fn map_column(column: &ColumnInfo, dialect: Dialect) -> MappedColumn {
    let output = arrow_type(column, dialect);
    let fixed_char = matches!(column.data_type, sql_type::CHAR | sql_type::WCHAR);
    let character = matches!(
        column.data_type,
        sql_type::CHAR
            | sql_type::VARCHAR
            | sql_type::LONGVARCHAR
            | sql_type::WCHAR
            | sql_type::WVARCHAR
            | sql_type::WLONGVARCHAR
            | sql_type::GUID
    );
    let read_as_text = output == DataType::Utf8
        && !character
        && dialect.capabilities().converts_unmapped_types_to_text();
    let fetch = ColumnFetch {
        fetch_type: fetch_type(&output, dialect),
        read_as_text,
        trim_trailing_blanks: fixed_char
            && output == DataType::Utf8
            && dialect.capabilities().pads_fixed_char(),
        max_text_bytes: enforced_text_bytes(column, dialect),
        // A column converted to text is described by the driver as the conversion's text,
        // not by its declared size.
        declared_text_bytes: column
            .column_size
            .filter(|&chars| chars > 0 && !read_as_text)
            .map(|chars| chars as usize * 4),
        zoneless_timestamp: is_postgres_zoneless_timestamp(column, dialect),
    };
    MappedColumn {
        field: Field::new(&column.name, output, column.nullable),
        fetch,
    }
}

fn is_postgres_zoneless_timestamp(column: &ColumnInfo, dialect: Dialect) -> bool {
    matches!(
        column.data_type,
        sql_type::TYPE_TIMESTAMP | sql_type::TIMESTAMP_V2
    ) && dialect
        .capabilities()
        .is_zoneless_timestamp(&column.type_name.to_ascii_lowercase())
}

/// CHAR/VARCHAR columns' longest value in UTF-8 bytes, where the declared length binds.
fn enforced_text_bytes(column: &ColumnInfo, dialect: Dialect) -> Option<usize> {
    /// psqlODBC reports its `MaxVarcharSize` for a VARCHAR without a length: 255 by default,
    /// `max_text_size` as ibarrow connects. Longer declared lengths are not trusted.
    const LONGEST_BOUNDED: i32 = 254;
    let bounded = matches!(
        column.data_type,
        sql_type::CHAR | sql_type::VARCHAR | sql_type::WCHAR | sql_type::WVARCHAR
    );
    match column.column_size {
        Some(chars @ 1..=LONGEST_BOUNDED)
            if bounded && dialect.capabilities().enforces_text_lengths() =>
        {
            Some(chars as usize * 4)
        }
        _ => None,
    }
}

/// The Arrow type DataFusion sees for a column.
pub fn arrow_type(column: &ColumnInfo, dialect: Dialect) -> DataType {
    use sql_type as t;
    let type_name = column.type_name.to_ascii_lowercase();
    let unsigned = type_name.contains("unsigned");
    if dialect.capabilities().maps_types_by_declared_name() {
        if let Some(mapped) = sqlite_declared_type(&type_name) {
            return mapped;
        }
        if matches!(
            column.data_type,
            t::TINYINT | t::SMALLINT | t::INTEGER | t::BIGINT
        ) {
            return DataType::Int64;
        }
    }
    match column.data_type {
        t::BIT if column.column_size.unwrap_or(1) <= 1 => DataType::Boolean,
        t::BIT => DataType::Binary,
        t::TINYINT if unsigned => DataType::UInt8,
        t::TINYINT => DataType::Int8,
        t::SMALLINT if unsigned => DataType::UInt16,
        t::SMALLINT => DataType::Int16,
        t::INTEGER if unsigned => DataType::UInt32,
        t::INTEGER => DataType::Int32,
        t::BIGINT if unsigned => DataType::UInt64,
        t::BIGINT => DataType::Int64,
        t::REAL => DataType::Float32,
        // ODBC's FLOAT is double precision unless a small binary precision is declared; a
        // float4 widened to float8 loses nothing, so only REAL maps to Float32.
        t::FLOAT | t::DOUBLE => DataType::Float64,
        t::NUMERIC | t::DECIMAL => decimal_type(column.column_size, column.decimal_digits),
        t::TYPE_DATE | t::DATE_V2 => DataType::Date32,
        t::TYPE_TIME | t::TIME_V2 | t::SS_TIME2 => time_type(fraction_digits(column, dialect)),
        t::TYPE_TIMESTAMP | t::TIMESTAMP_V2 => {
            DataType::Timestamp(time_unit(fraction_digits(column, dialect)), None)
        }
        t::BINARY | t::VARBINARY | t::LONGVARBINARY => DataType::Binary,
        t::CHAR
        | t::VARCHAR
        | t::LONGVARCHAR
        | t::WCHAR
        | t::WVARCHAR
        | t::WLONGVARCHAR
        | t::GUID => DataType::Utf8,
        _ => DataType::Utf8,
    }
}

/// The type arrow-odbc binds for an output type: arrow-odbc reads unsigned integers only as
/// `UInt8`, so wider ones are fetched as the next signed type (or a 20-digit decimal) and cast.
/// REAL is fetched as DOUBLE (exact for every 32-bit float): MariaDB's driver returns wrong
/// values for 32-bit floats in block fetches. It also returns NULL for every BIT value bound
/// as SQL_C_BIT, so MariaDB booleans are fetched as small integers.
pub fn fetch_type(output: &DataType, dialect: Dialect) -> DataType {
    match output {
        DataType::Float32 => DataType::Float64,
        DataType::Boolean if dialect.capabilities().fetches_booleans_as_integers() => {
            DataType::Int8
        }
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::UInt64 => DataType::Decimal128(20, 0),
        other => other.clone(),
    }
}

fn decimal_type(precision: Option<i32>, scale: Option<i16>) -> DataType {
    let scale = scale.unwrap_or(0);
    match precision {
        Some(p @ 1..=38) if (0..=p as i16).contains(&scale) => {
            DataType::Decimal128(p as u8, scale as i8)
        }
        // Wider or unconstrained numerics would lose digits in 128 bits: keep them exact as text.
        _ => DataType::Utf8,
    }
}

/// Fractional-second digits of a time or timestamp column, as reported or as the dialect
/// assumes where its driver's report cannot be trusted.
fn fraction_digits(column: &ColumnInfo, dialect: Dialect) -> Option<i16> {
    dialect
        .capabilities()
        .assumed_fraction_digits()
        .or(column.decimal_digits)
}

fn time_unit(fraction_digits: Option<i16>) -> TimeUnit {
    match fraction_digits.unwrap_or(0) {
        ..=0 => TimeUnit::Second,
        1..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

fn time_type(fraction_digits: Option<i16>) -> DataType {
    match time_unit(fraction_digits) {
        unit @ (TimeUnit::Second | TimeUnit::Millisecond) => DataType::Time32(unit),
        unit => DataType::Time64(unit),
    }
}

/// SQLite's declared column types, following its affinity rules where they decide the storage.
fn sqlite_declared_type(type_name: &str) -> Option<DataType> {
    let base = type_name.split('(').next().unwrap_or("").trim();
    if base.contains("int") {
        return Some(DataType::Int64);
    }
    if base == "decimal" || base == "numeric" {
        let args = type_name
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(args, _)| args)?;
        let mut parts = args.split(',').map(|p| p.trim().parse::<i32>());
        let precision = parts.next()?.ok()?;
        let scale = match parts.next() {
            Some(scale) => scale.ok()?,
            None => 0,
        };
        return Some(decimal_type(Some(precision), Some(scale as i16)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn column(
        data_type: i16,
        type_name: &str,
        size: Option<i32>,
        digits: Option<i16>,
    ) -> ColumnInfo {
        ColumnInfo {
            name: "c".into(),
            data_type,
            type_name: type_name.into(),
            column_size: size,
            decimal_digits: digits,
            nullable: true,
        }
    }

    #[test_case(sql_type::TINYINT, "tinyint", DataType::Int8)]
    #[test_case(sql_type::TINYINT, "tinyint unsigned", DataType::UInt8)]
    #[test_case(sql_type::SMALLINT, "smallint unsigned", DataType::UInt16)]
    #[test_case(sql_type::INTEGER, "int", DataType::Int32)]
    #[test_case(sql_type::INTEGER, "INT UNSIGNED", DataType::UInt32)]
    #[test_case(sql_type::BIGINT, "bigint unsigned", DataType::UInt64)]
    #[test_case(sql_type::BIGINT, "int8", DataType::Int64)]
    #[test_case(sql_type::REAL, "float4", DataType::Float32)]
    #[test_case(sql_type::FLOAT, "float8", DataType::Float64)]
    #[test_case(sql_type::DOUBLE, "double", DataType::Float64)]
    #[test_case(sql_type::BIT, "bool", DataType::Boolean)]
    #[test_case(sql_type::TYPE_DATE, "date", DataType::Date32)]
    #[test_case(sql_type::VARBINARY, "bytea", DataType::Binary)]
    #[test_case(sql_type::WVARCHAR, "varchar", DataType::Utf8)]
    #[test_case(-150, "sql_variant", DataType::Utf8)]
    fn maps_types(data_type: i16, type_name: &str, expected: DataType) {
        let size = if data_type == sql_type::BIT { 1 } else { 10 };
        let mapped = arrow_type(
            &column(data_type, type_name, Some(size), Some(0)),
            Dialect::MySql,
        );
        assert_eq!(mapped, expected);
    }

    #[test_case(Some(15), Some(2), DataType::Decimal128(15, 2))]
    #[test_case(Some(38), Some(38), DataType::Decimal128(38, 38))]
    #[test_case(Some(39), Some(0), DataType::Utf8)]
    #[test_case(None, None, DataType::Utf8)]
    fn decimals_keep_precision_or_become_text(p: Option<i32>, s: Option<i16>, expected: DataType) {
        let mapped = arrow_type(
            &column(sql_type::DECIMAL, "numeric", p, s),
            Dialect::PostgreSql,
        );
        assert_eq!(mapped, expected);
    }

    #[test_case(Some(0), DataType::Timestamp(TimeUnit::Second, None))]
    #[test_case(Some(3), DataType::Timestamp(TimeUnit::Millisecond, None))]
    #[test_case(Some(6), DataType::Timestamp(TimeUnit::Microsecond, None))]
    #[test_case(Some(9), DataType::Timestamp(TimeUnit::Nanosecond, None))]
    fn timestamps_keep_fractional_precision(digits: Option<i16>, expected: DataType) {
        let mapped = arrow_type(
            &column(sql_type::TYPE_TIMESTAMP, "timestamp", Some(26), digits),
            Dialect::PostgreSql,
        );
        assert_eq!(mapped, expected);
    }

    #[test]
    fn mariadb_and_sqlite_times_are_read_in_microseconds() {
        let datetime = column(sql_type::TYPE_TIMESTAMP, "DATETIME", Some(19), None);
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert_eq!(arrow_type(&datetime, Dialect::MySql), micros);
        assert_eq!(arrow_type(&datetime, Dialect::Sqlite), micros);
        let time = column(sql_type::TYPE_TIME, "TIME", Some(8), None);
        assert_eq!(
            arrow_type(&time, Dialect::MySql),
            DataType::Time64(TimeUnit::Microsecond)
        );
    }

    #[test_case("timestamp", Dialect::PostgreSql, true)]
    #[test_case("timestamp without time zone", Dialect::PostgreSql, true)]
    #[test_case("timestamptz", Dialect::PostgreSql, false)]
    #[test_case("timestamp with time zone", Dialect::PostgreSql, false)]
    #[test_case("DATETIME", Dialect::MySql, false)]
    #[test_case("timestamp", Dialect::Sqlite, false)]
    fn only_postgres_timestamps_without_zone_are_zoneless(
        type_name: &str,
        dialect: Dialect,
        zoneless: bool,
    ) {
        let timestamp = column(sql_type::TYPE_TIMESTAMP, type_name, Some(26), Some(6));
        assert_eq!(
            map_column(&timestamp, dialect).fetch.zoneless_timestamp,
            zoneless
        );
    }

    #[test_case("INTEGER", DataType::Int64)]
    #[test_case("DECIMAL(15,2)", DataType::Decimal128(15, 2))]
    #[test_case("numeric(10)", DataType::Decimal128(10, 0))]
    fn sqlite_maps_by_declared_type(type_name: &str, expected: DataType) {
        let mapped = arrow_type(
            &column(sql_type::VARCHAR, type_name, Some(255), None),
            Dialect::Sqlite,
        );
        assert_eq!(mapped, expected);
    }

    #[test]
    fn wide_unsigned_integers_are_fetched_signed() {
        let fetch = |t| fetch_type(&t, Dialect::PostgreSql);
        assert_eq!(fetch(DataType::UInt16), DataType::Int32);
        assert_eq!(fetch(DataType::UInt32), DataType::Int64);
        assert_eq!(fetch(DataType::UInt64), DataType::Decimal128(20, 0));
        assert_eq!(fetch(DataType::UInt8), DataType::UInt8);
        assert_eq!(fetch(DataType::Float32), DataType::Float64);
        assert_eq!(fetch(DataType::Boolean), DataType::Boolean);
        assert_eq!(
            fetch_type(&DataType::Boolean, Dialect::MySql),
            DataType::Int8
        );
    }

    #[test]
    fn only_padded_char_columns_are_trimmed() {
        let char_column = column(sql_type::CHAR, "bpchar", Some(5), None);
        assert!(
            map_column(&char_column, Dialect::PostgreSql)
                .fetch
                .trim_trailing_blanks
        );
        assert!(
            !map_column(&char_column, Dialect::Sqlite)
                .fetch
                .trim_trailing_blanks
        );
        let numeric = column(sql_type::NUMERIC, "numeric", None, None);
        assert!(map_column(&numeric, Dialect::PostgreSql).fetch.read_as_text);
        assert!(
            !map_column(&char_column, Dialect::PostgreSql)
                .fetch
                .read_as_text
        );
        let varchar = column(sql_type::VARCHAR, "varchar", Some(5), None);
        assert!(
            !map_column(&varchar, Dialect::PostgreSql)
                .fetch
                .trim_trailing_blanks
        );
    }
}
