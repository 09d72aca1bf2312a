//! The TPC-H answers: each file of tests/slt/tpch (sqllogictest format) runs on four
//! placements of the same generated data: every table in PostgreSQL, every table in MariaDB,
//! every table in SQLite, and the tables split over the three (joins across databases). The
//! expected rows in the files come from DuckDB over data from tpchgen-cli
//! (tests/slt/tpch/README.md), not from ibarrow; the databases are filled straight from the
//! `tpchgen` generator. One test per file, so one wrong answer does not hide the others.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use ibarrow::{Engine, SourceConfig};
use sqllogictest::{DBOutput, DefaultColumnType};

#[path = "support/tpch.rs"]
mod tpch;

use tpch::{SPLIT, all_tables, load, register_plain_names, split_placement};

const SCALE: f64 = 0.01;

/// Where the tables are read from.
#[derive(Debug, Clone, Copy)]
enum Placement {
    Postgres,
    MariaDb,
    Sqlite,
    Split,
}

const PLACEMENTS: [Placement; 4] = [
    Placement::Postgres,
    Placement::MariaDb,
    Placement::Sqlite,
    Placement::Split,
];

struct Databases {
    postgres: String,
    mariadb: String,
    sqlite: String,
    _sqlite_dir: tempfile::TempDir,
}

/// The three databases, each holding every table (loaded once per test process).
fn databases() -> &'static Databases {
    static DATABASES: OnceLock<Databases> = OnceLock::new();
    DATABASES.get_or_init(|| {
        let postgres = std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
            "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
        });
        let mariadb = std::env::var("IBARROW_TEST_MARIADB").unwrap_or_else(|_| {
            "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
        });
        let dir = tempfile::tempdir().expect("a temporary directory for SQLite");
        let sqlite = format!(
            "Driver={{SQLite3}};Database={};",
            dir.path().join("tpch.sqlite").display()
        );
        for connection_string in [&postgres, &mariadb, &sqlite] {
            load(connection_string, all_tables(), SCALE);
        }
        Databases {
            postgres,
            mariadb,
            sqlite,
            _sqlite_dir: dir,
        }
    })
}

async fn engine(placement: Placement) -> Engine {
    let databases = tokio::task::spawn_blocking(databases)
        .await
        .expect("loading the TPC-H tables");
    // Large PostgreSQL tables are read as two key ranges, so split scans are covered too.
    let postgres = SourceConfig {
        connection_string: Some(databases.postgres.clone()),
        partitions: Some(2),
        min_partition_rows: Some(10_000),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("pg", postgres)
        .source("maria", &databases.mariadb)
        .source("lite", &databases.sqlite)
        .target_partitions(2)
        .build()
        .await
        .expect("connect the three databases (scripts/test-services starts them)");
    let single = |source: &'static str, schema: &'static str| {
        all_tables().map(move |table| (source, schema, table))
    };
    let placed: Vec<_> = match placement {
        Placement::Postgres => single(SPLIT[0].0, SPLIT[0].1).collect(),
        Placement::MariaDb => single(SPLIT[1].0, SPLIT[1].1).collect(),
        Placement::Sqlite => single(SPLIT[2].0, SPLIT[2].1).collect(),
        Placement::Split => split_placement().collect(),
    };
    register_plain_names(&engine, SCALE, placed).await;
    engine
}

/// ibarrow as a sqllogictest database.
struct Ibarrow(Engine);

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Ibarrow {
    type Error = ibarrow::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, ibarrow::Error> {
        let frame = self.0.sql(sql).await?;
        let types = frame
            .schema()
            .fields()
            .iter()
            .map(|field| column_type(field.data_type()))
            .collect();
        let batches = frame.collect().await?;
        let mut rows = Vec::new();
        for batch in &batches {
            let columns: Vec<Vec<String>> = batch.columns().iter().map(column_text).collect();
            for row in 0..batch.num_rows() {
                rows.push(columns.iter().map(|column| column[row].clone()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "ibarrow"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// The type letter the files use (tests/slt/tpch/README.md, "Formatting").
fn column_type(data_type: &DataType) -> DefaultColumnType {
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating() || matches!(data_type, DataType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// A column's values written as the expected rows are: floats to 6 places, decimals with
/// every place of their type, `NULL`, `(empty)` for an empty string.
fn column_text(column: &ArrayRef) -> Vec<String> {
    let float = |value: f64| {
        let text = format!("{value:.6}");
        if text == "-0.000000" {
            "0.000000".to_string()
        } else {
            text
        }
    };
    match column.data_type() {
        DataType::Float64 => {
            let values = column.as_primitive::<Float64Type>();
            (0..values.len())
                .map(|i| values.is_valid(i).then(|| float(values.value(i))))
                .map(|value| value.unwrap_or_else(|| "NULL".into()))
                .collect()
        }
        DataType::Float32 => {
            let values = column.as_primitive::<Float32Type>();
            (0..values.len())
                .map(|i| values.is_valid(i).then(|| float(values.value(i).into())))
                .map(|value| value.unwrap_or_else(|| "NULL".into()))
                .collect()
        }
        _ => {
            let options = FormatOptions::default().with_null("NULL");
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                .expect("every result type can be displayed");
            (0..column.len())
                .map(|i| match formatter.value(i).to_string() {
                    text if text.is_empty() && column.is_valid(i) => "(empty)".into(),
                    text => text,
                })
                .collect()
        }
    }
}

/// Values equal as text, or numbers written to 6 places (doubles and averages) within one
/// unit of the last place: DuckDB rounds averages of decimals where DataFusion truncates
/// them to the type's places (Q1's `avg_disc`), and sums of doubles may add in another order.
/// Integers and decimals of fewer places (exact sums) must be equal.
fn rows_match(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let actual: Vec<String> = actual
        .iter()
        .map(|row| row.iter().map(normalizer).collect::<Vec<_>>().join(" "))
        .collect();
    actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(actual, expected)| {
            let actual: Vec<&str> = actual.split_whitespace().collect();
            let expected: Vec<&str> = expected.split_whitespace().collect();
            actual.len() == expected.len()
                && actual
                    .iter()
                    .zip(&expected)
                    .all(|(actual, expected)| values_match(actual, expected))
        })
}

fn values_match(actual: &str, expected: &str) -> bool {
    if actual == expected {
        return true;
    }
    // A decimal quotient may have more places than the 6 of DuckDB's double.
    match (in_last_places(actual), in_last_places(expected)) {
        (Some((a, a_places)), Some((e, e_places))) if e_places >= 6 && a_places >= e_places => {
            let finer = 10_i128.pow((a_places - e_places) as u32);
            a.abs_diff(e * finer) <= finer as u128
        }
        _ => false,
    }
}

/// `-12.345` → `(-12345, 3)`: a decimal number as a count of its last place, exactly.
fn in_last_places(text: &str) -> Option<(i128, usize)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.')?;
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let value: i128 = format!("{whole}{fraction}").parse().ok()?;
    Some((if negative { -value } else { value }, fraction.len()))
}

async fn run_file(name: &str) {
    let file = slt_dir().join(format!("{name}.slt"));
    let mut failures = Vec::new();
    for placement in PLACEMENTS {
        let engine = engine(placement).await;
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok::<_, ibarrow::Error>(Ibarrow(engine)) }
        });
        runner.with_validator(rows_match);
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if let Err(err) = runner.run_file_async(&file).await {
            failures.push(format!("{placement:?}: {}", err.display(false)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt/tpch")
}

macro_rules! slt_files {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_file(stringify!($name)).await;
            }
        )*

        const FILES: &[&str] = &[$(stringify!($name)),*];
    };
}

slt_files!(
    q01,
    q02,
    q03,
    q04,
    q05,
    q06,
    q07,
    q08,
    q09,
    q10,
    q11,
    q12,
    q13,
    q14,
    q15,
    q16,
    q17,
    q18,
    q19,
    q20,
    q21,
    q22,
    extra_row_counts,
    extra_window_rank,
);

/// Every value of every table reads back as the generator wrote it (decimals, dates, CHAR
/// padding, text), from each database: types checked against the data's source, not
/// against another read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_row_reads_back_as_generated() {
    for placement in [Placement::Postgres, Placement::MariaDb, Placement::Sqlite] {
        let engine = engine(placement).await;
        for table in all_tables() {
            let batches = engine
                .sql(&format!("SELECT * FROM {}", table.name))
                .await
                .unwrap_or_else(|e| panic!("{placement:?} {}: {e}", table.name))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{placement:?} {}: {e}", table.name));
            let mut read = Vec::new();
            for batch in &batches {
                let options = FormatOptions::default().with_null("NULL");
                let formatters: Vec<_> = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                    .collect();
                for row in 0..batch.num_rows() {
                    let line: String = formatters
                        .iter()
                        .map(|f| format!("{}|", f.value(row)))
                        .collect();
                    read.push(line);
                }
            }
            // The generator writes `23` for a DECIMAL(15,2) quantity the database holds as 23.00.
            let mut generated: Vec<String> = table
                .generated(SCALE)
                .iter()
                .map(|line| same_numbers(line))
                .collect();
            let mut read: Vec<String> = read.iter().map(|line| same_numbers(line)).collect();
            generated.sort();
            read.sort();
            assert_eq!(
                read.len(),
                generated.len(),
                "{placement:?} {}: row count",
                table.name
            );
            if let Some((read, generated)) = read.iter().zip(&generated).find(|(r, g)| r != g) {
                panic!(
                    "{placement:?} {}: read `{read}`, generated `{generated}`",
                    table.name
                );
            }
        }
    }
}

/// `23.00|x|1.50|` → `23|x|1.5|`: numbers without trailing zeros in their fraction.
fn same_numbers(line: &str) -> String {
    line.split('|')
        .map(|field| match in_last_places(field) {
            Some(_) => field.trim_end_matches('0').trim_end_matches('.'),
            None => field,
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// A new file gets a test of its own: none is left out silently.
#[test]
fn every_file_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(slt_dir())
        .expect("tests/slt/tpch")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_string()))
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = FILES.iter().map(|name| name.to_string()).collect();
    tested.sort();
    assert_eq!(on_disk, tested);
}

#[test]
fn numbers_match_within_the_last_place_and_text_exactly() {
    assert!(values_match("0.050081", "0.050081"));
    assert!(values_match("0.050080", "0.050081"));
    assert!(!values_match("0.050079", "0.050081"));
    assert!(values_match("526165934.000838", "526165934.000839"));
    assert!(!values_match("380456.02", "380456.00"));
    assert!(!values_match("380456.01", "380456.00"));
    assert!(!values_match("ALGERIA", "ARGENTINA"));
    assert!(!values_match("15", "16"));
    assert!(!values_match("-0.000001", "0.000001"));
    assert!(values_match("-0.000001", "0.000000"));
    assert!(values_match("0.00000000", "0.000000"));
    assert!(values_match("0.05008149", "0.050081"));
    assert!(!values_match("0.05008250", "0.050081"));
    assert!(!values_match("0.05008", "0.050081"));
}
