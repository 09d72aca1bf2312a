//! Running a planned statement in a session and reading its rows back as text, for tests that
//! compare answers with what they wrote.
#![allow(dead_code)]

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use futures::TryStreamExt;
use ibarrow::Session;

/// The rows of `frame` (planned from `sql` in `session`), each column as text, joined by `|`.
pub async fn rows_of(session: &Session, frame: DataFrame, sql: &str) -> Vec<String> {
    let batches: Vec<RecordBatch> = session
        .execute(frame, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    batch_rows(&batches)
}

/// Each row of `batches`, each column as text (`NULL` for a null), joined by `|`.
pub fn batch_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let fields: Vec<&str> = columns
                .iter()
                .map(|c| {
                    let c = c.as_string::<i32>();
                    if c.is_null(row) { "NULL" } else { c.value(row) }
                })
                .collect();
            out.push(fields.join("|"));
        }
    }
    out
}

/// [`rows_of`] of `sql` planned in `session`.
pub async fn rows(session: &Session, sql: &str) -> Vec<String> {
    let frame = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows_of(session, frame, sql).await
}
