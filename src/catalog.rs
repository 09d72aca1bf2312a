//! Each source as a DataFusion catalog: `<source>.<schema>.<table>` (docs/architecture.md).
//!
//! DataFusion asks for schema and table *names* synchronously, so those come from a snapshot
//! listed when the source is registered (and on refresh). Tables themselves are built on first
//! use and kept in a cache with a time-to-live; concurrent first uses fetch the metadata once.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use ibarrow_providers::discovery::{NameMatch, resolve_name};
use ibarrow_providers::{OdbcError, OdbcSource, OdbcTable};
use moka::future::Cache;

use crate::config::TableConfig;
use crate::error::Result;

/// One registered source: its catalog snapshot and table cache.
#[derive(Debug)]
pub struct SourceCatalog {
    source: Arc<OdbcSource>,
    /// Per-table settings, keyed by table name as configured.
    table_configs: BTreeMap<String, TableConfig>,
    /// Remote schema name → remote table names.
    names: RwLock<BTreeMap<String, Vec<String>>>,
    tables: Cache<(String, String), Arc<OdbcTable>>,
}

impl SourceCatalog {
    pub async fn new(
        source: Arc<OdbcSource>,
        table_configs: BTreeMap<String, TableConfig>,
        cache_ttl: Duration,
    ) -> Result<Arc<Self>> {
        let catalog = Arc::new(Self {
            source,
            table_configs,
            names: RwLock::new(BTreeMap::new()),
            tables: Cache::builder()
                .time_to_live(cache_ttl)
                .max_capacity(10_000)
                .build(),
        });
        catalog.refresh().await?;
        Ok(catalog)
    }

    pub fn source(&self) -> &Arc<OdbcSource> {
        &self.source
    }

    /// Lists schemas and tables again and forgets cached table metadata.
    pub async fn refresh(&self) -> Result<()> {
        let mut names = BTreeMap::new();
        for schema in self.source.schemas().await? {
            let tables = self.source.tables_in_listed_schema(schema.clone()).await?;
            names.insert(schema, tables.into_iter().map(|t| t.name).collect());
        }
        if let Ok(mut snapshot) = self.names.write() {
            *snapshot = names;
        }
        self.tables.invalidate_all();
        Ok(())
    }

    fn schema_names_snapshot(&self) -> Vec<String> {
        self.names
            .read()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn table_names_snapshot(&self, schema: &str) -> Vec<String> {
        self.names
            .read()
            .ok()
            .and_then(|n| n.get(schema).cloned())
            .unwrap_or_default()
    }

    /// The table for a name a user typed, built once per TTL.
    async fn table(&self, schema: &str, wanted: &str) -> Result<Option<Arc<OdbcTable>>, OdbcError> {
        let names = self.table_names_snapshot(schema);
        let name = match resolve_name(names.iter().map(String::as_str), wanted) {
            NameMatch::Found(name) => name.to_string(),
            NameMatch::Ambiguous(candidates) => {
                return Err(OdbcError::AmbiguousName {
                    source_name: self.source.name().to_string(),
                    name: wanted.to_string(),
                    candidates: candidates.join(", "),
                });
            }
            // Maybe created after the snapshot: the source resolves against a fresh listing.
            NameMatch::NotFound => wanted.to_string(),
        };
        let key = (schema.to_string(), name.clone());
        let partition_column = self
            .table_configs
            .iter()
            .find(|(configured, _)| configured.eq_ignore_ascii_case(&name))
            .and_then(|(_, config)| config.partition_column.clone());
        let source = Arc::clone(&self.source);
        let schema = schema.to_string();
        let built = self
            .tables
            .try_get_with(key, async move {
                source
                    .table_with_partition_column(&schema, &name, partition_column.as_deref())
                    .await
            })
            .await;
        match built {
            Ok(table) => Ok(Some(table)),
            Err(err) => match err.as_ref() {
                OdbcError::TableNotFound { .. } => Ok(None),
                // The cache shares one error among waiters; each gets it with its kind intact.
                _ => Err(OdbcError::Shared(err)),
            },
        }
    }
}

/// [`SourceCatalog`] as DataFusion sees it.
#[derive(Debug)]
pub struct CatalogAdapter(pub Arc<SourceCatalog>);

impl CatalogProvider for CatalogAdapter {
    fn schema_names(&self) -> Vec<String> {
        self.0.schema_names_snapshot()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let names = self.0.schema_names_snapshot();
        match resolve_name(names.iter().map(String::as_str), name) {
            NameMatch::Found(schema) => Some(Arc::new(SchemaAdapter {
                catalog: Arc::clone(&self.0),
                schema: schema.to_string(),
            })),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct SchemaAdapter {
    catalog: Arc<SourceCatalog>,
    schema: String,
}

#[async_trait]
impl SchemaProvider for SchemaAdapter {
    fn table_names(&self) -> Vec<String> {
        self.catalog.table_names_snapshot(&self.schema)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let table = self.catalog.table(&self.schema, name).await?;
        Ok(table.map(|t| t as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        let names = self.table_names();
        matches!(
            resolve_name(names.iter().map(String::as_str), name),
            NameMatch::Found(_)
        )
    }
}

/// The engine's catalogs: DataFusion's default one and one per source. Unlike DataFusion's
/// own list, a source's catalog can be taken out again when a reload removes the source
/// (`Engine::reload`); a query planned before keeps the tables it resolved.
#[derive(Debug, Default)]
pub struct EngineCatalogs {
    catalogs: RwLock<BTreeMap<String, Arc<dyn CatalogProvider>>>,
}

impl EngineCatalogs {
    /// Takes the catalog `name` out of the list.
    pub fn remove(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.catalogs.write().ok()?.remove(name)
    }
}

impl datafusion::catalog::CatalogProviderList for EngineCatalogs {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.catalogs.write().ok()?.insert(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.catalogs
            .read()
            .map(|catalogs| catalogs.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.catalogs.read().ok()?.get(name).cloned()
    }
}
