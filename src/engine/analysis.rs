//! EXPLAIN ANALYZE's output, with what the result cache did for the statement it ran above its
//! plan with metrics: no operator of that plan shows it, and DataFusion allows nothing above
//! an `Analyze` in the logical plan, so the line is added to the batches as they stream.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::analyze::AnalyzeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use super::Planning;

/// The line for `plan` when it is EXPLAIN ANALYZE of a statement planned under a result
/// cache: `ResultCache: cache=hit|miss|bypass`.
pub(super) fn cache_line(
    plan: &Arc<dyn ExecutionPlan>,
    planning: Option<&Planning>,
) -> Option<String> {
    if !plan.is::<AnalyzeExec>() {
        return None;
    }
    let used = planning?.cache.as_ref()?;
    Some(format!("ResultCache: cache={}", used.label()))
}

/// `stream` (EXPLAIN ANALYZE's rows of plan type and plan) with `line` above the plan with
/// metrics.
pub(super) fn with_first_line(
    stream: SendableRecordBatchStream,
    line: String,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let annotated = stream.map(move |batch| Ok(annotate(&batch?, &line)?));
    Box::pin(RecordBatchStreamAdapter::new(schema, annotated))
}

fn annotate(batch: &RecordBatch, line: &str) -> Result<RecordBatch, ArrowError> {
    let (Some(types), Some(plan_index)) = (
        batch
            .column_by_name("plan_type")
            .and_then(|c| c.as_string_opt::<i32>()),
        batch.schema().index_of("plan").ok(),
    ) else {
        return Ok(batch.clone());
    };
    let Some(plans) = batch.column(plan_index).as_string_opt::<i32>() else {
        return Ok(batch.clone());
    };
    let annotated: StringArray = (0..batch.num_rows())
        .map(|row| {
            let plan = (!plans.is_null(row)).then(|| plans.value(row));
            match (types.is_null(row), plan) {
                (false, Some(plan)) if types.value(row) == "Plan with Metrics" => {
                    Some(format!("{line}\n{plan}"))
                }
                (_, plan) => plan.map(str::to_string),
            }
        })
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[plan_index] = Arc::new(annotated);
    RecordBatch::try_new(batch.schema(), columns)
}
