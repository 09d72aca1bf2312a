//! Access control in the logical plan, before DataFusion's analyzer and optimizer see it:
//! every scan of a source's table is checked against the user's [`Grants`], and a scan with
//! masked or denied columns or with row filters is wrapped:
//!
//! ```text
//! Projection: id, <mask expression> AS email, ibarrow_denied_column(ssn) AS ssn
//!   Filter: <row filter>            -- pushed into the scan's remote SQL like any filter
//!     TableScan: maria.crm.customers
//! ```
//!
//! So everything above the scan (filters, joins, aggregates, the result) sees masked values
//! only, and the rows the role may see only. A statement that names a denied column (or selects
//! it through `*`) is refused while planning; the wrapper's `ibarrow_denied_column` stands in
//! for the value all the same, so a plan shape the check missed fails when it would read the
//! value rather than return it. The optimizer prunes the wrapper's unused columns as any other.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, Filter, LogicalPlan, Projection, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, TableScan, TableSource, Volatility, WriteOp,
};
use ibarrow_providers::{OdbcTable, PassthroughTable};

use super::policy::{ColumnAccess, Grants, TableAccess, TableName};
use super::report::{AccessReport, TableRead};
use crate::error::{Error, Result};

/// Checks and rewrites `plan` for `grants` (`None`: no `[roles]`, everything readable, only
/// the report is made).
pub(crate) fn govern(
    plan: LogicalPlan,
    grants: Option<&Grants>,
    state: &SessionState,
) -> Result<(LogicalPlan, AccessReport)> {
    let referenced = referenced_columns(&plan)?;
    let mut report = AccessReport::default();
    let mut first_error: Option<Error> = None;
    let mut rewritten = false;
    let plan = plan
        .transform_up_with_subqueries(|node| {
            if first_error.is_some() {
                return Ok(Transformed::no(node));
            }
            match governed_node(node, grants, state, &referenced, &mut report) {
                Ok(Transformed {
                    data, transformed, ..
                }) => {
                    rewritten |= transformed;
                    Ok(Transformed::new_transformed(data, transformed))
                }
                Err(err) => {
                    first_error = Some(err);
                    Ok(Transformed::no(LogicalPlan::EmptyRelation(
                        datafusion::logical_expr::EmptyRelation {
                            produce_one_row: false,
                            schema: Arc::new(DFSchema::empty()),
                        },
                    )))
                }
            }
        })?
        .data;
    if let Some(err) = first_error {
        return Err(err);
    }
    // A wrapper may change a column's nullability: the nodes above describe their schemas
    // again.
    let plan = if rewritten {
        plan.transform_up_with_subqueries(|node| node.recompute_schema().map(Transformed::yes))?
            .data
    } else {
        plan
    };
    Ok((plan, report))
}

/// The lower-cased names of every column any expression of the plan (its subqueries
/// included) refers to: what the statement reads, `*` expanded.
fn referenced_columns(plan: &LogicalPlan) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                match e {
                    Expr::Column(column) | Expr::OuterReferenceColumn(_, column) => {
                        names.insert(column.name.to_lowercase());
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(names)
}

/// The ibarrow table behind a plan's table source, if it is one.
fn odbc_table(
    source: &Arc<dyn TableSource>,
) -> Option<Arc<dyn datafusion::catalog::TableProvider>> {
    source_as_provider(source)
        .ok()
        .filter(|p| p.is::<OdbcTable>())
}

fn is_passthrough(source: &Arc<dyn TableSource>) -> Option<String> {
    let provider = source_as_provider(source).ok()?;
    provider
        .downcast_ref::<PassthroughTable>()
        .map(|t| t.source().name().to_string())
}

/// The grant name of a table as the statement named it, completed with the session's default
/// catalog and schema: `source.schema.table` (names match grants case-insensitively, so the
/// spelling the user typed is as good as the database's). A source's table registered under
/// another name (a Rust program's `register_table`) is granted under that name.
pub(crate) fn table_name(
    reference: &TableReference,
    state: &SessionState,
) -> (String, String, String) {
    let defaults = &state.config_options().catalog;
    let resolved = reference
        .clone()
        .resolve(&defaults.default_catalog, &defaults.default_schema);
    (
        resolved.catalog.to_string(),
        resolved.schema.to_string(),
        resolved.table.to_string(),
    )
}

fn governed_node(
    node: LogicalPlan,
    grants: Option<&Grants>,
    state: &SessionState,
    referenced: &BTreeSet<String>,
    report: &mut AccessReport,
) -> Result<Transformed<LogicalPlan>> {
    match node {
        LogicalPlan::TableScan(scan) => {
            if let Some(source) = is_passthrough(&scan.source) {
                if let Some(grants) = grants {
                    grants.check_native_sql(&source)?;
                }
                report.native_sql.insert(source);
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            }
            if odbc_table(&scan.source).is_none() {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            }
            governed_scan(scan, grants, state, referenced, report)
        }
        LogicalPlan::Dml(dml) => {
            if let (Some(grants), WriteOp::Insert(_)) = (grants, &dml.op)
                && odbc_table(&dml.target).is_some()
            {
                let (source, schema, table) = table_name(&dml.table_name, state);
                grants.check_write(&TableName {
                    source: &source,
                    schema: &schema,
                    table: &table,
                })?;
            }
            report.written.insert(dml.table_name.to_string());
            Ok(Transformed::no(LogicalPlan::Dml(dml)))
        }
        other => Ok(Transformed::no(other)),
    }
}

fn governed_scan(
    scan: TableScan,
    grants: Option<&Grants>,
    state: &SessionState,
    referenced: &BTreeSet<String>,
    report: &mut AccessReport,
) -> Result<Transformed<LogicalPlan>> {
    let (source, schema_name, table) = table_name(&scan.table_name, state);
    let name = TableName {
        source: &source,
        schema: &schema_name,
        table: &table,
    };
    let schema = Arc::clone(&scan.projected_schema);
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let access = match grants {
        Some(grants) => grants.table(&name, &columns)?,
        None => TableAccess {
            columns: vec![ColumnAccess::Plain; columns.len()],
            row_filter: None,
        },
    };
    let mut read = TableRead {
        table: name.to_string(),
        ..TableRead::default()
    };
    for (column, column_access) in columns.iter().zip(&access.columns) {
        if !referenced.contains(&column.to_lowercase()) {
            continue;
        }
        match column_access {
            ColumnAccess::Denied => {
                if let Some(grants) = grants {
                    return Err(grants.column_denial(&name, column));
                }
            }
            ColumnAccess::Masked { role, .. } => {
                read.masked.push(format!("{column} (role {role})"));
            }
            ColumnAccess::Plain => {}
        }
        read.columns.push(column.to_string());
    }
    if let Some(alternatives) = &access.row_filter {
        read.row_filters = alternatives
            .iter()
            .flatten()
            .map(|f| format!("{} (role {})", f.expression, f.role))
            .collect();
    }
    report.tables.push(read);
    if access.is_unrestricted() {
        return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
    }
    let qualifier = scan.table_name.clone();
    let mut plan = LogicalPlan::TableScan(scan);
    if let Some(alternatives) = &access.row_filter {
        let mut predicate: Option<Expr> = None;
        for alternative in alternatives {
            let mut all: Option<Expr> = None;
            for filter in alternative {
                let expr = state
                    .create_logical_expr(&filter.expression, &schema)
                    .map_err(|err| Error::Config {
                        location: format!("[roles.{}] row_filters", filter.role),
                        message: format!(
                            "the row filter on {name} (`{}`) does not plan: {err}; fix it \
                             (it is SQL over the table's columns)",
                            filter.expression
                        ),
                    })?;
                all = Some(match all {
                    Some(prior) => prior.and(expr),
                    None => expr,
                });
            }
            if let Some(all) = all {
                predicate = Some(match predicate {
                    Some(prior) => prior.or(all),
                    None => all,
                });
            }
        }
        if let Some(predicate) = predicate {
            plan = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(plan))?);
        }
    }
    if access.columns.iter().any(|c| *c != ColumnAccess::Plain) {
        let mut exprs = Vec::with_capacity(columns.len());
        for ((column_qualifier, field), column_access) in schema.iter().zip(&access.columns) {
            let column = Expr::Column(datafusion::common::Column::new(
                column_qualifier.cloned(),
                field.name(),
            ));
            let value = match column_access {
                ColumnAccess::Plain => {
                    exprs.push(column);
                    continue;
                }
                ColumnAccess::Masked { role, expression } => {
                    let masked = state
                        .create_logical_expr(expression, &schema)
                        .map_err(|err| Error::Config {
                            location: format!("[roles.{role}] masks"),
                            message: format!(
                                "the mask of {name}.{} (`{expression}`) does not plan: {err}; \
                                 fix it (it is SQL over the table's columns)",
                                field.name()
                            ),
                        })?;
                    masked.cast_to(field.data_type(), &schema)?
                }
                ColumnAccess::Denied => denied_value(
                    column,
                    field.data_type(),
                    match grants {
                        Some(grants) => grants.column_denial(&name, field.name()).to_string(),
                        None => String::new(),
                    },
                ),
            };
            exprs.push(value.alias_qualified(Some(qualifier.clone()), field.name()));
        }
        plan = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan))?);
    }
    Ok(Transformed::yes(plan))
}

/// The name of the placeholder of a denied column.
pub(crate) const DENIED_COLUMN_FUNCTION: &str = "ibarrow_denied_column";

/// `ibarrow_denied_column(column)`: fails with the denial when evaluated.
fn denied_value(column: Expr, data_type: &DataType, message: String) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(DeniedColumn {
            message,
            data_type: data_type.clone(),
            signature: Signature::any(1, Volatility::Volatile),
        })),
        vec![column],
    ))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DeniedColumn {
    message: String,
    data_type: DataType,
    signature: Signature,
}

impl ScalarUDFImpl for DeniedColumn {
    fn name(&self) -> &str {
        DENIED_COLUMN_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(self.data_type.clone())
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Err(datafusion::error::DataFusionError::External(Box::new(
            Error::AccessDenied(self.message.clone()),
        )))
    }
}
