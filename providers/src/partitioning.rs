//! Parallel range scans: a large table is split on an integer or date key into ranges, each
//! read by its own statement on its own pooled connection.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::scalar::ScalarValue;
use ibarrow_sql::{Dialect, integer_split_points, range_predicates};

use crate::error::OdbcError;

/// How a table may be split. Set per source (`partitions`) and per table (`partition_column`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePartitioning {
    /// Split on this column; `None` picks the first primary-key column when it is an integer
    /// or a date.
    pub column: Option<String>,
    /// Ranges per scan; 1 disables splitting.
    pub partitions: usize,
    /// Tables estimated below this many rows are read in one statement.
    pub min_rows: u64,
}

impl Default for RangePartitioning {
    fn default() -> Self {
        Self {
            column: None,
            partitions: 1,
            min_rows: 100_000,
        }
    }
}

/// The key a table is split on, once checked against its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionKey {
    pub column: String,
    pub is_date: bool,
    pub partitions: usize,
    pub min_rows: u64,
}

impl PartitionKey {
    /// Checks the configured (or primary-key) column. A configured column that cannot be used
    /// is an error; an unsuitable primary key just means no splitting.
    pub fn choose(
        spec: &RangePartitioning,
        schema: &Schema,
        primary_key: &[String],
        source_name: &str,
        table: &str,
    ) -> Result<Option<Self>, OdbcError> {
        if spec.partitions < 2 {
            return Ok(None);
        }
        let (column, configured) = match &spec.column {
            Some(column) => (column.as_str(), true),
            None => match primary_key.first() {
                Some(column) => (column.as_str(), false),
                None => return Ok(None),
            },
        };
        let field = schema
            .fields()
            .iter()
            .find(|f| f.name() == column)
            .or_else(|| {
                schema
                    .fields()
                    .iter()
                    .find(|f| f.name().eq_ignore_ascii_case(column))
            });
        let kind = field.map(|f| f.data_type().clone());
        let is_date = match kind {
            Some(
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32,
            ) => false,
            Some(DataType::Date32) => true,
            _ if !configured => return Ok(None),
            other => {
                return Err(OdbcError::InvalidPartitionColumn {
                    source_name: source_name.to_string(),
                    table: table.to_string(),
                    column: column.to_string(),
                    reason: match other {
                        None => "the table has no such column".to_string(),
                        Some(t) => format!("its type {t} is neither an integer nor a date"),
                    },
                });
            }
        };
        let column = field.map(|f| f.name().clone()).unwrap_or_default();
        Ok(Some(Self {
            column,
            is_date,
            partitions: spec.partitions,
            min_rows: spec.min_rows,
        }))
    }

    /// One predicate per partition for a key ranging over `min..=max` (integers, or days since
    /// 1970 for dates); `None` when the range is too narrow to split.
    pub fn predicates(&self, dialect: Dialect, min: i64, max: i64) -> Option<Vec<String>> {
        let points = integer_split_points(min, max, self.partitions);
        if points.is_empty() {
            return None;
        }
        let values: Vec<ScalarValue> = points
            .into_iter()
            .map(|p| {
                if self.is_date {
                    ScalarValue::Date32(i32::try_from(p).ok())
                } else {
                    ScalarValue::Int64(Some(p))
                }
            })
            .collect();
        range_predicates(dialect, &self.column, &values)
    }

    /// Parses a MIN/MAX value read as text.
    pub fn parse_bound(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        if self.is_date {
            let date = chrono::NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
            Some((date - epoch).num_days())
        } else {
            text.parse().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("day", DataType::Date32, true),
            Field::new("name", DataType::Utf8, true),
        ])
    }

    fn spec(column: Option<&str>) -> RangePartitioning {
        RangePartitioning {
            column: column.map(str::to_string),
            partitions: 4,
            min_rows: 0,
        }
    }

    #[test]
    fn chooses_the_primary_key_or_the_configured_column() {
        let key = PartitionKey::choose(&spec(None), &schema(), &["id".into()], "s", "t")
            .unwrap()
            .unwrap();
        assert_eq!((key.column.as_str(), key.is_date), ("id", false));
        let key = PartitionKey::choose(&spec(Some("DAY")), &schema(), &[], "s", "t")
            .unwrap()
            .unwrap();
        assert_eq!((key.column.as_str(), key.is_date), ("day", true));
        assert_eq!(
            PartitionKey::choose(&spec(None), &schema(), &["name".into()], "s", "t").unwrap(),
            None
        );
        assert_eq!(
            PartitionKey::choose(&spec(None), &schema(), &[], "s", "t").unwrap(),
            None
        );
    }

    #[test]
    fn an_unusable_configured_column_is_an_error() {
        let err = PartitionKey::choose(&spec(Some("name")), &schema(), &[], "s", "t").unwrap_err();
        assert!(
            err.to_string().contains("neither an integer nor a date"),
            "{err}"
        );
        let err = PartitionKey::choose(&spec(Some("nope")), &schema(), &[], "s", "t").unwrap_err();
        assert!(err.to_string().contains("no such column"), "{err}");
    }

    #[test]
    fn parses_bounds() {
        let date = PartitionKey {
            column: "d".into(),
            is_date: true,
            partitions: 2,
            min_rows: 0,
        };
        assert_eq!(date.parse_bound("2024-01-01"), Some(19_723));
        assert_eq!(date.parse_bound("1970-01-02 00:00:00"), Some(1));
        let int = PartitionKey {
            is_date: false,
            ..date
        };
        assert_eq!(int.parse_bound(" -42 "), Some(-42));
        assert_eq!(int.parse_bound("x"), None);
    }
}
