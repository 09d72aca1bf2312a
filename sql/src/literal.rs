//! `ScalarValue` → SQL literal text, per dialect.

use chrono::{DateTime, NaiveDate, NaiveTime};
use datafusion::scalar::ScalarValue;

use crate::dialect::Dialect;

/// Renders `value` as a literal of `dialect`, or `None` when the literal cannot be written so
/// that the database compares it exactly as DataFusion would.
pub fn render_literal(dialect: Dialect, value: &ScalarValue) -> Option<String> {
    if value.is_null() {
        return Some("NULL".to_string());
    }
    use ScalarValue as S;
    match value {
        S::Boolean(Some(v)) => Some(dialect.boolean_literal(*v).to_string()),
        S::Int8(Some(v)) => Some(v.to_string()),
        S::Int16(Some(v)) => Some(v.to_string()),
        S::Int32(Some(v)) => Some(v.to_string()),
        S::Int64(Some(v)) => Some(v.to_string()),
        S::UInt8(Some(v)) => Some(v.to_string()),
        S::UInt16(Some(v)) => Some(v.to_string()),
        S::UInt32(Some(v)) => Some(v.to_string()),
        S::UInt64(Some(v)) => Some(v.to_string()),
        // Scientific notation makes it an approximate (double) literal in every dialect.
        S::Float64(Some(v)) if v.is_finite() => Some(format!("{v:e}")),
        // A 32-bit float literal compared with a REAL column is widened differently by each
        // database than by DataFusion; such comparisons stay local.
        S::Float32(_) | S::Float64(_) | S::Float16(_) => None,
        S::Decimal128(Some(v), _, scale) => Some(decimal_text(*v, *scale)),
        S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => {
            dialect.string_literal(s)
        }
        S::Binary(Some(b))
        | S::LargeBinary(Some(b))
        | S::BinaryView(Some(b))
        | S::FixedSizeBinary(_, Some(b)) => Some(dialect.binary_literal(b)),
        S::Date32(Some(days)) => {
            let date = NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)?;
            Some(dialect.date_literal(&date.format("%Y-%m-%d").to_string()))
        }
        S::Time32Second(Some(s)) => time_literal(dialect, i64::from(*s) * 1_000_000_000),
        S::Time32Millisecond(Some(ms)) => time_literal(dialect, i64::from(*ms) * 1_000_000),
        S::Time64Microsecond(Some(us)) => time_literal(dialect, us.checked_mul(1_000)?),
        S::Time64Nanosecond(Some(ns)) => time_literal(dialect, *ns),
        S::TimestampSecond(Some(v), None) => {
            timestamp_literal(dialect, v.checked_mul(1_000_000_000)?)
        }
        S::TimestampMillisecond(Some(v), None) => {
            timestamp_literal(dialect, v.checked_mul(1_000_000)?)
        }
        S::TimestampMicrosecond(Some(v), None) => timestamp_literal(dialect, v.checked_mul(1_000)?),
        S::TimestampNanosecond(Some(v), None) => timestamp_literal(dialect, *v),
        _ => None,
    }
}

/// The decimal `value × 10^-scale` as plain text (`-12.50`).
fn decimal_text(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    if scale <= 0 {
        let zeros = "0".repeat(scale.unsigned_abs() as usize);
        return format!("{sign}{digits}{zeros}");
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

fn time_literal(dialect: Dialect, nanos_since_midnight: i64) -> Option<String> {
    // SQLite stores times as free-form text; a text comparison is not a time comparison.
    if dialect == Dialect::Sqlite {
        return None;
    }
    let secs = u32::try_from(nanos_since_midnight.div_euclid(1_000_000_000)).ok()?;
    let nanos = u32::try_from(nanos_since_midnight.rem_euclid(1_000_000_000)).ok()?;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)?;
    Some(dialect.time_literal(&time.format("%H:%M:%S%.f").to_string()))
}

fn timestamp_literal(dialect: Dialect, nanos_since_epoch: i64) -> Option<String> {
    // See `time_literal`: SQLite's text timestamps do not order like timestamps.
    if dialect == Dialect::Sqlite {
        return None;
    }
    let ts = DateTime::from_timestamp_nanos(nanos_since_epoch).naive_utc();
    Some(dialect.timestamp_literal(&ts.format("%Y-%m-%d %H:%M:%S%.f").to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(12345, 2, "123.45")]
    #[test_case(-5, 2, "-0.05")]
    #[test_case(0, 3, "0.000")]
    #[test_case(7, 0, "7")]
    #[test_case(7, -2, "700")]
    #[test_case(i128::MIN, 0, "-170141183460469231731687303715884105728")]
    fn decimals(value: i128, scale: i8, expected: &str) {
        assert_eq!(decimal_text(value, scale), expected);
    }

    #[test]
    fn temporal_literals() {
        let date = ScalarValue::Date32(Some(19_723)); // 2024-01-01
        assert_eq!(
            render_literal(Dialect::PostgreSql, &date).unwrap(),
            "DATE '2024-01-01'"
        );
        assert_eq!(
            render_literal(Dialect::Sqlite, &date).unwrap(),
            "'2024-01-01'"
        );
        assert_eq!(
            render_literal(Dialect::MsSql, &date).unwrap(),
            "CAST('2024-01-01' AS DATE)"
        );
        let ts = ScalarValue::TimestampMicrosecond(Some(1_704_067_200_123_456), None);
        assert_eq!(
            render_literal(Dialect::MySql, &ts).unwrap(),
            "TIMESTAMP '2024-01-01 00:00:00.123456'"
        );
        assert_eq!(render_literal(Dialect::Sqlite, &ts), None);
        let zoned = ScalarValue::TimestampMicrosecond(Some(0), Some("UTC".into()));
        assert_eq!(render_literal(Dialect::PostgreSql, &zoned), None);
        let time = ScalarValue::Time64Microsecond(Some(3_600_000_001));
        assert_eq!(
            render_literal(Dialect::PostgreSql, &time).unwrap(),
            "TIME '01:00:00.000001'"
        );
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(
            render_literal(Dialect::Ansi, &ScalarValue::Int64(Some(i64::MIN))).unwrap(),
            "-9223372036854775808"
        );
        assert_eq!(
            render_literal(Dialect::Ansi, &ScalarValue::UInt64(Some(u64::MAX))).unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            render_literal(Dialect::Ansi, &ScalarValue::Float64(Some(1.1))).unwrap(),
            "1.1e0"
        );
        assert_eq!(
            render_literal(Dialect::Ansi, &ScalarValue::Float64(Some(f64::NAN))),
            None
        );
        assert_eq!(
            render_literal(Dialect::Ansi, &ScalarValue::Float32(Some(1.5))),
            None
        );
        assert_eq!(
            render_literal(Dialect::Sqlite, &ScalarValue::Boolean(Some(true))).unwrap(),
            "1"
        );
        assert_eq!(
            render_literal(Dialect::PostgreSql, &ScalarValue::Boolean(Some(false))).unwrap(),
            "FALSE"
        );
        assert_eq!(
            render_literal(Dialect::PostgreSql, &ScalarValue::Int32(None)).unwrap(),
            "NULL"
        );
    }
}
