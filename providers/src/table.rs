//! [`OdbcTable`]: a remote table as a DataFusion `TableProvider` with projection, filter and
//! limit pushdown in the source's dialect.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{Constraint, Constraints};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use ibarrow_sql::{RemoteSelect, RemoteTable, SelectColumn, render_filter};

use crate::discovery::TableKind;
use crate::error::OdbcError;
use crate::exec::OdbcExec;
use crate::source::OdbcSource;
use crate::type_map::{ColumnFetch, MappedColumn};

#[derive(Debug)]
pub struct OdbcTable {
    source: Arc<OdbcSource>,
    table: RemoteTable,
    kind: TableKind,
    schema: SchemaRef,
    /// The columns filters may name: those read as text are left out, so that filters on
    /// them stay local.
    filter_schema: Schema,
    fetch: Vec<ColumnFetch>,
    primary_key: Vec<String>,
    constraints: Option<Constraints>,
}

impl OdbcTable {
    pub(crate) fn new(
        source: Arc<OdbcSource>,
        table: RemoteTable,
        kind: TableKind,
        columns: Vec<MappedColumn>,
        primary_key: Vec<String>,
    ) -> Self {
        let fetch = columns.iter().map(|c| c.fetch.clone()).collect();
        let schema = Arc::new(Schema::new(
            columns.into_iter().map(|c| c.field).collect::<Vec<_>>(),
        ));
        let filter_schema = Schema::new(
            schema
                .fields()
                .iter()
                .zip(&fetch)
                .filter(|(_, f): &(_, &ColumnFetch)| !f.read_as_text)
                .map(|(field, _)| Arc::clone(field))
                .collect::<Vec<_>>(),
        );
        let key_indices: Option<Vec<usize>> = primary_key
            .iter()
            .map(|name| schema.index_of(name).ok())
            .collect();
        let constraints = key_indices
            .filter(|k| !k.is_empty())
            .map(|k| Constraints::new_unverified(vec![Constraint::PrimaryKey(k)]));
        Self {
            source,
            table,
            kind,
            schema,
            filter_schema,
            fetch,
            primary_key,
            constraints,
        }
    }

    pub fn source(&self) -> &Arc<OdbcSource> {
        &self.source
    }

    pub fn remote_table(&self) -> &RemoteTable {
        &self.table
    }

    pub fn primary_key(&self) -> &[String] {
        &self.primary_key
    }

    /// The statement a scan with these arguments sends (also what EXPLAIN shows).
    pub fn remote_select(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<RemoteSelect, OdbcError> {
        let dialect = self.source.dialect();
        let all: Vec<usize>;
        let indices = match projection {
            Some(indices) => indices,
            None => {
                all = (0..self.schema.fields().len()).collect();
                &all
            }
        };
        let columns = indices
            .iter()
            .map(|&i| SelectColumn {
                name: self.schema.field(i).name().clone(),
                as_text: self.fetch[i].read_as_text,
            })
            .collect();
        let rendered: Vec<String> = filters
            .iter()
            .filter_map(|f| render_filter(dialect, &self.filter_schema, f))
            .collect();
        // A limit is only correct remotely when every filter is applied remotely too.
        let all_filters_remote = rendered.len() == filters.len();
        Ok(RemoteSelect {
            table: self.table.clone(),
            columns,
            filters: rendered,
            limit: limit.filter(|_| all_filters_remote),
        })
    }
}

#[async_trait]
impl TableProvider for OdbcTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.constraints.as_ref()
    }

    fn table_type(&self) -> TableType {
        match self.kind {
            TableKind::Table => TableType::Base,
            TableKind::View => TableType::View,
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let dialect = self.source.dialect();
        Ok(filters
            .iter()
            .map(|f| match render_filter(dialect, &self.filter_schema, f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let select = self.remote_select(projection, filters, limit)?;
        let sql = select
            .to_sql(self.source.dialect())
            .map_err(|source| OdbcError::Sql {
                source_name: self.source.name().to_string(),
                source,
            })?;
        let (schema, fetch) = match projection {
            Some(indices) => (
                Arc::new(
                    self.schema
                        .project(indices)
                        .map_err(DataFusionError::from)?,
                ),
                indices.iter().map(|&i| self.fetch[i].clone()).collect(),
            ),
            None => (Arc::clone(&self.schema), self.fetch.clone()),
        };
        Ok(Arc::new(OdbcExec::new(
            Arc::clone(&self.source),
            sql,
            schema,
            fetch,
        )))
    }
}
