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
    /// `partitions` was chosen by ibarrow (the cores), not set: a table is read in one range
    /// per `min_rows` of its row estimate, up to `partitions`, and in one without an estimate.
    pub automatic: bool,
}

impl Default for RangePartitioning {
    fn default() -> Self {
        Self {
            column: None,
            partitions: 1,
            min_rows: 100_000,
            automatic: false,
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
    pub automatic: bool,
}

impl PartitionKey {
    /// How many ranges a table of `estimate` rows is read in (before the key's range is
    /// known); below 2, one statement.
    pub fn count_for(&self, estimate: Option<u64>) -> usize {
        match estimate {
            Some(rows) if rows < self.min_rows => 1,
            Some(rows) if self.automatic => usize::try_from(rows / self.min_rows.max(1))
                .unwrap_or(usize::MAX)
                .clamp(1, self.partitions),
            None if self.automatic => 1,
            _ => self.partitions,
        }
    }

    /// Why a scan has its number of ranges, for EXPLAIN.
    pub fn reason(&self, estimate: Option<u64>, count: usize) -> String {
        match (self.automatic, estimate) {
            (true, Some(rows)) => format!(
                "automatic: ~{rows} rows, one range per {} rows, at most {} (the cores); \
                 set `partitions` to choose",
                self.min_rows, self.partitions
            ),
            (true, None) => "automatic: no row estimate; set `partitions` to split".into(),
            (false, _) => format!(
                "partitions = {} (configured), {count} used",
                self.partitions
            ),
        }
    }

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
            automatic: spec.automatic,
        }))
    }

    /// One predicate for each of `parts` ranges of a key ranging over `min..=max` (integers,
    /// or days since 1970 for dates); `None` when the range is too narrow to split.
    pub fn predicates(
        &self,
        dialect: Dialect,
        min: i64,
        max: i64,
        parts: usize,
    ) -> Option<Vec<String>> {
        let points = integer_split_points(min, max, parts);
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
            automatic: false,
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
            automatic: false,
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

    #[test]
    fn automatic_partitions_follow_the_row_estimate_up_to_the_cores() {
        let key = PartitionKey {
            column: "id".into(),
            is_date: false,
            partitions: 4,
            min_rows: 100_000,
            automatic: true,
        };
        let counts: Vec<usize> = [
            None,
            Some(50_000),
            Some(150_000),
            Some(250_000),
            Some(10_000_000),
        ]
        .into_iter()
        .map(|rows| key.count_for(rows))
        .collect();
        assert_eq!(counts, [1, 1, 1, 2, 4]);
        let configured = PartitionKey {
            automatic: false,
            ..key
        };
        let counts: Vec<usize> = [None, Some(50_000), Some(250_000)]
            .into_iter()
            .map(|rows| configured.count_for(rows))
            .collect();
        assert_eq!(counts, [4, 1, 4]);
    }
}
