//! Aggregates over one remote table, run in the database so only the groups travel.
//!
//! Rewritten: `COUNT(*)`, `COUNT(col)`, `SUM` of integers and decimals, `MIN`/`MAX` of
//! integers, decimals and dates, grouped by integer, decimal, date or boolean columns (and by
//! strings where the database groups them byte-wise: PostgreSQL, SQLite). On PostgreSQL and
//! MariaDB also `SUM` of exact decimal arithmetic (`SUM(price * (1 - discount))`, also
//! through the projection common subexpression elimination puts under the aggregate) and
//! `AVG` of decimals: the database sums and counts, DataFusion's own rule divides. No
//! DISTINCT, FILTER or ORDER BY inside aggregates; the scan's filters must all be pushed. A
//! source turns it off with `pushdown_aggregates = false`.

use std::sync::Arc;

use crate::OdbcTable;
use crate::type_map::{ColumnFetch, fetch_type};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection};
use datafusion::scalar::ScalarValue;
use ibarrow_sql::{AggregateCall, KeyUse, RemoteAggregate, render_exact_decimal};

use super::average::DecimalAverage;

fn is_exact_number(data_type: &DataType) -> bool {
    data_type.is_integer() || matches!(data_type, DataType::Decimal128(..))
}

/// How one output column of the aggregate comes back.
enum Output {
    /// One remote column, as is.
    Column(DataType),
    /// `AVG` of a decimal: a remote SUM and COUNT, finished by [`DecimalAverage`].
    Average { sum_scale: i8, result: DataType },
}

/// The replacement plan, or `None` when the aggregate does not qualify.
pub(super) fn pushed_aggregate(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    // The scan, under the projection that common subexpression elimination may have put
    // between it and the aggregate (`price * (1 - discount) AS __common_expr_1`).
    let (scan, projection) = match aggregate.input.as_ref() {
        LogicalPlan::TableScan(scan) => (scan, None),
        LogicalPlan::Projection(projection) => match projection.input.as_ref() {
            LogicalPlan::TableScan(scan) => (scan, Some(projection)),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if scan.fetch.is_some() {
        return Ok(None);
    }
    let Ok(provider) = source_as_provider(&scan.source) else {
        return Ok(None);
    };
    let Some(table) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<OdbcTable>() else {
        return Ok(None);
    };
    let source = table.source();
    if !source.options().pushdown_aggregates {
        return Ok(None);
    }
    let dialect = source.dialect();
    let table_schema = datafusion::datasource::TableProvider::schema(table);
    // An expression of the aggregate in terms of the table's own columns.
    let resolve = |expr: &Expr| -> Option<Expr> {
        let Some(projection) = projection else {
            return Some(expr.clone());
        };
        expr.clone()
            .transform(|e| match &e {
                Expr::Column(column) => {
                    let index = projection.schema.index_of_column(column)?;
                    let inner = match &projection.expr[index] {
                        Expr::Alias(alias) => alias.expr.as_ref().clone(),
                        other => other.clone(),
                    };
                    Ok(Transformed::yes(inner))
                }
                _ => Ok(Transformed::no(e)),
            })
            .ok()
            .map(|t| t.data)
    };
    let column_type = |expr: &Expr| -> Option<(String, DataType)> {
        let Expr::Column(column) = resolve(expr)? else {
            return None;
        };
        let field = table_schema.field_with_name(&column.name).ok()?;
        Some((field.name().clone(), field.data_type().clone()))
    };
    // Exact decimal arithmetic (or a decimal column) the database evaluates as DataFusion
    // does, with its type.
    let exact_sql = |expr: &Expr| -> Option<(String, DataType)> {
        render_exact_decimal(dialect, &table_schema, &resolve(expr)?)
    };

    let mut group_by = Vec::new();
    let mut group_fetch: Vec<ColumnFetch> = Vec::new();
    for expr in &aggregate.group_expr {
        let Some((name, data_type)) = column_type(expr) else {
            return Ok(None);
        };
        // A column read as text (e.g. an unconstrained numeric) groups by value remotely but
        // by text locally.
        let Some(column_fetch) = table.column_fetch(&name) else {
            return Ok(None);
        };
        if column_fetch.read_as_text {
            return Ok(None);
        }
        group_fetch.push(column_fetch.clone());
        let groupable = dialect
            .capabilities()
            .compares_keys_exactly(KeyUse::GroupBy, &data_type);
        if !groupable {
            return Ok(None);
        }
        group_by.push(name);
    }

    let mut aggregates = Vec::new();
    let mut outputs: Vec<Output> = aggregate.schema.fields()[..group_by.len()]
        .iter()
        .map(|f| Output::Column(f.data_type().clone()))
        .collect();
    for (expr, field) in aggregate
        .aggr_expr
        .iter()
        .zip(&aggregate.schema.fields()[group_by.len()..])
    {
        let expr = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
            return Ok(None);
        };
        if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
            return Ok(None);
        }
        let output = field.data_type().clone();
        let call = match (func.name(), params.args.as_slice()) {
            ("count", [Expr::Literal(value, _)]) if !value.is_null() && is_count_star(value) => {
                AggregateCall::CountRows
            }
            ("count", [arg]) => match column_type(arg) {
                Some((name, _)) => AggregateCall::Count(name),
                None => return Ok(None),
            },
            ("avg", [arg]) => {
                // Decimal averages only: the sum and count are exact, the division local.
                let Some((sql, DataType::Decimal128(_, sum_scale))) = exact_sql(arg) else {
                    return Ok(None);
                };
                let (sum, count) = (
                    AggregateCall::SumOf(sql.clone()),
                    AggregateCall::CountOf(sql),
                );
                outputs.push(Output::Average {
                    sum_scale,
                    result: output,
                });
                aggregates.push(sum);
                aggregates.push(count);
                continue;
            }
            ("sum", [arg]) if column_type(arg).is_none() => match exact_sql(arg) {
                Some((sql, _)) => AggregateCall::SumOf(sql),
                None => return Ok(None),
            },
            (function @ ("sum" | "min" | "max"), [arg]) => {
                let Some((name, data_type)) = column_type(arg) else {
                    return Ok(None);
                };
                // SQLite keeps DECIMAL values as floating point.
                let exact = if !dialect.capabilities().keeps_decimals_exact() {
                    data_type.is_integer()
                } else {
                    is_exact_number(&data_type)
                };
                match function {
                    "sum" if exact => AggregateCall::Sum(name),
                    "min" if exact || data_type == DataType::Date32 => AggregateCall::Min(name),
                    "max" if exact || data_type == DataType::Date32 => AggregateCall::Max(name),
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        outputs.push(Output::Column(output));
        aggregates.push(call);
    }

    let Ok(select) = table.remote_select(None, &scan.filters, None) else {
        return Ok(None);
    };
    if select.filters.len() != scan.filters.len() {
        return Ok(None);
    }
    let remote = RemoteAggregate {
        table: table.remote_table().clone(),
        group_by,
        aggregates,
        filters: select.filters,
    };
    let Ok(sql) = remote.to_sql(dialect) else {
        return Ok(None);
    };

    // The remote columns, c0, c1, …: an average takes two (its sum and count).
    let mut remote_types = Vec::new();
    for output in &outputs {
        match output {
            Output::Column(data_type) => remote_types.push(data_type.clone()),
            Output::Average { sum_scale, .. } => {
                remote_types.push(DataType::Decimal128(38, *sum_scale));
                remote_types.push(DataType::Int64);
            }
        }
    }
    let fetch = remote_types
        .iter()
        .enumerate()
        .map(|(i, data_type)| {
            // Group keys come back as the table would return them (CHAR padding included).
            let group = group_fetch.get(i);
            ColumnFetch {
                fetch_type: fetch_type(data_type, dialect),
                read_as_text: false,
                trim_trailing_blanks: group.is_some_and(|g| g.trim_trailing_blanks),
                max_text_bytes: group.and_then(|g| g.max_text_bytes),
                declared_text_bytes: group.and_then(|g| g.declared_text_bytes),
                zoneless_timestamp: group.is_some_and(|g| g.zoneless_timestamp),
            }
        })
        .collect();
    // An aggregate's answer is usually small: read whole where that is faster.
    let table = super::pushed_table(source, sql, &remote_types, fetch).read_whole_when_small();
    let (scan, columns) = super::pushed_scan("aggregate", table)?;
    let mut columns = columns.into_iter();
    let mut exprs = Vec::new();
    for (output, (qualifier, field)) in outputs.iter().zip(aggregate.schema.iter()) {
        let value = match output {
            Output::Column(_) => columns.next(),
            Output::Average { sum_scale, result } => {
                let (Some(sum), Some(count)) = (columns.next(), columns.next()) else {
                    return Ok(None);
                };
                let Some(udf) = DecimalAverage::udf(*sum_scale, result) else {
                    return Ok(None);
                };
                Some(udf.call(vec![sum, count]))
            }
        };
        let Some(value) = value else {
            return Ok(None);
        };
        exprs.push(value.alias_qualified(qualifier.cloned(), field.name()));
    }
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(scan),
    )?)))
}

fn is_count_star(value: &ScalarValue) -> bool {
    matches!(
        value,
        ScalarValue::Int64(Some(1)) | ScalarValue::Int32(Some(1)) | ScalarValue::UInt8(Some(1))
    ) || matches!(value, ScalarValue::Utf8(Some(s)) if s == "*")
}
