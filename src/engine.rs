//! [`Engine`]: several ODBC sources behind one DataFusion session.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use ibarrow_providers::{OdbcSource, SourceOptions};

use crate::catalog::{CatalogAdapter, SourceCatalog};
use crate::config::{Config, Connect, SourceConfig};
use crate::error::{Error, Result};
use crate::passthrough::{QueryFunction, SourceMap};
use crate::pushdown::SubPlanPushdown;

const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// The embeddable query engine. Cheap to clone (clones share everything); `Send + Sync`, so
/// many queries can run at once from many tasks.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: SessionContext,
    /// Engine-wide defaults for sources registered later.
    defaults: crate::config::EngineConfig,
    cache_ttl: Duration,
    catalogs: RwLock<BTreeMap<String, Arc<SourceCatalog>>>,
    /// The same sources by name, shared with the `query()` table function.
    sources: SourceMap,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sources", &self.source_names())
            .finish()
    }
}

/// Builds an [`Engine`] in code: `Engine::builder().source("pg", conn).build().await`.
#[derive(Debug, Default)]
pub struct EngineBuilder {
    config: Config,
}

impl EngineBuilder {
    /// Adds a source by connection string.
    pub fn source(mut self, name: &str, connection_string: &str) -> Self {
        self.config.sources.insert(
            name.to_string(),
            SourceConfig {
                connection_string: Some(connection_string.to_string()),
                ..SourceConfig::default()
            },
        );
        self
    }

    /// Adds a source with all its settings.
    pub fn source_config(mut self, name: &str, config: SourceConfig) -> Self {
        self.config.sources.insert(name.to_string(), config);
        self
    }

    pub fn target_partitions(mut self, partitions: usize) -> Self {
        self.config.engine.target_partitions = Some(partitions);
        self
    }

    pub fn schema_cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.engine.schema_cache_ttl_secs = Some(ttl.as_secs());
        self
    }

    /// Connects every source (concurrently) and lists its catalog.
    pub async fn build(self) -> Result<Engine> {
        Engine::from_config(self.config).await
    }
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine from a TOML file (DESIGN §3).
    pub async fn from_config_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_config(Config::from_file(path.as_ref())?).await
    }

    pub async fn from_config(config: Config) -> Result<Self> {
        let mut session = SessionConfig::new().with_information_schema(true);
        if let Some(partitions) = config.engine.target_partitions {
            session = session.with_target_partitions(partitions.max(1));
        }
        let ctx = SessionContext::new_with_config(session);
        ctx.add_optimizer_rule(Arc::new(SubPlanPushdown));
        let sources = SourceMap::default();
        ctx.register_udtf(
            "query",
            Arc::new(QueryFunction {
                sources: Arc::clone(&sources),
            }),
        );
        let engine = Self {
            inner: Arc::new(Inner {
                ctx,
                defaults: config.engine.clone(),
                cache_ttl: config
                    .engine
                    .schema_cache_ttl_secs
                    .map_or(DEFAULT_CACHE_TTL, Duration::from_secs),
                catalogs: RwLock::new(BTreeMap::new()),
                sources,
            }),
        };
        let registrations = config
            .sources
            .iter()
            .map(|(name, source)| engine.register_source(name, source));
        futures::future::try_join_all(registrations).await?;
        Ok(engine)
    }

    /// Adds a source by connection string while the engine runs.
    pub async fn register_odbc(&self, name: &str, connection_string: &str) -> Result<()> {
        let config = SourceConfig {
            connection_string: Some(connection_string.to_string()),
            ..SourceConfig::default()
        };
        self.register_source(name, &config).await
    }

    /// Adds a source with all its settings while the engine runs.
    pub async fn register_source(&self, name: &str, config: &SourceConfig) -> Result<()> {
        if self.catalog(name).is_ok() {
            return Err(Error::DuplicateSource(name.to_string()));
        }
        let config = &config.with_defaults(&self.inner.defaults);
        let options: SourceOptions = config.source_options(name)?;
        let source = match config.connect(name)? {
            Connect::ConnectionString(text) => OdbcSource::connect(name, &text, options).await?,
            Connect::Dsn {
                dsn,
                user,
                password,
            } => {
                OdbcSource::connect_dsn(name, &dsn, user.as_deref(), password.as_deref(), options)
                    .await?
            }
        };
        let catalog = SourceCatalog::new(
            Arc::clone(&source),
            config.tables.clone(),
            self.inner.cache_ttl,
        )
        .await?;
        self.inner
            .ctx
            .register_catalog(name, Arc::new(CatalogAdapter(Arc::clone(&catalog))));
        if let Ok(mut catalogs) = self.inner.catalogs.write() {
            catalogs.insert(name.to_string(), catalog);
        }
        if let Ok(mut sources) = self.inner.sources.write() {
            sources.insert(name.to_string(), source);
        }
        Ok(())
    }

    /// Plans `sql`; the returned DataFrame runs when collected or streamed.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        Ok(self.inner.ctx.sql(sql).await?)
    }

    /// Runs `sql` and streams its result.
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        Ok(self.sql(sql).await?.execute_stream().await?)
    }

    /// Lists a source's schemas and tables again and forgets its cached table metadata.
    pub async fn refresh(&self, source: &str) -> Result<()> {
        self.catalog(source)?.refresh().await
    }

    pub fn source_names(&self) -> Vec<String> {
        self.inner
            .catalogs
            .read()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every source's health, checked concurrently: reachable or not, ping latency and pool
    /// use. A source that does not answer within `timeout` is reported unreachable.
    pub async fn health(&self, timeout: Duration) -> Vec<ibarrow_providers::SourceHealth> {
        let sources: Vec<Arc<OdbcSource>> = self
            .source_names()
            .iter()
            .filter_map(|name| self.source(name).ok())
            .collect();
        futures::future::join_all(sources.iter().map(|s| s.health(timeout))).await
    }

    /// A registered source, for health checks and tooling.
    pub fn source(&self, name: &str) -> Result<Arc<OdbcSource>> {
        Ok(Arc::clone(self.catalog(name)?.source()))
    }

    /// The DataFusion session, for registering other tables or functions.
    pub fn session(&self) -> &SessionContext {
        &self.inner.ctx
    }

    fn catalog(&self, name: &str) -> Result<Arc<SourceCatalog>> {
        let sources = self.inner.catalogs.read().ok();
        sources
            .as_ref()
            .and_then(|s| s.get(name).cloned())
            .ok_or_else(|| {
                Error::UnknownSource(
                    name.to_string(),
                    sources
                        .map(|s| s.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default(),
                )
            })
    }
}
