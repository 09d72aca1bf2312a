//! Column-by-column reading through arrow-odbc, and what every scan does to a fetched batch:
//! CHAR padding trimmed, types cast to the plan's, MariaDB's silent truncation caught.

use std::sync::Arc;

use arrow_odbc::OdbcReaderBuilder;
use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatchOptions, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use ibarrow_sql::Dialect;
use odbc_api::handles::{AsStatementRef, Statement};

use crate::error::OdbcError;
use crate::pool::ConnectionPool;
use crate::source::ScanOptions;
use crate::type_map::ColumnFetch;

/// A cursor's batches read column by column.
pub(super) struct ColumnarBatches<'a, S: AsStatementRef + Statement> {
    reader: arrow_odbc::OdbcReader<odbc_api::CursorImpl<S>>,
    fetch_schema: &'a SchemaRef,
    pool: &'a ConnectionPool,
    sql: &'a str,
    dialect: Dialect,
    options: &'a ScanOptions,
}

impl<'a, S: AsStatementRef + Statement> ColumnarBatches<'a, S> {
    pub(super) fn new(
        cursor: odbc_api::CursorImpl<S>,
        fetch_schema: &'a SchemaRef,
        pool: &'a ConnectionPool,
        sql: &'a str,
        dialect: Dialect,
        options: &'a ScanOptions,
    ) -> Result<Self, OdbcError> {
        let reader = OdbcReaderBuilder::new()
            .with_schema(Arc::clone(fetch_schema))
            .with_max_text_size(options.max_text_size)
            .with_max_binary_size(options.max_binary_size)
            .with_max_num_rows_per_batch(options.batch_rows.max(1))
            .with_max_bytes_per_batch(options.max_bytes_per_batch)
            .trim_fixed_sized_characters(false)
            .build(cursor)
            .map_err(|err| OdbcError::Odbc {
                source_name: pool.source_name().to_string(),
                context: format!("binding buffers for `{sql}`"),
                message: err.to_string(),
            })?;
        Ok(Self {
            reader,
            fetch_schema,
            pool,
            sql,
            dialect,
            options,
        })
    }

    pub(super) fn next_batch(&mut self) -> Option<Result<RecordBatch, OdbcError>> {
        let batch = self.reader.next()?;
        Some(batch.map_err(|err| self.read_error(err)))
    }

    /// Names the column when a value did not fit its buffer.
    fn read_error(&self, err: ArrowError) -> OdbcError {
        if let ArrowError::ExternalError(inner) = &err
            && let Some(odbc_api::Error::TooLargeValueForBuffer { buffer_index, .. }) =
                inner.downcast_ref::<odbc_api::Error>()
            && let Some(field) = self.fetch_schema.fields().get(*buffer_index)
        {
            return truncated(self.dialect, self.options, self.pool, field);
        }
        OdbcError::Odbc {
            source_name: self.pool.source_name().to_string(),
            context: format!("fetching rows of `{}`", self.sql),
            message: self.pool.connection_string().scrub(&err.to_string()),
        }
    }

    /// Closes the cursor. After `SQLCancel` or a failed fetch (`troubled`) some drivers
    /// (SQLite's) leave the driver manager believing no cursor is open, and odbc-api panics
    /// when closing it fails; such a statement is released without closing its cursor
    /// (freeing the statement ends it).
    pub(super) fn close(self, troubled: bool) {
        if !troubled {
            drop(self.reader);
        } else if let Ok(cursor) = self.reader.into_cursor() {
            drop(cursor.into_stmt());
        }
    }
}

/// The schema arrow-odbc binds; a constant column stands in when no column is projected.
pub(super) fn fetch_schema(schema: &SchemaRef, fetch: &[ColumnFetch]) -> SchemaRef {
    if schema.fields().is_empty() {
        return Arc::new(Schema::new(vec![Field::new("1", DataType::Int32, true)]));
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(fetch)
        .map(|(field, fetch)| {
            Field::new(field.name(), fetch.fetch_type.clone(), field.is_nullable())
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A fetched batch as the plan yields it: CHAR padding trimmed, types cast to the plan's.
pub(super) fn output_batch(
    schema: &SchemaRef,
    fetch: &[ColumnFetch],
    batch: RecordBatch,
) -> Result<RecordBatch, ArrowError> {
    if schema.fields().is_empty() {
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        return RecordBatch::try_new_with_options(Arc::clone(schema), vec![], &options);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .zip(fetch)
        .map(|((column, field), fetch)| {
            let column = if fetch.trim_trailing_blanks {
                trim_trailing_blanks(column)?
            } else {
                Arc::clone(column)
            };
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                cast(&column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// MariaDB's driver cuts values that overflow their buffer without reporting it, so a
/// value filling the whole buffer is treated as cut (a value of exactly that length is
/// refused too: the message says how to raise the limit).
pub(super) fn check_silent_truncation(
    dialect: Dialect,
    options: &ScanOptions,
    pool: &ConnectionPool,
    batch: &RecordBatch,
) -> Result<(), OdbcError> {
    if !dialect.capabilities().truncates_values_silently() {
        return Ok(());
    }
    for (index, column) in batch.columns().iter().enumerate() {
        // Lengths from the offsets: no pass over the values themselves.
        let longest = match column.data_type() {
            DataType::Utf8 => longest_value(column.as_string::<i32>().offsets()),
            DataType::Binary => longest_value(column.as_binary::<i32>().offsets()),
            _ => None,
        };
        let limit = match column.data_type() {
            DataType::Binary => options.max_binary_size,
            _ => options.max_text_size,
        };
        if longest.is_some_and(|len| len >= limit) {
            return Err(truncated(
                dialect,
                options,
                pool,
                batch.schema().field(index),
            ));
        }
    }
    Ok(())
}

fn truncated(
    dialect: Dialect,
    options: &ScanOptions,
    pool: &ConnectionPool,
    field: &Field,
) -> OdbcError {
    let binary = matches!(field.data_type(), DataType::Binary);
    let (setting, limit) = if binary {
        ("max_binary_size", options.max_binary_size)
    } else {
        ("max_text_size", options.max_text_size)
    };
    let hint = if !dialect.capabilities().enforces_text_lengths() {
        format!(
            "SQLite does not enforce declared lengths, but its driver sizes buffers by them: \
             declare the column as TEXT or BLOB (the limit is then `{setting}` = {limit} bytes)"
        )
    } else {
        format!("Raise `{setting}` (now {limit} bytes) for this source")
    };
    OdbcError::Truncated {
        source_name: pool.source_name().to_string(),
        column: field.name().clone(),
        hint,
    }
}

/// Removes the blank padding of CHAR(n) values.
fn trim_trailing_blanks(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let Some(strings) = column.as_string_opt::<i32>() else {
        return Ok(Arc::clone(column));
    };
    let trimmed: StringArray = strings
        .iter()
        .map(|v| v.map(|s| s.trim_end_matches(' ')))
        .collect();
    Ok(Arc::new(trimmed))
}

fn longest_value(offsets: &[i32]) -> Option<usize> {
    offsets.windows(2).map(|w| (w[1] - w[0]) as usize).max()
}
