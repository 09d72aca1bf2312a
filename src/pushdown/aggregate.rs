//! Aggregates over one remote table, run in the database so only the groups travel.
//!
//! Rewritten: `COUNT(*)`, `COUNT(col)`, `SUM` of integers and decimals, `MIN`/`MAX` of
//! integers, decimals and dates, grouped by integer, decimal, date or boolean columns (and by
//! strings where the database groups them byte-wise: PostgreSQL, SQLite). No DISTINCT, FILTER
//! or ORDER BY inside aggregates; the scan's filters must all be pushed. A source turns it off
//! with `pushdown_aggregates = false`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};
use datafusion::scalar::ScalarValue;
use ibarrow_providers::OdbcTable;
use ibarrow_providers::type_map::{ColumnFetch, fetch_type};
use ibarrow_sql::{AggregateCall, Dialect, RemoteAggregate};

use super::remote_scan;

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_exact_number(data_type: &DataType) -> bool {
    data_type.is_integer() || matches!(data_type, DataType::Decimal128(..))
}

/// The replacement plan, or `None` when the aggregate does not qualify.
pub(super) fn pushed_aggregate(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::TableScan(scan) = aggregate.input.as_ref() else {
        return Ok(None);
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
    let column_type = |expr: &Expr| -> Option<(String, DataType)> {
        let Expr::Column(column) = expr else {
            return None;
        };
        let field = table_schema.field_with_name(&column.name).ok()?;
        Some((field.name().clone(), field.data_type().clone()))
    };

    let mut group_by = Vec::new();
    let mut group_trims = Vec::new();
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
        group_trims.push(column_fetch.trim_trailing_blanks);
        let groups_bytewise = matches!(dialect, Dialect::PostgreSql | Dialect::Sqlite);
        let groupable = data_type.is_integer()
            || matches!(data_type, DataType::Date32 | DataType::Boolean)
            || (matches!(data_type, DataType::Decimal128(..)) && dialect != Dialect::Sqlite)
            || (is_string(&data_type) && groups_bytewise);
        if !groupable {
            return Ok(None);
        }
        group_by.push(name);
    }

    let mut aggregates = Vec::new();
    for expr in &aggregate.aggr_expr {
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
        let call = match (func.name(), params.args.as_slice()) {
            ("count", [Expr::Literal(value, _)]) if !value.is_null() && is_count_star(value) => {
                AggregateCall::CountRows
            }
            ("count", [arg]) => match column_type(arg) {
                Some((name, _)) => AggregateCall::Count(name),
                None => return Ok(None),
            },
            (function @ ("sum" | "min" | "max"), [arg]) => {
                let Some((name, data_type)) = column_type(arg) else {
                    return Ok(None);
                };
                // SQLite keeps DECIMAL values as floating point.
                let exact = if dialect == Dialect::Sqlite {
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

    // The remote result has the aggregate's own types, named c0, c1, …
    let fetch = aggregate
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| ColumnFetch {
            fetch_type: fetch_type(f.data_type(), dialect),
            read_as_text: false,
            // Group keys come back as the table would return them (CHAR padding included).
            trim_trailing_blanks: group_trims.get(i).copied().unwrap_or(false),
        })
        .collect();
    Ok(Some(remote_scan(
        "aggregate",
        source,
        sql,
        &aggregate.schema,
        fetch,
    )?))
}

fn is_count_star(value: &ScalarValue) -> bool {
    matches!(
        value,
        ScalarValue::Int64(Some(1)) | ScalarValue::Int32(Some(1)) | ScalarValue::UInt8(Some(1))
    ) || matches!(value, ScalarValue::Utf8(Some(s)) if s == "*")
}
