//! What both protocols do with a query: placeholders and their values, planned queries kept
//! between the call that plans and the calls that fetch, and result streams that end on
//! cancellation, shutdown or a deadline with an error rather than quietly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::{Stream, StreamExt};
use ibarrow::Session;
use tokio_util::sync::CancellationToken;

use crate::error::ServerError;

/// Rewrites JDBC/ODBC-style `?` placeholders to DataFusion's `$1`, `$2`, … so that values
/// are bound as parameters. Only placeholder tokens change: `?` inside a string literal or a
/// quoted name stays. Text mixing `?` with `$n` is refused, its numbering would be unclear.
pub fn number_placeholders(sql: &str) -> Result<String, ServerError> {
    // Most statements have none: no second tokenizing pass for them.
    if !sql.contains('?') {
        return Ok(sql.to_string());
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|err| ServerError::BadRequest(format!("SQL text: {err}")))?;
    let mut question_marks = Vec::new();
    let mut numbered = false;
    for token in &tokens {
        if let Token::Placeholder(text) = &token.token {
            if text == "?" {
                question_marks.push(token.span.start);
            } else if text.starts_with('$') {
                numbered = true;
            }
        }
    }
    if question_marks.is_empty() {
        return Ok(sql.to_string());
    }
    if numbered {
        return Err(ServerError::BadRequest(
            "the statement mixes `?` and `$n` placeholders; use one kind".into(),
        ));
    }
    // Byte offsets of the `?` tokens, from their line and column (both count from 1, the
    // column in characters).
    let mut offsets = Vec::with_capacity(question_marks.len());
    let mut wanted = question_marks.iter().peekable();
    let (mut line, mut column) = (1u64, 1u64);
    for (offset, ch) in sql.char_indices() {
        while let Some(at) = wanted.peek() {
            if at.line == line && at.column == column {
                offsets.push(offset);
                wanted.next();
            } else {
                break;
            }
        }
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    // Tokens inside `/*! ... */` hints carry positions relative to the hint: only a `?`
    // found where the tokenizer says is rewritten, anything else is refused.
    if offsets.len() != question_marks.len()
        || offsets
            .iter()
            .any(|&at| sql.as_bytes().get(at) != Some(&b'?'))
    {
        return Err(ServerError::BadRequest(
            "the placeholders of this statement cannot be located (a `?` inside a `/*! */` \
             hint?); use $1, $2, ... instead"
                .into(),
        ));
    }
    let mut out = String::with_capacity(sql.len() + 2 * offsets.len());
    let mut rest = 0;
    for (n, offset) in offsets.iter().enumerate() {
        out.push_str(&sql[rest..*offset]);
        out.push_str(&format!("${}", n + 1));
        rest = offset + 1;
    }
    out.push_str(&sql[rest..]);
    Ok(out)
}

/// Plans `sql` in `session` with its placeholders numbered and, when given, bound to
/// `params` (`Session::sql_with_params` casts each to the type the plan expects: clients send
/// 64-bit integers for 32-bit columns): the one path of both protocols from text and values
/// to a plan.
pub async fn plan_with_params(
    session: &Session,
    sql: &str,
    params: Option<Vec<ScalarValue>>,
) -> Result<datafusion::dataframe::DataFrame, ServerError> {
    let sql = number_placeholders(sql)?;
    Ok(match params {
        Some(params) if !params.is_empty() => session.sql_with_params(&sql, params).await?,
        _ => session.sql(&sql).await?,
    })
}

/// The JSON parameters of an HTTP or WebSocket request as typed values.
pub fn json_params(values: &[serde_json::Value]) -> Result<Vec<ScalarValue>, ServerError> {
    values
        .iter()
        .enumerate()
        .map(|(n, value)| json_param(value, n + 1))
        .collect()
}

/// A JSON parameter value of the HTTP API as a typed value: numbers without a fraction are
/// 64-bit integers, other numbers doubles; arrays and objects are refused.
fn json_param(value: &serde_json::Value, position: usize) -> Result<ScalarValue, ServerError> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Array(_) | Value::Object(_) => {
            return Err(ServerError::BadRequest(format!(
                "parameter {position} is an array or object; pass a string, number, \
                 boolean or null"
            )));
        }
    })
}

/// A query planned by GetFlightInfo, waiting for its DoGet calls.
pub struct PlannedQuery {
    /// The session of the user who planned it; only that user may fetch or cancel it.
    pub session: Session,
    /// The statement's text, recorded for the run (query log, metrics) when a ticket runs it.
    pub sql: String,
    /// The physical plan the tickets run.
    pub plan: ibarrow::PhysicalQuery,
    /// The result schema promised in the FlightInfo.
    pub schema: SchemaRef,
    /// How many tickets it was given: one per output partition, or one for all.
    pub endpoints: usize,
    /// Cancelled by CancelFlightInfo or CancelQuery, or with the server's shutdown.
    pub cancel: CancellationToken,
}

/// How many endpoints a plan's result can be fetched from: each output partition on its
/// own when no partition waits for another (a chain of one-input operators down to the
/// scan, nothing that repartitions or merges), else one stream of all partitions. A
/// repartition read one output at a time would buffer the others without bound.
pub fn endpoint_count(plan: &Arc<dyn ExecutionPlan>) -> usize {
    fn independent(plan: &Arc<dyn ExecutionPlan>) -> bool {
        if plan.is::<RepartitionExec>()
            || plan.is::<CoalescePartitionsExec>()
            || plan.is::<SortPreservingMergeExec>()
        {
            return false;
        }
        let children = plan.children();
        children.len() <= 1 && children.into_iter().all(independent)
    }
    let partitions = plan.output_partitioning().partition_count();
    if partitions > 1 && independent(plan) {
        partitions
    } else {
        1
    }
}

/// Why a guarded stream stopped early.
#[derive(Clone)]
pub struct StopSignals {
    /// This query's cancellation (CancelFlightInfo, CancelQuery).
    pub cancel: CancellationToken,
    /// The server's: cancelled when the shutdown grace has run out.
    pub shutdown: CancellationToken,
    /// When the request times out, and the timeout it was given (reported in the error);
    /// None for no deadline.
    pub deadline: Option<(Instant, Duration)>,
}

/// `stream`'s batches with `schema` as their schema (the one the client was promised), until
/// the stream ends or a stop signal ends it with an error.
pub fn guarded(
    stream: datafusion::execution::SendableRecordBatchStream,
    schema: SchemaRef,
    stop: StopSignals,
) -> impl Stream<Item = Result<RecordBatch, ServerError>> + Send + 'static {
    futures::stream::unfold(Some(stream), move |state| {
        let schema = Arc::clone(&schema);
        let stop = stop.clone();
        async move {
            let mut stream = state?;
            let sleep = async {
                match stop.deadline {
                    Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                    None => futures::future::pending().await,
                }
            };
            let next = tokio::select! {
                biased;
                _ = stop.cancel.cancelled() => Some(Err(ServerError::Cancelled("the query was cancelled".into()))),
                _ = stop.shutdown.cancelled() => Some(Err(ServerError::ShuttingDown)),
                _ = sleep => Some(Err(ServerError::RequestTimeout(stop.deadline.map(|d| d.1).unwrap_or_default()))),
                item = stream.next() => item.map(|item| item.map_err(ServerError::from).and_then(|batch| conform(batch, &schema))),
            };
            match next {
                Some(Ok(batch)) => Some((Ok(batch), Some(stream))),
                // An error ends the stream; dropping it cancels what still runs remotely.
                Some(Err(err)) => Some((Err(err), None)),
                None => None,
            }
        }
    })
}

/// `batch` under the promised schema: the same columns, the names, nullability and
/// metadata the client was told. DataFusion's batches can differ in those details only.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ServerError> {
    if batch.schema_ref() == schema {
        return Ok(batch);
    }
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        batch.columns().to_vec(),
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(ServerError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_placeholders_outside_literals() {
        assert_eq!(
            number_placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND \"c?\" = ?").unwrap(),
            "SELECT * FROM t WHERE a = $1 AND b = '?' AND \"c?\" = $2"
        );
        assert_eq!(
            number_placeholders("SELECT 'é'\n, ?").unwrap(),
            "SELECT 'é'\n, $1"
        );
        assert_eq!(number_placeholders("SELECT $1").unwrap(), "SELECT $1");
        assert!(number_placeholders("SELECT ?, $1").is_err());
        // A `?` in a hint comment is tokenized with positions inside the hint.
        for text in ["SELECT 1 /*!ééé?*/", "SELECT 1 /*!abc?*/"] {
            if let Ok(rewritten) = number_placeholders(text) {
                assert_eq!(rewritten.replace("$1", "?"), text, "{text}");
            }
        }
    }

    #[test]
    fn json_parameters_map_to_typed_values() {
        use serde_json::json;
        assert_eq!(
            json_param(&json!(7), 1).unwrap(),
            ScalarValue::Int64(Some(7))
        );
        assert_eq!(
            json_param(&json!(1.5), 1).unwrap(),
            ScalarValue::Float64(Some(1.5))
        );
        assert_eq!(
            json_param(&json!("x"), 1).unwrap(),
            ScalarValue::Utf8(Some("x".into()))
        );
        assert!(
            json_param(&json!([1]), 2)
                .unwrap_err()
                .to_string()
                .contains("parameter 2")
        );
    }
}
