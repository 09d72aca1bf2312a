//! Reading packed rows (the statement is a [`ibarrow_sql::ScanStatement`] with packed rows): each
//! row arrives as one text value, PostgreSQL's record text `(v1,v2,…)`, fetched into one text
//! buffer ([`PackedBatches`]) and split and parsed here straight into Arrow arrays
//! ([`PackedLayout`]).
//!
//! The record text writes NULL as nothing, and quotes a value (doubling `"` and `\`) when it
//! is empty or holds a quote, backslash, parenthesis, comma or white space; numbers, booleans
//! and the integers sent for dates and timestamps never need quotes. Anything else than that
//! grammar is an error, never a guess.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{
    DataType, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use ibarrow_sql::{PackedColumn, PackedValue};
use odbc_api::buffers::TextRowSet;
use odbc_api::handles::{AsStatementRef, Statement};
use odbc_api::{BlockCursor, Cursor, CursorImpl};

use crate::error::OdbcError;
use crate::pool::ConnectionPool;
use crate::source::ScanOptions;
use crate::type_map::ColumnFetch;

/// Rows longer than this (in the worst case) are fetched column by column instead: their
/// buffers would outweigh what packing saves.
const MAX_PACKED_ROW_BYTES: usize = 16 * 1024;

/// How each column of a packed row is parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int16,
    Int32,
    Int64,
    Float64,
    Boolean,
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// A date sent as days since 1970-01-01.
    Days,
    /// A timestamp without time zone sent as microseconds since 1970-01-01, read in `unit`.
    Microseconds(TimeUnit),
    Text,
}

impl Kind {
    /// The longest text the column's value can take in the record, quotes included.
    fn max_bytes(self, max_text_bytes: Option<usize>) -> Option<usize> {
        Some(match self {
            Kind::Int16 => 6,
            Kind::Int32 | Kind::Days => 11,
            Kind::Int64 | Kind::Microseconds(_) => 20,
            // `-1.7976931348623157e+308`, `-Infinity`, with room for longer spellings.
            Kind::Float64 => 32,
            Kind::Boolean => 1,
            // Digits, sign, point and a leading zero.
            Kind::Decimal { precision, .. } => precision as usize + 3,
            // Every byte may be doubled, and the value quoted.
            Kind::Text => max_text_bytes? * 2 + 2,
        })
    }
}

/// The shape of a packed row: one [`Kind`] per fetched column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackedLayout {
    kinds: Vec<Kind>,
    row_bytes: usize,
}

impl PackedLayout {
    /// The layout for columns fetched as `fetch_types`, or `None` when one of them cannot be
    /// packed (timestamps, binary, text without an enforced length …) or rows could be long.
    /// `max_text_size` is what psqlODBC reports for text without a length (ibarrow sets its
    /// `MaxVarcharSize` to it): a declared length must be below it to be trusted.
    pub(crate) fn new(fetch: &[ColumnFetch], max_text_size: usize) -> Option<Self> {
        if fetch.is_empty() {
            return None;
        }
        let mut kinds = Vec::with_capacity(fetch.len());
        // The parentheses, and a comma between values.
        let mut row_bytes = 2 + fetch.len() - 1;
        for fetch in fetch {
            let kind = match &fetch.fetch_type {
                DataType::Int16 => Kind::Int16,
                DataType::Int32 => Kind::Int32,
                DataType::Int64 => Kind::Int64,
                DataType::Float64 => Kind::Float64,
                DataType::Boolean => Kind::Boolean,
                DataType::Decimal128(precision, scale) if *scale >= 0 => Kind::Decimal {
                    precision: *precision,
                    scale: *scale as u8,
                },
                DataType::Date32 => Kind::Days,
                DataType::Timestamp(unit, None) if fetch.zoneless_timestamp => {
                    Kind::Microseconds(*unit)
                }
                DataType::Utf8 if !fetch.read_as_text => Kind::Text,
                _ => return None,
            };
            let max_text_bytes = fetch
                .max_text_bytes
                .filter(|bytes| bytes / 4 < max_text_size);
            row_bytes += kind.max_bytes(max_text_bytes)?;
            kinds.push(kind);
        }
        (row_bytes <= MAX_PACKED_ROW_BYTES).then_some(Self { kinds, row_bytes })
    }

    /// The longest row text, for the fetch buffer.
    pub(crate) fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The columns to pack, named as the statement names them.
    pub(crate) fn columns(&self, schema: &SchemaRef) -> Vec<PackedColumn> {
        schema
            .fields()
            .iter()
            .zip(&self.kinds)
            .map(|(field, kind)| PackedColumn {
                name: field.name().clone(),
                sent_as: match kind {
                    Kind::Days => PackedValue::Days,
                    Kind::Microseconds(_) => PackedValue::Microseconds,
                    _ => PackedValue::AsIs,
                },
            })
            .collect()
    }

    /// Parses one batch of row texts into a batch of `schema` (the fetched types).
    pub(crate) fn parse<'a>(
        &self,
        schema: &SchemaRef,
        rows: usize,
        texts: impl Iterator<Item = Option<&'a [u8]>>,
    ) -> Result<RecordBatch, String> {
        let mut columns: Vec<ColumnBuilder> = self
            .kinds
            .iter()
            .map(|kind| ColumnBuilder::new(*kind, rows))
            .collect();
        let mut unquoted = Vec::new();
        for (row, text) in texts.enumerate() {
            let text = text.ok_or_else(|| format!("row {row} arrived as NULL"))?;
            parse_row(text, &mut columns, &mut unquoted)
                .map_err(|problem| format!("{problem} in row text {}", shown(text)))?;
        }
        let arrays = columns
            .into_iter()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<ArrayRef>, String>>()?;
        RecordBatch::try_new(Arc::clone(schema), arrays).map_err(|err| err.to_string())
    }
}

/// The start of a row's text, for error messages.
fn shown(text: &[u8]) -> String {
    const SHOWN: usize = 120;
    let cut = &text[..text.len().min(SHOWN)];
    let mut shown = String::from_utf8_lossy(cut).into_owned();
    if text.len() > SHOWN {
        shown.push('…');
    }
    shown
}

fn parse_row(
    text: &[u8],
    columns: &mut [ColumnBuilder],
    unquoted: &mut Vec<u8>,
) -> Result<(), String> {
    let (Some(b'('), Some(b')')) = (text.first(), text.last()) else {
        return Err("no parentheses around the values".into());
    };
    let expected = columns.len();
    let mut pos = 1;
    for (index, column) in columns.iter_mut().enumerate() {
        let expected_end = if index + 1 == expected { b')' } else { b',' };
        let rest = &text[pos..];
        let (value, consumed) = if rest.first() == Some(&b'"') {
            let consumed = unquote(rest, unquoted)?;
            (Some(unquoted.as_slice()), consumed)
        } else {
            let len = rest
                .iter()
                .position(|b| *b == b',' || *b == b')')
                .ok_or("a value without an end")?;
            ((len > 0).then(|| &rest[..len]), len)
        };
        if rest.get(consumed) != Some(&expected_end) {
            return Err(format!("more or fewer values than the {expected} expected"));
        }
        match value {
            Some(value) => column
                .append(value)
                .map_err(|problem| format!("value {} of the row: {problem}", index + 1))?,
            None => column.append_null(),
        }
        pos += consumed + 1;
    }
    if pos != text.len() {
        return Err(format!("more values than the {expected} expected"));
    }
    Ok(())
}

/// Reads the quoted value at the start of `text` into `out`; the bytes it took, quotes
/// included.
fn unquote(text: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
    out.clear();
    let mut pos = 1;
    loop {
        match text.get(pos) {
            None => return Err("a quoted value without its closing quote".into()),
            Some(b'"') if text.get(pos + 1) == Some(&b'"') => {
                out.push(b'"');
                pos += 2;
            }
            Some(b'"') => return Ok(pos + 1),
            Some(b'\\') => {
                let escaped = text
                    .get(pos + 1)
                    .ok_or("a quoted value ending in a backslash")?;
                out.push(*escaped);
                pos += 2;
            }
            Some(byte) => {
                out.push(*byte);
                pos += 1;
            }
        }
    }
}

enum ColumnBuilder {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Decimal {
        builder: Decimal128Builder,
        precision: u8,
        scale: u8,
    },
    Days(Date32Builder),
    /// Values in `unit`, turned into the timestamp type when finished.
    Timestamp {
        builder: Int64Builder,
        unit: TimeUnit,
    },
    Text(StringBuilder),
}

impl ColumnBuilder {
    fn new(kind: Kind, rows: usize) -> Self {
        match kind {
            Kind::Int16 => Self::Int16(Int16Builder::with_capacity(rows)),
            Kind::Int32 => Self::Int32(Int32Builder::with_capacity(rows)),
            Kind::Int64 => Self::Int64(Int64Builder::with_capacity(rows)),
            Kind::Float64 => Self::Float64(Float64Builder::with_capacity(rows)),
            Kind::Boolean => Self::Boolean(BooleanBuilder::with_capacity(rows)),
            Kind::Decimal { precision, scale } => Self::Decimal {
                builder: Decimal128Builder::with_capacity(rows),
                precision,
                scale,
            },
            Kind::Days => Self::Days(Date32Builder::with_capacity(rows)),
            Kind::Microseconds(unit) => Self::Timestamp {
                builder: Int64Builder::with_capacity(rows),
                unit,
            },
            Kind::Text => Self::Text(StringBuilder::with_capacity(rows, rows * 16)),
        }
    }

    fn append(&mut self, value: &[u8]) -> Result<(), String> {
        match self {
            Self::Int16(b) => b.append_value(narrow(parse_integer(value)?)?),
            Self::Int32(b) => b.append_value(narrow(parse_integer(value)?)?),
            Self::Int64(b) => b.append_value(parse_integer(value)?),
            Self::Days(b) => b.append_value(narrow(parse_integer(value)?)?),
            Self::Timestamp { builder, unit } => {
                builder.append_value(micros_in(parse_integer(value)?, *unit)?)
            }
            Self::Float64(b) => b.append_value(parse_float(value)?),
            Self::Boolean(b) => b.append_value(match value {
                b"t" => true,
                b"f" => false,
                _ => return Err(format!("`{}` is no boolean", shown(value))),
            }),
            Self::Decimal {
                builder,
                precision,
                scale,
            } => builder.append_value(parse_decimal(value, *precision, *scale)?),
            Self::Text(b) => b.append_value(
                std::str::from_utf8(value).map_err(|_| "text that is not UTF-8".to_string())?,
            ),
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Days(b) => b.append_null(),
            Self::Timestamp { builder, .. } => builder.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
            Self::Decimal { builder, .. } => builder.append_null(),
            Self::Text(b) => b.append_null(),
        }
    }

    fn finish(self) -> Result<ArrayRef, String> {
        Ok(match self {
            Self::Int16(mut b) => Arc::new(b.finish()),
            Self::Int32(mut b) => Arc::new(b.finish()),
            Self::Int64(mut b) => Arc::new(b.finish()),
            Self::Days(mut b) => Arc::new(b.finish()),
            Self::Timestamp { mut builder, unit } => {
                let values = builder.finish();
                match unit {
                    TimeUnit::Second => Arc::new(values.reinterpret_cast::<TimestampSecondType>()),
                    TimeUnit::Millisecond => {
                        Arc::new(values.reinterpret_cast::<TimestampMillisecondType>())
                    }
                    TimeUnit::Microsecond => {
                        Arc::new(values.reinterpret_cast::<TimestampMicrosecondType>())
                    }
                    TimeUnit::Nanosecond => {
                        Arc::new(values.reinterpret_cast::<TimestampNanosecondType>())
                    }
                }
            }
            Self::Float64(mut b) => Arc::new(b.finish()),
            Self::Boolean(mut b) => Arc::new(b.finish()),
            Self::Decimal {
                mut builder,
                precision,
                scale,
            } => Arc::new(
                builder
                    .finish()
                    .with_precision_and_scale(precision, scale as i8)
                    .map_err(|err| err.to_string())?,
            ),
            Self::Text(mut b) => Arc::new(b.finish()),
        })
    }
}

/// Microseconds since the epoch in `unit`; a coarser unit must not cut a fraction off.
fn micros_in(micros: i64, unit: TimeUnit) -> Result<i64, String> {
    let per_unit = match unit {
        TimeUnit::Second => 1_000_000,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1,
        TimeUnit::Nanosecond => {
            return micros
                .checked_mul(1_000)
                .ok_or_else(|| format!("{micros} µs is beyond what nanoseconds hold"));
        }
    };
    if micros % per_unit != 0 {
        return Err(format!(
            "{micros} µs has a fraction finer than the column's {unit:?} unit"
        ));
    }
    Ok(micros / per_unit)
}

fn narrow<T: TryFrom<i64>>(value: i64) -> Result<T, String> {
    T::try_from(value).map_err(|_| format!("{value} does not fit the column's integer type"))
}

fn parse_integer(text: &[u8]) -> Result<i64, String> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(format!("`{}` is no integer", shown(text)));
    }
    // Accumulated negatively, so that i64::MIN parses too.
    let mut value: i64 = 0;
    for byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(format!("`{}` is no integer", shown(text)));
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(digit)))
            .ok_or_else(|| format!("`{}` does not fit in 64 bits", shown(text)))?;
    }
    if negative {
        Ok(value)
    } else {
        value
            .checked_neg()
            .ok_or_else(|| format!("`{}` does not fit in 64 bits", shown(text)))
    }
}

fn parse_float(text: &[u8]) -> Result<f64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .ok_or_else(|| format!("`{}` is no floating-point number", shown(text)))
}

/// A decimal's text as its unscaled value at `scale`. Digits beyond the scale must be zeros:
/// anything else would be rounded away.
fn parse_decimal(text: &[u8], precision: u8, scale: u8) -> Result<i128, String> {
    let not_decimal = || {
        format!(
            "`{}` is no decimal number that DECIMAL({precision},{scale}) holds \
             (NaN and infinities have no Arrow decimal)",
            shown(text)
        )
    };
    let (negative, body) = match text.split_first() {
        Some((b'-', body)) => (true, body),
        _ => (false, text),
    };
    let (whole, fraction) = match body.iter().position(|b| *b == b'.') {
        Some(point) => (&body[..point], &body[point + 1..]),
        None => (body, &body[body.len()..]),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(not_decimal());
    }
    let scale = scale as usize;
    let (kept, dropped) = fraction.split_at(fraction.len().min(scale));
    if dropped.iter().any(|b| *b != b'0') {
        return Err(format!(
            "`{}` has more decimal places than the column's {scale}",
            shown(text)
        ));
    }
    let mut value: i128 = 0;
    for byte in whole.iter().chain(kept) {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(not_decimal());
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(digit)))
            .ok_or_else(not_decimal)?;
    }
    let padding = 10_i128.pow((scale - kept.len()) as u32);
    let value = value.checked_mul(padding).ok_or_else(not_decimal)?;
    if value >= 10_i128.pow(u32::from(precision)) {
        return Err(not_decimal());
    }
    Ok(if negative { -value } else { value })
}

/// A cursor's packed rows, fetched into one text buffer and parsed batch by batch.
pub(super) struct PackedBatches<'a, S: AsStatementRef + Statement> {
    rows: BlockCursor<CursorImpl<S>, TextRowSet>,
    layout: &'a PackedLayout,
    fetch_schema: &'a SchemaRef,
    pool: &'a ConnectionPool,
    sql: &'a str,
}

impl<'a, S: AsStatementRef + Statement> PackedBatches<'a, S> {
    pub(super) fn new(
        cursor: CursorImpl<S>,
        layout: &'a PackedLayout,
        fetch_schema: &'a SchemaRef,
        pool: &'a ConnectionPool,
        sql: &'a str,
        options: &ScanOptions,
    ) -> Result<Self, OdbcError> {
        let row_bytes = layout.row_bytes();
        let rows_per_batch =
            (options.max_bytes_per_batch / (row_bytes + 1)).clamp(1, options.batch_rows.max(1));
        let binding_failed = |err: odbc_api::Error| OdbcError::Odbc {
            source_name: pool.source_name().to_string(),
            context: format!("binding buffers for `{sql}`"),
            message: err.to_string(),
        };
        let buffer =
            TextRowSet::from_max_str_lens(rows_per_batch, [row_bytes]).map_err(binding_failed)?;
        let rows = cursor.bind_buffer(buffer).map_err(binding_failed)?;
        Ok(Self {
            rows,
            layout,
            fetch_schema,
            pool,
            sql,
        })
    }

    pub(super) fn next_batch(&mut self) -> Option<Result<RecordBatch, OdbcError>> {
        let (pool, sql, layout) = (self.pool, self.sql, self.layout);
        match self.rows.fetch_with_truncation_check(true) {
            Ok(None) => None,
            Ok(Some(batch)) => {
                let texts = (0..batch.num_rows()).map(|row| batch.at(0, row));
                Some(
                    layout
                        .parse(self.fetch_schema, batch.num_rows(), texts)
                        .map_err(|problem| packed_error(pool, sql, &problem)),
                )
            }
            Err(odbc_api::Error::TooLargeValueForBuffer { .. }) => Some(Err(packed_error(
                pool,
                sql,
                &format!(
                    "a row was longer than the {} bytes its types allow",
                    layout.row_bytes()
                ),
            ))),
            Err(err) => Some(Err(OdbcError::Odbc {
                source_name: pool.source_name().to_string(),
                context: format!("fetching rows of `{sql}`"),
                message: pool.connection_string().scrub(&err.to_string()),
            })),
        }
    }

    /// Closes the cursor; after a cancel or a failure (`troubled`) the statement is released
    /// without closing a cursor the driver may have lost (as in `columnar.rs`).
    pub(super) fn close(self, troubled: bool) {
        if !troubled {
            drop(self.rows);
        } else if let Ok((cursor, _)) = self.rows.unbind() {
            drop(cursor.into_stmt());
        }
    }
}

fn packed_error(pool: &ConnectionPool, sql: &str, problem: &str) -> OdbcError {
    OdbcError::Odbc {
        source_name: pool.source_name().to_string(),
        context: format!("reading the packed rows of `{sql}`"),
        message: format!(
            "{problem}; set `packed_rows = false` for this source to read column by column, \
             and report the statement"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Field, Int64Type, Schema};

    fn fetch(max_text_bytes: Option<usize>) -> ColumnFetch {
        ColumnFetch {
            fetch_type: DataType::Utf8,
            read_as_text: false,
            trim_trailing_blanks: false,
            max_text_bytes,
            declared_text_bytes: max_text_bytes,
            zoneless_timestamp: false,
        }
    }

    fn layout(types: &[DataType]) -> (PackedLayout, SchemaRef) {
        let fetch: Vec<ColumnFetch> = types
            .iter()
            .map(|t| ColumnFetch {
                fetch_type: t.clone(),
                ..fetch(Some(40))
            })
            .collect();
        let schema = Arc::new(Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| Field::new(format!("c{i}"), t.clone(), true))
                .collect::<Vec<_>>(),
        ));
        (PackedLayout::new(&fetch, 16384).unwrap(), schema)
    }

    fn parse(types: &[DataType], rows: &[&str]) -> Result<RecordBatch, String> {
        let (layout, schema) = layout(types);
        layout.parse(
            &schema,
            rows.len(),
            rows.iter().map(|row| Some(row.as_bytes())),
        )
    }

    #[test]
    fn parses_every_kind_and_nulls() {
        let types = [
            DataType::Int64,
            DataType::Decimal128(15, 2),
            DataType::Date32,
            DataType::Utf8,
            DataType::Boolean,
            DataType::Float64,
            DataType::Int16,
        ];
        let batch = parse(
            &types,
            &[
                r#"(-9223372036854775808,-12.5,-719528,"a""b\\c, (x) ",t,-Infinity,-32768)"#,
                r#"(7,0.05,19000,"",f,1e-300,12)"#,
                "(,,,,,,)",
                "(1,3,0,é,t,0.1,0)",
            ],
        )
        .unwrap();
        let ints = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(ints.value(0), i64::MIN);
        assert!(ints.is_null(2));
        let decimals = batch.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(
            (decimals.value(0), decimals.value(1), decimals.value(3)),
            (-1250, 5, 300)
        );
        assert_eq!(decimals.data_type(), &DataType::Decimal128(15, 2));
        let days = batch.column(2).as_primitive::<Date32Type>();
        assert_eq!((days.value(0), days.value(1)), (-719528, 19000));
        let text = batch.column(3).as_string::<i32>();
        assert_eq!(text.value(0), "a\"b\\c, (x) ");
        assert_eq!(text.value(1), "");
        assert!(text.is_null(2));
        assert_eq!(text.value(3), "é");
        let floats = batch
            .column(5)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        assert_eq!(floats.value(0), f64::NEG_INFINITY);
        assert_eq!(floats.value(3), 0.1);
        assert!(batch.column(6).is_null(2));
    }

    #[test]
    fn refuses_what_does_not_fit_or_does_not_parse() {
        let decimal = [DataType::Decimal128(5, 2)];
        assert!(parse(&decimal, &["(1.2500)"]).is_ok());
        for bad in ["(1.255)", "(1000.00)", "(NaN)", "(Infinity)", "(.)", "(-)"] {
            let err = parse(&decimal, &[bad]).unwrap_err();
            assert!(err.contains("row text"), "{bad}: {err}");
        }
        let small = [DataType::Int16];
        assert!(
            parse(&small, &["(32768)"])
                .unwrap_err()
                .contains("does not fit")
        );
        assert!(parse(&small, &["(1x)"]).unwrap_err().contains("no integer"));
        let pair = [DataType::Int64, DataType::Utf8];
        for bad in ["(1)", "(1,a,b)", "1,a", "(1,\"a)", "(1,a))", "(1,\"a\"b)"] {
            assert!(parse(&pair, &[bad]).is_err(), "{bad} was accepted");
        }
        let (layout, schema) = layout(&pair);
        assert!(
            layout
                .parse(&schema, 1, std::iter::once(None))
                .unwrap_err()
                .contains("NULL")
        );
    }

    #[test]
    fn parses_timestamps_in_their_unit_and_refuses_cut_fractions() {
        let read = |unit: TimeUnit, row: &str| {
            let fetch = ColumnFetch {
                fetch_type: DataType::Timestamp(unit, None),
                zoneless_timestamp: true,
                ..fetch(None)
            };
            let schema = Arc::new(Schema::new(vec![Field::new(
                "ts",
                fetch.fetch_type.clone(),
                true,
            )]));
            let layout = PackedLayout::new(&[fetch], 16384).unwrap();
            layout
                .parse(&schema, 1, std::iter::once(Some(row.as_bytes())))
                .map(|batch| (batch.column(0).data_type().clone(), batch))
        };
        let (data_type, batch) = read(TimeUnit::Microsecond, "(-1)").unwrap();
        assert_eq!(data_type, DataType::Timestamp(TimeUnit::Microsecond, None));
        let micros = batch.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(micros.value(0), -1);
        let (_, batch) = read(TimeUnit::Second, "(-86400000000)").unwrap();
        let seconds = batch.column(0).as_primitive::<TimestampSecondType>();
        assert_eq!(seconds.value(0), -86400);
        let (_, batch) = read(TimeUnit::Nanosecond, "(1500)").unwrap();
        let nanos = batch.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(nanos.value(0), 1_500_000);
        assert!(
            read(TimeUnit::Microsecond, "()")
                .unwrap()
                .1
                .column(0)
                .is_null(0)
        );
        let cut = read(TimeUnit::Millisecond, "(1000001)").unwrap_err();
        assert!(cut.contains("finer than"), "{cut}");
        let too_far = read(TimeUnit::Nanosecond, "(9223372036854775807)").unwrap_err();
        assert!(too_far.contains("nanoseconds"), "{too_far}");
    }

    #[test]
    fn packs_only_types_with_a_bounded_text() {
        let int = ColumnFetch {
            fetch_type: DataType::Int32,
            ..fetch(None)
        };
        let packed = PackedLayout::new(&[int.clone(), fetch(Some(10))], 16384).unwrap();
        assert_eq!(packed.row_bytes(), 2 + 1 + 11 + 22);
        assert!(PackedLayout::new(&[fetch(None)], 16384).is_none());
        assert!(PackedLayout::new(&[fetch(Some(100_000))], 16384).is_none());
        let timestamp = ColumnFetch {
            fetch_type: DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                None,
            ),
            ..int
        };
        assert!(PackedLayout::new(std::slice::from_ref(&timestamp), 16384).is_none());
        let zoneless = ColumnFetch {
            zoneless_timestamp: true,
            ..timestamp
        };
        assert_eq!(
            PackedLayout::new(std::slice::from_ref(&zoneless), 16384)
                .unwrap()
                .row_bytes(),
            2 + 20
        );
        let zoned = ColumnFetch {
            fetch_type: DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                Some("UTC".into()),
            ),
            ..zoneless
        };
        assert!(PackedLayout::new(&[zoned], 16384).is_none());
        let as_text = ColumnFetch {
            read_as_text: true,
            ..fetch(Some(10))
        };
        assert!(PackedLayout::new(&[as_text], 16384).is_none());
        assert!(PackedLayout::new(&[], 16384).is_none());
        // 100 bytes: 25 characters declared, as psqlODBC reports text when max_text_size = 25.
        assert!(PackedLayout::new(&[fetch(Some(100))], 25).is_none());
    }
}
