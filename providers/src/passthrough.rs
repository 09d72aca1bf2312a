//! Query passthrough: a native statement of one source, sent as written, as a table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::ExecutionPlan;
use odbc_api::ResultSetMetadata;
use odbc_api::handles::Nullability;

use ibarrow_sql::ScanStatement;

use crate::call::CallSpec;
use crate::error::OdbcError;
use crate::pool::PooledConnection;
use crate::scan::OdbcExec;
use crate::source::OdbcSource;
use crate::type_map::{ColumnFetch, ColumnInfo, filter_schema, map_column};

/// The result of a native query. Its columns come from the driver's description of the
/// prepared statement; projections are applied by wrapping the query. Filters stay local on a
/// user's statement; on one ibarrow built (a pushed aggregate or join) those the database
/// evaluates exactly are sent too (a HAVING over a pushed aggregate).
#[derive(Debug)]
pub struct PassthroughTable {
    source: Arc<OdbcSource>,
    sql: String,
    schema: SchemaRef,
    fetch: Vec<ColumnFetch>,
    /// The columns filters may name ([`crate::type_map::filter_schema`]).
    filter_schema: Schema,
    /// Built by ibarrow (a pushed sub-plan), so known to be a SELECT that can be wrapped with
    /// a join's run-time filter; a user's native statement is sent exactly as written.
    built_by_ibarrow: bool,
    /// Read the result whole, not through a cursor, when the database expects few rows.
    read_whole_when_small: bool,
    /// A native statement of a writable source that may write: run on the primary only.
    may_write: bool,
}

/// What a [`PassthroughTable`] is apart from its source and columns
/// ([`PassthroughTable::parts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PassthroughParts {
    /// The statement.
    pub sql: String,
    /// How each result column is read.
    pub fetch: Vec<ColumnFetch>,
    /// A SELECT ibarrow built (a pushed sub-plan), which filters may narrow.
    pub built_by_ibarrow: bool,
    /// Read the result whole when the database expects few rows.
    pub read_whole_when_small: bool,
    /// A native statement that may write: it runs on the primary only.
    pub may_write: bool,
}

impl PassthroughTable {
    /// A SELECT ibarrow built, whose result columns are already known (named as in `schema`).
    pub fn with_schema(
        source: Arc<OdbcSource>,
        sql: String,
        schema: SchemaRef,
        fetch: Vec<ColumnFetch>,
    ) -> Self {
        Self {
            filter_schema: filter_schema(&schema, &fetch),
            source,
            sql,
            schema,
            fetch,
            built_by_ibarrow: true,
            read_whole_when_small: false,
            may_write: false,
        }
    }

    /// The statement and how it is read, for sending the table to a cluster scheduler,
    /// which rebuilds it on its own source of the same name ([`Self::from_parts`]).
    pub fn parts(&self) -> PassthroughParts {
        PassthroughParts {
            sql: self.sql.clone(),
            fetch: self.fetch.clone(),
            built_by_ibarrow: self.built_by_ibarrow,
            read_whole_when_small: self.read_whole_when_small,
            may_write: self.may_write,
        }
    }

    /// The table [`Self::parts`] described, with result columns `schema`, on `source`.
    pub fn from_parts(source: Arc<OdbcSource>, schema: SchemaRef, parts: PassthroughParts) -> Self {
        Self {
            filter_schema: filter_schema(&schema, &parts.fetch),
            source,
            sql: parts.sql,
            schema,
            fetch: parts.fetch,
            built_by_ibarrow: parts.built_by_ibarrow,
            read_whole_when_small: parts.read_whole_when_small,
            may_write: parts.may_write,
        }
    }

    /// Lets scans read the result whole when the database estimates it small
    /// ([`OdbcExec::read_whole_when_small`]).
    pub fn read_whole_when_small(mut self) -> Self {
        self.read_whole_when_small = true;
        self
    }

    /// The source the statement runs on.
    pub fn source(&self) -> &Arc<OdbcSource> {
        &self.source
    }

    /// How each column is fetched, in schema order.
    pub fn fetch(&self) -> &[ColumnFetch] {
        &self.fetch
    }

    /// The statement narrowed by `filters` (over this table's columns), when it is one
    /// ibarrow built and every filter can run remotely exactly as in DataFusion.
    pub fn narrowed(&self, filters: &[Expr]) -> Option<ScanStatement> {
        let statement = ScanStatement::new(self.source.dialect(), self.sql.as_str());
        if filters.is_empty() {
            return Some(statement);
        }
        if !self.built_by_ibarrow {
            return None;
        }
        let conditions = filters
            .iter()
            .map(|filter| self.render_filter(filter))
            .collect::<Option<Vec<_>>>()?;
        Some(statement.narrow(conditions))
    }

    /// `filter` as SQL over the statement's columns.
    fn render_filter(&self, filter: &Expr) -> Option<String> {
        ibarrow_sql::render_filter(self.source.dialect(), &self.filter_schema, filter)
    }

    /// Prepares `sql` on the source to learn its columns (the statement is not executed), as
    /// a call like any other ([`crate::call`]): under the breaker and the query timeout, and
    /// tried again on a fresh connection when the connection was lost (a restarted server
    /// behind an idle pooled connection). A source that is not writable takes only
    /// statements that read ([`ibarrow_sql::check_reads_only`]).
    pub async fn describe(source: Arc<OdbcSource>, sql: &str) -> Result<Self, OdbcError> {
        let reads_only = ibarrow_sql::check_reads_only(source.dialect(), sql);
        if !source.options().writable {
            reads_only.clone().map_err(|err| OdbcError::ReadOnly {
                source_name: source.name().to_string(),
                what: "this passthrough statement".into(),
                reason: err.to_string(),
            })?;
        }
        let may_write = reads_only.is_err();
        let mut spec = CallSpec::new(&source, "describing a passthrough query").statement(sql);
        if may_write {
            spec = spec.on_primary();
        }
        let (text, dialect) = (sql.to_string(), source.dialect());
        let columns = source
            .call(spec, move |connection| describe_columns(connection, &text))
            .await?;
        let mapped: Vec<_> = columns.iter().map(|c| map_column(c, dialect)).collect();
        let schema = Arc::new(Schema::new(
            mapped.iter().map(|m| m.field.clone()).collect::<Vec<_>>(),
        ));
        let fetch: Vec<ColumnFetch> = mapped.into_iter().map(|m| m.fetch).collect();
        Ok(Self {
            filter_schema: filter_schema(&schema, &fetch),
            source,
            sql: sql.trim().trim_end_matches(';').to_string(),
            schema,
            fetch,
            built_by_ibarrow: false,
            read_whole_when_small: false,
            may_write,
        })
    }
}

/// The result columns of `sql`, as the driver describes the prepared statement.
fn describe_columns(
    connection: &PooledConnection,
    sql: &str,
) -> Result<Vec<ColumnInfo>, OdbcError> {
    // Errors quote the statement, so a user sees which query the database refused.
    let preparing = format!("preparing the passthrough query `{sql}`");
    let describing = format!("describing the passthrough query `{sql}`");
    let mut prepared = connection
        .prepare(sql)
        .map_err(|err| connection.failure(&preparing, err))?;
    let mut columns = Vec::new();
    let count = prepared
        .num_result_cols()
        .map_err(|err| connection.failure(&describing, err))?;
    for index in 1..=count.max(0) as u16 {
        let describe =
            |prepared: &mut odbc_api::Prepared<_>| -> Result<ColumnInfo, odbc_api::Error> {
                let data_type = prepared.col_data_type(index)?;
                let unsigned = prepared.column_is_unsigned(index).unwrap_or(false);
                Ok(ColumnInfo {
                    name: prepared.col_name(index)?,
                    data_type: data_type.data_type().0,
                    type_name: if unsigned {
                        "unsigned".into()
                    } else {
                        String::new()
                    },
                    column_size: data_type.column_size().map(|n| n.get() as i32),
                    decimal_digits: Some(data_type.decimal_digits()),
                    nullable: !matches!(prepared.col_nullability(index)?, Nullability::NoNulls),
                })
            };
        let column = describe(&mut prepared).map_err(|err| connection.failure(&describing, err))?;
        columns.push(column);
    }
    drop(prepared);
    if columns.is_empty() {
        return Err(OdbcError::Odbc {
            source_name: connection.source_name().to_string(),
            context: "passthrough query".into(),
            message: "the statement returns no columns; only queries can be passed through".into(),
        });
    }
    Ok(columns)
}

#[async_trait]
impl TableProvider for PassthroughTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if self.built_by_ibarrow && self.render_filter(filter).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Only the filters declared Exact above arrive here.
        let Some(narrowed) = self.narrowed(filters) else {
            return Err(DataFusionError::Internal(format!(
                "a filter on a statement of source {} cannot be sent to it",
                self.source.name()
            )));
        };
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let indices = projection.unwrap_or(&all);
        let statement = if indices == &all {
            narrowed
        } else {
            let names: Vec<&str> = indices
                .iter()
                .map(|&i| self.schema.field(i).name().as_str())
                .collect();
            narrowed.project(&names).map_err(|source| {
                DataFusionError::from(OdbcError::Sql {
                    source_name: self.source.name().to_string(),
                    source,
                })
            })?
        };
        let schema = Arc::new(self.schema.project(indices)?);
        let fetch = indices.iter().map(|&i| self.fetch[i].clone()).collect();
        // A pushed sub-plan: PostgreSQL's estimate of its rows guides the joins above.
        let rows = if self.built_by_ibarrow {
            self.source
                .statement_row_estimate(&statement.render())
                .await
        } else {
            None
        };
        let mut exec = OdbcExec::new(Arc::clone(&self.source), vec![statement], schema, fetch)
            .with_row_estimate(rows.and_then(|rows| usize::try_from(rows).ok()));
        if self.built_by_ibarrow {
            exec = exec.built_by_ibarrow();
        }
        if self.read_whole_when_small {
            exec = exec.read_whole_when_small();
        }
        if self.may_write {
            exec = exec.on_primary();
        }
        Ok(Arc::new(exec))
    }
}
