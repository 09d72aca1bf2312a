//! Every mapped type survives the trip database → ODBC → Arrow, with NULLs and boundary values.

mod common;

use common::{Profile, collect, hostile_texts, row_count, session_with, unique_name};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;
use ibarrow_providers::SourceOptions;
use test_case::test_case;

/// A column type in one database: its DDL, the Arrow type expected, two values as SQL
/// literals and how those values must read back.
struct Case {
    ddl: &'static str,
    arrow: DataType,
    literals: [&'static str; 2],
    expected: [&'static str; 2],
}

const fn case(
    ddl: &'static str,
    arrow: DataType,
    literals: [&'static str; 2],
    expected: [&'static str; 2],
) -> Case {
    Case {
        ddl,
        arrow,
        literals,
        expected,
    }
}

impl Case {
    /// The three rows as they must read: both values, then NULL.
    fn shown(&self) -> Vec<String> {
        vec![
            expand(self.expected[0]),
            expand(self.expected[1]),
            "NULL".to_string(),
        ]
    }
}

/// A column's three values as text.
fn shown(column: &datafusion::arrow::array::ArrayRef) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let formatter = ArrayFormatter::try_new(column.as_ref(), &options).unwrap();
    (0..3).map(|r| formatter.value(r).to_string()).collect()
}

/// Expected values written `repeat:<char>:<count>` stand for long generated strings.
fn expand(expected: &str) -> String {
    match expected
        .strip_prefix("repeat:")
        .and_then(|r| r.split_once(':'))
    {
        Some((c, n)) => c.repeat(n.parse().expect("repeat count")),
        None => expected.to_string(),
    }
}

fn cases(db: Profile) -> Vec<Case> {
    use DataType::*;
    match db {
        Profile::Postgres => vec![
            case("SMALLINT", Int16, ["-32768", "32767"], ["-32768", "32767"]),
            case(
                "INTEGER",
                Int32,
                ["-2147483648", "2147483647"],
                ["-2147483648", "2147483647"],
            ),
            case(
                "BIGINT",
                Int64,
                ["-9223372036854775808", "9223372036854775807"],
                ["-9223372036854775808", "9223372036854775807"],
            ),
            case("REAL", Float32, ["-1.5", "3.25"], ["-1.5", "3.25"]),
            case(
                "DOUBLE PRECISION",
                Float64,
                ["-1.0e300", "2.5"],
                ["-1e300", "2.5"],
            ),
            case(
                "NUMERIC(38,10)",
                Decimal128(38, 10),
                ["-9999999999999999999999999999.9999999999", "0.0000000001"],
                ["-9999999999999999999999999999.9999999999", "0.0000000001"],
            ),
            case(
                "NUMERIC(5,2)",
                Decimal128(5, 2),
                ["-999.99", "1.50"],
                ["-999.99", "1.50"],
            ),
            case(
                "NUMERIC",
                Utf8,
                ["-1.234567890123456789012345678901234567890123", "1e-30"],
                [
                    "-1.234567890123456789012345678901234567890123",
                    "0.000000000000000000000000000001",
                ],
            ),
            case(
                "VARCHAR",
                Utf8,
                ["repeat('v', 1000)", "'short'"],
                ["repeat:v:1000", "short"],
            ),
            case(
                "TEXT",
                Utf8,
                ["repeat('t', 12000)", "''"],
                ["repeat:t:12000", ""],
            ),
            case("BOOLEAN", Boolean, ["TRUE", "FALSE"], ["true", "false"]),
            case(
                "DATE",
                Date32,
                ["'0001-01-01'", "'9999-12-31'"],
                ["0001-01-01", "9999-12-31"],
            ),
            case(
                "TIME(0)",
                Time32(TimeUnit::Second),
                ["'00:00:00'", "'23:59:59'"],
                ["00:00:00", "23:59:59"],
            ),
            case(
                "TIMESTAMP(0)",
                Timestamp(TimeUnit::Second, None),
                ["'1970-01-01 00:00:00'", "'2262-04-11 23:47:16'"],
                ["1970-01-01T00:00:00", "2262-04-11T23:47:16"],
            ),
            case(
                "TIMESTAMP(6)",
                Timestamp(TimeUnit::Microsecond, None),
                [
                    "'1900-01-01 00:00:00.000001'",
                    "'2024-02-29 12:34:56.789012'",
                ],
                ["1900-01-01T00:00:00.000001", "2024-02-29T12:34:56.789012"],
            ),
            case("CHAR(5)", Utf8, ["'ab'", "'abcde'"], ["ab", "abcde"]),
            case("VARCHAR(20)", Utf8, ["''", "'é中文 ✓'"], ["", "é中文 ✓"]),
            case(
                "TEXT",
                Utf8,
                ["'it''s'", "'line\nbreak'"],
                ["it's", "line\nbreak"],
            ),
            case(
                "BYTEA",
                Binary,
                ["'\\x00ff'::bytea", "''::bytea"],
                ["00ff", ""],
            ),
        ],
        Profile::MariaDb => vec![
            case("TINYINT", Int8, ["-128", "127"], ["-128", "127"]),
            case("TINYINT UNSIGNED", UInt8, ["0", "255"], ["0", "255"]),
            case("SMALLINT", Int16, ["-32768", "32767"], ["-32768", "32767"]),
            case("SMALLINT UNSIGNED", UInt16, ["0", "65535"], ["0", "65535"]),
            case(
                "INT",
                Int32,
                ["-2147483648", "2147483647"],
                ["-2147483648", "2147483647"],
            ),
            case(
                "INT UNSIGNED",
                UInt32,
                ["0", "4294967295"],
                ["0", "4294967295"],
            ),
            case(
                "BIGINT",
                Int64,
                ["-9223372036854775808", "9223372036854775807"],
                ["-9223372036854775808", "9223372036854775807"],
            ),
            case(
                "BIGINT UNSIGNED",
                UInt64,
                ["0", "18446744073709551615"],
                ["0", "18446744073709551615"],
            ),
            case("FLOAT", Float32, ["-1.5", "3.25"], ["-1.5", "3.25"]),
            case("DOUBLE", Float64, ["-1.0e300", "2.5"], ["-1e300", "2.5"]),
            case(
                "DECIMAL(38,10)",
                Decimal128(38, 10),
                ["-9999999999999999999999999999.9999999999", "0.0000000001"],
                ["-9999999999999999999999999999.9999999999", "0.0000000001"],
            ),
            case("BIT(1)", Boolean, ["1", "0"], ["true", "false"]),
            case(
                "DATE",
                Date32,
                ["'1000-01-01'", "'9999-12-31'"],
                ["1000-01-01", "9999-12-31"],
            ),
            case(
                "TIME(3)",
                Time64(TimeUnit::Microsecond),
                ["'00:00:00'", "'23:59:59.125'"],
                ["00:00:00", "23:59:59.125"],
            ),
            case(
                "DATETIME",
                Timestamp(TimeUnit::Microsecond, None),
                ["'1000-01-01 00:00:00'", "'2262-04-11 23:47:16'"],
                ["1000-01-01T00:00:00", "2262-04-11T23:47:16"],
            ),
            case(
                "DATETIME(6)",
                Timestamp(TimeUnit::Microsecond, None),
                [
                    "'1900-01-01 00:00:00.000001'",
                    "'2024-02-29 12:34:56.789012'",
                ],
                ["1900-01-01T00:00:00.000001", "2024-02-29T12:34:56.789012"],
            ),
            case("CHAR(5)", Utf8, ["'ab'", "'abcde'"], ["ab", "abcde"]),
            case("VARCHAR(20)", Utf8, ["''", "'é中文 ✓'"], ["", "é中文 ✓"]),
            case(
                "TEXT",
                Utf8,
                ["'it''s'", "'line\\nbreak'"],
                ["it's", "line\nbreak"],
            ),
            case(
                "LONGTEXT",
                Utf8,
                ["repeat('t', 12000)", "''"],
                ["repeat:t:12000", ""],
            ),
            case("VARBINARY(10)", Binary, ["X'00FF'", "X''"], ["00ff", ""]),
            case("BLOB", Binary, ["X'DEADBEEF'", "X'00'"], ["deadbeef", "00"]),
        ],
        Profile::Sqlite => vec![
            case(
                "INTEGER",
                Int64,
                ["-9223372036854775808", "9223372036854775807"],
                ["-9223372036854775808", "9223372036854775807"],
            ),
            case("SMALLINT", Int64, ["-32768", "32767"], ["-32768", "32767"]),
            case("REAL", Float64, ["-1.5", "3.25"], ["-1.5", "3.25"]),
            case("DOUBLE", Float64, ["-1.0e300", "2.5"], ["-1e300", "2.5"]),
            case(
                "DECIMAL(10,2)",
                Decimal128(10, 2),
                ["-12345678.90", "1.5"],
                ["-12345678.90", "1.50"],
            ),
            case(
                "DATE",
                Date32,
                ["'0001-01-01'", "'9999-12-31'"],
                ["0001-01-01", "9999-12-31"],
            ),
            case(
                "DATETIME",
                Timestamp(TimeUnit::Microsecond, None),
                ["'2024-02-29 12:34:56.789'", "'1970-01-01 00:00:00'"],
                ["2024-02-29T12:34:56.789", "1970-01-01T00:00:00"],
            ),
            case("BOOLEAN", Boolean, ["1", "0"], ["true", "false"]),
            case("VARCHAR(20)", Utf8, ["''", "'é中文 ✓'"], ["", "é中文 ✓"]),
            case("VARCHAR(8)", Utf8, ["'abc '", "' x '"], ["abc ", " x "]),
            case(
                "TEXT",
                Utf8,
                ["'it''s'", "'line' || char(10) || 'break'"],
                ["it's", "line\nbreak"],
            ),
            case(
                "BLOB",
                Binary,
                ["X'00FF'", "X'DEADBEEF'"],
                ["00ff", "deadbeef"],
            ),
        ],
    }
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapped_type_round_trips(db: Profile) {
    let test_db = db.open();
    let cases = cases(db);
    let name = unique_name("types");
    let columns: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| format!("c{i} {}", c.ddl))
        .collect();
    let _table = test_db.create_table(
        &name,
        &format!("id INTEGER PRIMARY KEY, {}", columns.join(", ")),
    );
    for (row, pick) in [(1, Some(0)), (2, Some(1)), (3, None)] {
        let values: Vec<&str> = cases
            .iter()
            .map(|c| pick.map_or("NULL", |i| c.literals[i]))
            .collect();
        test_db.execute(&[&format!(
            "INSERT INTO {} VALUES ({row}, {})",
            db.quote(&name),
            values.join(", ")
        )]);
    }

    let source = test_db.source().await;
    let ctx = session_with(&source, db.schema(), &name).await;
    let batches = collect(&ctx, "SELECT * FROM t ORDER BY id").await;
    let batch = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 3);
    for (i, case) in cases.iter().enumerate() {
        let column = batch.column(i + 1);
        assert_eq!(
            column.data_type(),
            &case.arrow,
            "{db:?} {}: Arrow type",
            case.ddl
        );
        assert_eq!(shown(column), case.shown(), "{db:?} {}: values", case.ddl);
    }
    // Each column on its own: on PostgreSQL those of packable types are read packed.
    for (i, case) in cases.iter().enumerate() {
        let batches = collect(&ctx, &format!("SELECT id, c{i} FROM t ORDER BY id")).await;
        let batch =
            datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let column = batch.column(1);
        assert_eq!(
            shown(column),
            case.shown(),
            "{db:?} {} alone: values",
            case.ddl
        );
    }
}

/// PostgreSQL scans fetch each row as one text value that ibarrow parses, when every column
/// read allows it (psqlODBC's cost is per value). Hostile texts, CHAR padding, NULLs, extreme
/// numbers and dates read exactly as column by column; other databases never pack.
#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_rows_read_exactly_like_column_by_column(db: Profile) {
    let test_db = db.open();
    let name = unique_name("packed");
    let _table = test_db.create_table(
        &name,
        &format!(
            "id INTEGER PRIMARY KEY, label VARCHAR(100), code CHAR(5), amount DECIMAL(12,2), \
             day DATE, big BIGINT, at {}",
            db.timestamp()
        ),
    );
    let dialect = db.dialect();
    let labels: Vec<Option<String>> = hostile_texts(300, 0x9e37_79b9_7f4a_7c15)
        .into_iter()
        .enumerate()
        .map(|(i, text)| (i % 17 != 5).then(|| text.chars().take(100).collect()))
        .collect();
    let codes = ["''", "' a'", "'ab '", "'\"(,)'", "'é'", "NULL"];
    let amounts = ["-9999999999.99", "0.05", "-0.50", "123.00", "NULL"];
    let days = [
        "'2024-02-29'",
        "'1969-12-31'",
        "'0001-01-01'",
        "'9999-12-31'",
        "NULL",
    ];
    let bigs = ["-9223372036854775808", "9223372036854775807", "0", "NULL"];
    let stamps = [
        "'1969-12-31 23:59:59.999999'",
        "'2024-02-29 12:34:56.789012'",
        "'1000-01-01 00:00:00'",
        "'9999-12-31 23:59:59.999999'",
        "'1970-01-01 00:00:00'",
        "NULL",
    ];
    let inserts: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let label = label.as_ref().map_or("NULL".to_string(), |text| {
                dialect.string_literal(text).expect("no NUL in the texts")
            });
            format!(
                "INSERT INTO {} VALUES ({i}, {label}, {}, {}, {}, {}, {})",
                db.quote(&name),
                codes[i % codes.len()],
                amounts[i % amounts.len()],
                days[i % days.len()],
                bigs[i % bigs.len()],
                stamps[i % stamps.len()]
            )
        })
        .collect();
    let inserts: Vec<&str> = inserts.iter().map(String::as_str).collect();
    test_db.execute(&inserts);

    let read = |packed_rows: bool| {
        let test_db = &test_db;
        let name = &name;
        async move {
            let source = test_db
                .source_with(SourceOptions {
                    packed_rows,
                    ..SourceOptions::default()
                })
                .await;
            let ctx = session_with(&source, db.schema(), name).await;
            let plan = pretty_format_batches(&collect(&ctx, "EXPLAIN SELECT * FROM t").await)
                .unwrap()
                .to_string();
            let batches = collect(&ctx, "SELECT * FROM t ORDER BY id").await;
            let batch =
                datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
            (plan.contains("rows=packed"), batch)
        }
    };
    let (packed, packed_batch) = read(true).await;
    let (unpacked, column_batch) = read(false).await;
    assert_eq!(packed, db == Profile::Postgres, "{db:?}: rows packed");
    assert!(!unpacked, "{db:?}: packed_rows = false still packed");
    assert_eq!(packed_batch.num_rows(), labels.len());
    assert_eq!(
        packed_batch, column_batch,
        "{db:?}: packed vs column by column"
    );
    let read_labels: Vec<Option<String>> = packed_batch
        .column(1)
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect();
    assert_eq!(read_labels, labels, "{db:?}: hostile texts");
}

/// A `timestamptz` is shown in a zone the driver and the server may see differently: its
/// table is read column by column, while the same values as `timestamp` are packed.
#[tokio::test]
async fn postgres_timestamps_with_time_zone_are_not_packed() {
    let db = Profile::Postgres;
    let test_db = db.open();
    for (column_type, packed) in [("TIMESTAMPTZ", false), ("TIMESTAMP", true)] {
        let name = unique_name("zoned");
        let _table = test_db.create_table(&name, &format!("id INTEGER, at {column_type}"));
        test_db.execute(&[&format!(
            "INSERT INTO {} VALUES (1, '2024-02-29 12:34:56.789012'), (2, NULL)",
            db.quote(&name)
        )]);
        let source = test_db.source().await;
        let ctx = session_with(&source, db.schema(), &name).await;
        let plan = pretty_format_batches(&collect(&ctx, "EXPLAIN SELECT * FROM t").await)
            .unwrap()
            .to_string();
        assert_eq!(
            plan.contains("rows=packed"),
            packed,
            "{column_type}: {plan}"
        );
        let rows = collect(&ctx, "SELECT * FROM t ORDER BY id").await;
        assert_eq!(row_count(&rows), 2, "{column_type}");
    }
}
