//! Running sqllogictest files on ibarrow, as the TPC-H answers suites do
//! (tests/tpch_answers.rs locally, repl/tests/cluster.rs on a cluster): the rows written as
//! the files write them, and compared as tests/slt/tpch/README.md says.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use ibarrow::Engine;
use sqllogictest::{DBOutput, DefaultColumnType};

/// ibarrow as a sqllogictest database.
pub struct Ibarrow(pub Engine);

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
pub fn column_text(column: &ArrayRef) -> Vec<String> {
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
pub fn rows_match(
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

pub fn values_match(actual: &str, expected: &str) -> bool {
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
pub fn in_last_places(text: &str) -> Option<(i128, usize)> {
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
