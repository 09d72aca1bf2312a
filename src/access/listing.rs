//! The catalogs as a governed session sees them: listings (`SHOW TABLES`,
//! `information_schema`, `\dt`, completion, Flight SQL `GetTables`) name only the tables the
//! user may read, and `information_schema.columns` leaves out the columns it may not read.
//! Resolving a name still finds every table, so that reading one that is not granted is an
//! error naming the missing grant rather than "table not found" (src/access/rewrite.rs).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableFunction;
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::policy::{ColumnAccess, Grants, TableName};

const INFORMATION_SCHEMA: &str = "information_schema";

type TableFunctions = std::collections::HashMap<String, Arc<TableFunction>>;

/// The engine's catalogs filtered for one user's grants.
#[derive(Debug)]
pub struct GovernedCatalogs {
    inner: Arc<dyn CatalogProviderList>,
    grants: Arc<Grants>,
    /// For `information_schema`: tables show their readable columns only.
    for_listing: bool,
    table_functions: Arc<TableFunctions>,
}

impl GovernedCatalogs {
    pub(crate) fn new(
        inner: Arc<dyn CatalogProviderList>,
        grants: Arc<Grants>,
        table_functions: TableFunctions,
    ) -> Self {
        Self {
            inner,
            grants,
            for_listing: false,
            table_functions: Arc::new(table_functions),
        }
    }

    /// These catalogs for listings that describe tables: only their readable columns show.
    pub(crate) fn listing(&self) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::clone(&self.inner),
            grants: Arc::clone(&self.grants),
            for_listing: true,
            table_functions: Arc::clone(&self.table_functions),
        })
    }

    fn governed(&self, name: &str, catalog: Arc<dyn CatalogProvider>) -> GovernedCatalog {
        GovernedCatalog {
            name: name.to_string(),
            inner: catalog,
            catalogs: self.listing(),
            grants: Arc::clone(&self.grants),
            for_listing: self.for_listing,
        }
    }
}

impl CatalogProviderList for GovernedCatalogs {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.register_catalog(name, catalog)
    }

    /// The catalogs with at least one readable table.
    fn catalog_names(&self) -> Vec<String> {
        self.inner
            .catalog_names()
            .into_iter()
            .filter(|name| {
                self.inner
                    .catalog(name)
                    .is_some_and(|c| !self.governed(name, c).schema_names().is_empty())
            })
            .collect()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        let catalog = self.inner.catalog(name)?;
        Some(Arc::new(self.governed(name, catalog)))
    }
}

#[derive(Debug)]
struct GovernedCatalog {
    name: String,
    inner: Arc<dyn CatalogProvider>,
    /// What this session's `information_schema` lists.
    catalogs: Arc<GovernedCatalogs>,
    grants: Arc<Grants>,
    for_listing: bool,
}

impl GovernedCatalog {
    fn governed(&self, schema: &str, inner: Arc<dyn SchemaProvider>) -> GovernedSchema {
        GovernedSchema {
            catalog: self.name.clone(),
            schema: schema.to_string(),
            inner,
            grants: Arc::clone(&self.grants),
            for_listing: self.for_listing,
        }
    }
}

impl CatalogProvider for GovernedCatalog {
    /// The schemas with at least one readable table.
    fn schema_names(&self) -> Vec<String> {
        self.inner
            .schema_names()
            .into_iter()
            .filter(|name| !name.eq_ignore_ascii_case(INFORMATION_SCHEMA))
            .filter(|name| {
                self.inner
                    .schema(name)
                    .is_some_and(|s| !self.governed(name, s).table_names().is_empty())
            })
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name.eq_ignore_ascii_case(INFORMATION_SCHEMA) {
            return Some(Arc::new(
                InformationSchemaProvider::new(Arc::clone(&self.catalogs) as _)
                    .with_table_functions((*self.catalogs.table_functions).clone()),
            ));
        }
        let schema = self.inner.schema(name)?;
        Some(Arc::new(self.governed(name, schema)))
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.inner.register_schema(name, schema)
    }
}

#[derive(Debug)]
struct GovernedSchema {
    catalog: String,
    schema: String,
    inner: Arc<dyn SchemaProvider>,
    grants: Arc<Grants>,
    for_listing: bool,
}

impl GovernedSchema {
    fn name<'a>(&'a self, table: &'a str) -> TableName<'a> {
        TableName {
            source: &self.catalog,
            schema: &self.schema,
            table,
        }
    }
}

#[async_trait]
impl SchemaProvider for GovernedSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner
            .table_names()
            .into_iter()
            .filter(|table| self.grants.may_read(&self.name(table)))
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        if !self.for_listing {
            return Ok(Some(table));
        }
        let schema = table.schema();
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let Ok(access) = self.grants.table(&self.name(name), &columns) else {
            return Ok(None);
        };
        let visible: Vec<_> = schema
            .fields()
            .iter()
            .zip(&access.columns)
            .filter(|(_, access)| **access != ColumnAccess::Denied)
            .map(|(field, _)| Arc::clone(field))
            .collect();
        Ok(Some(Arc::new(Described {
            schema: Arc::new(Schema::new(visible)),
            table_type: table.table_type(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// A table as `information_schema` describes it: its readable columns; never scanned.
#[derive(Debug)]
struct Described {
    schema: SchemaRef,
    table_type: TableType,
}

#[async_trait]
impl TableProvider for Described {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.table_type
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(
            "a table description of information_schema cannot be read; query the table by \
             its name"
                .into(),
        ))
    }
}
