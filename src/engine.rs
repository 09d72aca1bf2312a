//! [`Engine`]: several ODBC sources behind one DataFusion session.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use datafusion::common::ParamValues;
use datafusion::common::metadata::ScalarAndMetadata;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use ibarrow_providers::{OdbcSource, SourceOptions};

use crate::access::{AccessPolicy, AccessReport, Grants};
use crate::catalog::{CatalogAdapter, SourceCatalog};
use crate::config::{Config, Connect, SourceConfig};
use crate::error::{Error, Result};
use crate::passthrough::{Described, QueryFunction, SourceMap, describe_query_calls};

mod analysis;
mod join_fallback;
mod malloc;
mod reload;
pub use reload::ReloadReport;

const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// The embeddable query engine. Cheap to clone (clones share everything); `Send + Sync`, so
/// many queries can run at once from many tasks.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: SessionContext,
    /// The context's catalogs, which a reload can take a source's catalog out of.
    catalog_list: Arc<crate::catalog::EngineCatalogs>,
    /// Engine-wide defaults for sources registered later; replaced by a reload.
    defaults: RwLock<crate::config::EngineConfig>,
    /// Each source of the configuration the engine was built from or last reloaded (with the
    /// engine's defaults applied), which a reload compares the new one with. Sources added
    /// later (`register_odbc`, `register_source`, `\connect`) are not here, and a reload
    /// leaves them alone.
    configured: RwLock<BTreeMap<String, reload::ConfiguredSource>>,
    /// What the embedder reads only at start, which a reload reports as needing a restart.
    start_only: RwLock<reload::StartOnly>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// `[roles]` and the users' roles as last applied, which a reload compares.
    access_settings: RwLock<String>,
    cache_ttl: Duration,
    catalogs: RwLock<BTreeMap<String, Arc<SourceCatalog>>>,
    /// The same sources by name, shared with the `query()` table function.
    sources: SourceMap,
    /// `query()` descriptions made for the statements being planned.
    described: Arc<Described>,
    limits: RwLock<crate::governance::InputLimits>,
    rate_limits: RwLock<Arc<crate::rate_limit::RateLimits>>,
    monitor: Arc<crate::monitor::Monitor>,
    /// `[roles]`: `None` lets every user read everything. Replaced by [`Engine::reload`].
    access: RwLock<Option<Arc<AccessPolicy>>>,
    audited: bool,
    /// `[engine] result_cache`, when set.
    result_cache: Option<Arc<crate::result_cache::ResultCache>>,
    /// Counts sources added and refreshed: a prepared statement planned under an older count
    /// is planned again.
    catalog_generation: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// The quotas in force (a reload may replace them).
    fn rate_limits(&self) -> Arc<crate::rate_limit::RateLimits> {
        match self.rate_limits.read() {
            Ok(limits) => Arc::clone(&limits),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn limits(&self) -> crate::governance::InputLimits {
        match self.limits.read() {
            Ok(limits) => limits.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn defaults(&self) -> crate::config::EngineConfig {
        match self.defaults.read() {
            Ok(defaults) => defaults.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sources", &self.source_names())
            .finish()
    }
}

/// DataFusion's runtime for the engine: with `memory_limit`, one pool for all queries that
/// shares the limit fairly among the operators that can spill (sorts, aggregates) and spills
/// them to the OS temporary directory; the largest holders are named when it is exhausted.
fn runtime_env(
    engine: &crate::config::EngineConfig,
) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    let mut builder = datafusion::execution::runtime_env::RuntimeEnvBuilder::new();
    if let Some(limit) = engine.memory_limit {
        malloc::fit_malloc_to_memory_limit();
        let bytes = usize::try_from(limit.0).unwrap_or(usize::MAX);
        let top = std::num::NonZeroUsize::new(3).unwrap_or(std::num::NonZeroUsize::MIN);
        builder = builder.with_memory_pool(Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(bytes),
            top,
        )));
    }
    Ok(builder.build_arc()?)
}

/// How the table `reference` (its `provider`) reaches a user of `grants`: each column's
/// access and the row filter; a table the user may not read is an error naming the grant.
pub(crate) fn table_access(
    grants: &Grants,
    reference: &datafusion::common::TableReference,
    state: &datafusion::execution::SessionState,
    provider: &dyn datafusion::catalog::TableProvider,
) -> Result<crate::access::TableAccess> {
    let (source, schema, table) = crate::access::table_name(reference, state);
    let table = crate::access::TableName {
        source: &source,
        schema: &schema,
        table: &table,
    };
    let fields = provider.schema();
    let columns: Vec<&str> = fields.fields().iter().map(|f| f.name().as_str()).collect();
    grants.table(&table, &columns)
}

/// `[engine] max_sql_bytes`, or the default.
fn input_limits(engine: &crate::config::EngineConfig) -> crate::governance::InputLimits {
    crate::governance::InputLimits {
        max_sql_bytes: engine
            .max_sql_bytes
            .unwrap_or(crate::governance::InputLimits::default().max_sql_bytes),
    }
}

/// `state` sending its queries to the Ballista cluster at `url`.
#[cfg(feature = "cluster")]
fn on_cluster(
    state: datafusion::execution::SessionState,
    url: &str,
) -> Result<datafusion::execution::SessionState> {
    crate::cluster::client_state(state, url).map_err(|err| Error::Config {
        location: "[engine] cluster".into(),
        message: err.strip_backtrace(),
    })
}

/// Without the `cluster` feature a cluster URL is refused.
#[cfg(not(feature = "cluster"))]
fn on_cluster(
    _state: datafusion::execution::SessionState,
    url: &str,
) -> Result<datafusion::execution::SessionState> {
    Err(Error::Config {
        location: "[engine] cluster".into(),
        message: format!(
            "this ibarrow was built without the `cluster` feature, so it cannot run queries on \
             {url}; build it with `--features cluster`"
        ),
    })
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

    /// DataFusion's parallelism (`[engine] target_partitions`; default: the number of cores).
    pub fn target_partitions(mut self, partitions: usize) -> Self {
        self.config.engine.target_partitions = Some(partitions);
        self
    }

    /// How long table metadata is reused, in whole seconds (`[engine] schema_cache_ttl_secs`;
    /// default 300 s).
    pub fn schema_cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.engine.schema_cache_ttl_secs = Some(ttl.as_secs());
        self
    }

    /// The memory all queries together may hold (`[engine] memory_limit`).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.config.engine.memory_limit = Some(crate::config::ByteSize(bytes));
        self
    }

    /// Runs queries on the Ballista cluster whose scheduler is at `url` (`df://HOST:PORT`,
    /// `[engine] cluster`), with the same SQL and names as locally. Needs the `cluster`
    /// feature; the cluster's scheduler and executors read the same sources.
    pub fn cluster(mut self, url: &str) -> Self {
        self.config.engine.cluster = Some(url.to_string());
        self
    }

    /// Connects every source (concurrently) and lists its catalog.
    pub async fn build(self) -> Result<Engine> {
        Engine::from_config(self.config).await
    }
}

impl Engine {
    /// An [`EngineBuilder`] with no sources and the default settings.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine from a TOML file (docs/configuration.md).
    pub async fn from_config_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_config(Config::from_file(path.as_ref())?).await
    }

    /// An engine from a parsed configuration: connects every source (concurrently) and lists its
    /// catalog.
    pub async fn from_config(config: Config) -> Result<Self> {
        let mut session = SessionConfig::new().with_information_schema(true);
        if let Some(partitions) = config.engine.target_partitions {
            session = session.with_target_partitions(partitions.max(1));
        }
        let catalog_list = Arc::new(crate::catalog::EngineCatalogs::default());
        let state = ibarrow_providers::install(
            SessionStateBuilder::new()
                .with_config(session)
                .with_catalog_list(Arc::clone(&catalog_list) as _)
                .with_runtime_env(runtime_env(&config.engine)?)
                .with_default_features(),
        )
        .build();
        let state = match &config.engine.cluster {
            Some(url) => on_cluster(state, url)?,
            None => state,
        };
        let ctx = SessionContext::new_with_state(state);
        let sources = SourceMap::default();
        let rate_limits = Arc::new(crate::rate_limit::RateLimits::new(
            &config.engine.rate_limits.clone().unwrap_or_default(),
        )?);
        let described = Arc::new(Described::default());
        let access = AccessPolicy::from_config(&config)?.map(Arc::new);
        let audit = config
            .audit
            .as_ref()
            .map(crate::audit::AuditLog::open)
            .transpose()?
            .map(Arc::new);
        let audited = audit.is_some();
        let result_cache = config
            .engine
            .result_cache
            .as_ref()
            .map(|settings| Arc::new(crate::result_cache::ResultCache::new(settings)));
        ctx.register_udtf(
            "query",
            Arc::new(QueryFunction {
                sources: Arc::clone(&sources),
                described: Arc::clone(&described),
            }),
        );
        let engine = Self {
            inner: Arc::new(Inner {
                ctx,
                catalog_list,
                defaults: RwLock::new(config.engine.clone()),
                configured: RwLock::new(BTreeMap::new()),
                start_only: RwLock::new(reload::StartOnly::of(&config)),
                reloading: tokio::sync::Mutex::new(()),
                access_settings: RwLock::new(reload::access_settings(&config)),
                cache_ttl: config
                    .engine
                    .schema_cache_ttl_secs
                    .map_or(DEFAULT_CACHE_TTL, Duration::from_secs),
                catalogs: RwLock::new(BTreeMap::new()),
                sources,
                described,
                limits: RwLock::new(input_limits(&config.engine)),
                rate_limits: RwLock::new(rate_limits),
                monitor: Arc::new(
                    crate::monitor::Monitor::new(
                        config.engine.slow_query_ms.map(Duration::from_millis),
                        config.engine.log_mask_literals.unwrap_or(false),
                    )
                    .with_audit(audit)
                    .with_result_cache(result_cache.clone()),
                ),
                access: RwLock::new(access),
                audited,
                result_cache,
                catalog_generation: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        let registrations = config
            .sources
            .iter()
            .map(|(name, source)| engine.register_source(name, source));
        futures::future::try_join_all(registrations).await?;
        let configured = reload::configured_sources(&config)?;
        if let Ok(mut slot) = engine.inner.configured.write() {
            *slot = configured;
        }
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
        let config = &config.with_defaults(&self.inner.defaults());
        let source = Self::connect_source(name, config).await?;
        // The TTL first: a source with `result_cache_ttl_secs = 0` is never cached, not even
        // by a query planned the moment it appears.
        if let Some(cache) = &self.inner.result_cache {
            cache.set_source_ttl(name, config.result_cache_ttl_secs);
        }
        self.add_source(name, source, config.tables.clone()).await
    }

    /// Opens the source `name` of `config` (defaults already applied).
    async fn connect_source(name: &str, config: &SourceConfig) -> Result<Arc<OdbcSource>> {
        let options: SourceOptions = config.source_options(name)?;
        let replicas = config.replica_connects(name)?;
        if !replicas.is_empty() {
            let endpoint = |connect: Connect| match connect {
                Connect::ConnectionString(text) => {
                    ibarrow_providers::ConnectionString::parse(&text)
                }
                Connect::Dsn {
                    dsn,
                    user,
                    password,
                } => Ok(ibarrow_providers::ConnectionString::from_dsn(
                    &dsn,
                    user.as_deref(),
                    password.as_deref(),
                )),
            };
            let primary = endpoint(config.connect(name)?)?;
            let replicas = replicas
                .into_iter()
                .map(endpoint)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            return Ok(OdbcSource::connect_with_replicas(name, primary, replicas, options).await?);
        }
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
        Ok(source)
    }

    /// Adds a source connected elsewhere (by a Rust caller, or the Python 0.1 API) under
    /// `name`, with the engine's defaults for its tables.
    pub async fn register_connected(&self, name: &str, source: Arc<OdbcSource>) -> Result<()> {
        if self.catalog(name).is_ok() {
            return Err(Error::DuplicateSource(name.to_string()));
        }
        self.add_source(name, source, Default::default()).await
    }

    async fn add_source(
        &self,
        name: &str,
        source: Arc<OdbcSource>,
        tables: std::collections::BTreeMap<String, crate::config::TableConfig>,
    ) -> Result<()> {
        let catalog = SourceCatalog::new(Arc::clone(&source), tables, self.inner.cache_ttl).await?;
        self.install_source(name, source, catalog);
        Ok(())
    }

    /// Puts `source` and its `catalog` under `name`, replacing a source of that name: queries
    /// planned before keep the tables they resolved.
    fn install_source(&self, name: &str, source: Arc<OdbcSource>, catalog: Arc<SourceCatalog>) {
        self.inner
            .ctx
            .register_catalog(name, Arc::new(CatalogAdapter(Arc::clone(&catalog))));
        if let Ok(mut catalogs) = self.inner.catalogs.write() {
            catalogs.insert(name.to_string(), catalog);
        }
        if let Ok(mut sources) = self.inner.sources.write() {
            sources.insert(name.to_string(), source);
        }
        self.bump_catalog_generation();
    }

    /// Plans `sql`, one statement that reads (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) or an
    /// `INSERT INTO` a table of a writable source; the returned DataFrame runs when collected
    /// or streamed. The text is checked first
    /// ([`crate::governance`]): size, control characters, statement kind.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        Ok(self.sql_for(sql, None).await?.0)
    }

    /// [`Self::sql`] for a session whose user holds `grants` (`None`: no `[roles]`), with what
    /// the statement reads when the audit log wants it.
    async fn sql_for(
        &self,
        sql: &str,
        grants: Option<&Arc<Grants>>,
    ) -> Result<(DataFrame, Option<AccessReport>)> {
        let state = self.inner.ctx.state();
        let mut statements = self.parse(&state, sql)?;
        if statements.len() != 1 {
            return Err(Error::InputRejected(format!(
                "one statement per call, and this text holds {}; run them one at a time or \
                 as a script (Engine::script)",
                statements.len()
            )));
        }
        match statements.pop() {
            Some(statement) => self.plan(state, statement, grants).await,
            None => Err(Error::InputRejected(
                "the SQL text holds no statement".into(),
            )),
        }
    }

    /// [`Self::sql`] for text that arrives as bytes; invalid UTF-8 is refused.
    pub async fn sql_bytes(&self, sql: &[u8]) -> Result<DataFrame> {
        self.sql(crate::governance::decode(sql)?).await
    }

    /// Plans every statement of a script, in order, each checked as [`Self::sql`] checks one.
    pub async fn script(&self, sql: &str) -> Result<Vec<DataFrame>> {
        let state = self.inner.ctx.state();
        let mut frames = Vec::new();
        for statement in self.parse(&state, sql)? {
            frames.push(self.plan(state.clone(), statement, None).await?.0);
        }
        Ok(frames)
    }

    /// A session that runs queries on behalf of `user` from `client` (the REPL passes the
    /// OS user, Python its caller's): rate limits, the query log and metrics count them.
    pub fn session(&self, user: &str, client: &str) -> Session {
        Session {
            engine: self.clone(),
            user: user.to_string(),
            client: client.to_string(),
            ip: None,
            opened_by: None,
            settings: Arc::default(),
        }
    }

    /// The last queries run through sessions (finished, failed or refused), newest first.
    pub fn recent_queries(&self) -> Vec<crate::monitor::RecentQuery> {
        self.inner.monitor.recent()
    }

    /// What ran through sessions so far (src/insights.rs): statements by total and p95 time,
    /// users, sources, the result cache's hit rate, and index advice. For advice, the indexes of
    /// each table that scans found selective are read from its database (a call like any
    /// other, under its deadline and breaker); a table with an index that leads with one of the
    /// filter columns gets none, and neither does a database whose indexes cannot be listed.
    pub async fn insights(&self) -> crate::insights::Insights {
        /// Candidates looked at, the most scanned first.
        const MOST_CANDIDATES: usize = 20;
        let (mut report, candidates) = self.inner.monitor.insights();
        for candidate in candidates.into_iter().take(MOST_CANDIDATES) {
            let Ok(source) = self.source(&candidate.source) else {
                continue;
            };
            if source.dialect().capabilities().index_query().is_none() {
                continue;
            }
            let Ok(indexes) = source.index_columns(&candidate.table).await else {
                continue;
            };
            // An index whose first key part is one of the filter columns serves the filter.
            let covered = indexes.iter().any(|index| {
                index.first().cloned().flatten().is_some_and(|lead| {
                    candidate
                        .columns
                        .iter()
                        .any(|column| column.eq_ignore_ascii_case(&lead))
                })
            });
            if covered {
                self.inner.monitor.covered(&candidate);
                continue;
            }
            let Some(create_index) = crate::insights::create_index(
                source.dialect(),
                &candidate.table,
                &candidate.columns,
            ) else {
                continue;
            };
            report.index_advice.push(crate::insights::IndexAdvice {
                source: candidate.source,
                table: candidate.table.to_string(),
                columns: candidate.columns,
                create_index,
                scans: candidate.scans,
                rows_returned: candidate.rows_returned,
                table_rows: candidate.table_rows,
                example: candidate.example,
            });
        }
        report
    }

    /// Counters and the duration histogram of the queries run through sessions.
    pub fn metrics(&self) -> crate::monitor::MetricsSnapshot {
        let mut snapshot = self.inner.monitor.snapshot();
        for name in self.source_names() {
            let Ok(source) = self.source(&name) else {
                continue;
            };
            if source.endpoints().len() < 2 {
                continue;
            }
            for endpoint in source.endpoints() {
                snapshot.endpoints.push(crate::monitor::EndpointMetrics {
                    source: name.clone(),
                    endpoint: endpoint.label().to_string(),
                    statements: endpoint.started(),
                    failed_over: endpoint.failed_over(),
                    active: endpoint.active(),
                    breaker_open: endpoint.breaker().is_some_and(|b| {
                        b.state() != ibarrow_providers::breaker::BreakerState::Closed
                    }),
                });
            }
        }
        snapshot
    }

    fn parse(
        &self,
        state: &datafusion::execution::SessionState,
        sql: &str,
    ) -> Result<Vec<datafusion::sql::parser::Statement>> {
        crate::governance::check_text(sql, &self.inner.limits())?;
        let dialect_name = state.config().options().sql_parser.dialect;
        let dialect = datafusion::sql::sqlparser::dialect::dialect_from_str(dialect_name)
            .ok_or_else(|| Error::Config {
                location: "[engine]".into(),
                message: format!("unknown SQL dialect {dialect_name}"),
            })?;
        let statements =
            datafusion::sql::parser::DFParser::parse_sql_with_dialect(sql, dialect.as_ref())?;
        for statement in &statements {
            crate::governance::check_statement_kind(statement)?;
        }
        Ok(statements.into_iter().collect())
    }

    async fn plan(
        &self,
        state: datafusion::execution::SessionState,
        statement: datafusion::sql::parser::Statement,
        grants: Option<&Arc<Grants>>,
    ) -> Result<(DataFrame, Option<AccessReport>)> {
        let _described = describe_query_calls(
            &statement,
            &self.inner.sources,
            &self.inner.described,
            grants.map(Arc::as_ref),
        )
        .await?;
        if grants.is_none() && !self.inner.audited {
            let plan = state.statement_to_plan(statement).await?;
            return Ok((self.inner.ctx.execute_logical_plan(plan).await?, None));
        }
        let state = match grants {
            Some(grants) => crate::access::governed_state(state, grants),
            None => state,
        };
        let plan = state.statement_to_plan(statement).await?;
        let (plan, report) = crate::access::govern(plan, grants.map(Arc::as_ref), &state)?;
        Ok((DataFrame::new(state, plan), Some(report)))
    }

    /// The access policy in force (`None`: no `[roles]`).
    pub fn access_policy(&self) -> Option<Arc<AccessPolicy>> {
        self.inner.access.read().ok().and_then(|a| a.clone())
    }

    /// Runs `sql` and streams its result.
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        Ok(self.sql(sql).await?.execute_stream().await?)
    }

    /// Lists a source's schemas and tables again and forgets its cached table metadata and
    /// the results the result cache kept of it.
    pub async fn refresh(&self, source: &str) -> Result<()> {
        let catalog = self.catalog(source)?;
        let forget = || {
            if let Some(cache) = &self.inner.result_cache {
                cache.invalidate_source(source);
            }
        };
        // Before, and again after: a query running during the refresh keeps nothing.
        forget();
        let refreshed = catalog.refresh().await;
        forget();
        self.bump_catalog_generation();
        refreshed
    }

    fn bump_catalog_generation(&self) {
        self.inner
            .catalog_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `other` is this engine (or a clone of it).
    pub(crate) fn same_as(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Counts reloads and refreshes: what was resolved under an older count is resolved again.
    pub(crate) fn catalog_generation(&self) -> u64 {
        self.inner
            .catalog_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The names of the registered sources, in alphabetical order.
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

    /// The DataFusion context, for registering other tables or functions. SQL run on it
    /// directly bypasses the checks of [`Self::sql`].
    pub fn context(&self) -> &SessionContext {
        &self.inner.ctx
    }

    /// A task context whose memory pool counts what one query holds (its peak goes to the
    /// query log), over the engine's own pool.
    fn task_with_own_memory(
        &self,
    ) -> Result<(
        Arc<datafusion::execution::TaskContext>,
        Arc<crate::monitor::QueryMemory>,
    )> {
        let task = self.inner.ctx.task_ctx();
        let base = task.runtime_env();
        let memory = Arc::new(crate::monitor::QueryMemory::new(Arc::clone(
            &base.memory_pool,
        )));
        let runtime =
            datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(&base)
                .with_memory_pool(Arc::clone(&memory) as _)
                .build_arc()?;
        // `task_ctx` hands out a fresh context, so it is not shared yet.
        let task = match Arc::try_unwrap(task) {
            Ok(task) => Arc::new(task.with_runtime(runtime)),
            Err(shared) => shared,
        };
        Ok((task, memory))
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

/// Queries on behalf of a user and a client ([`Engine::session`]).
#[derive(Debug, Clone)]
pub struct Session {
    engine: Engine,
    user: String,
    client: String,
    /// The client's IP address, for a query that came over the network.
    ip: Option<String>,
    /// Who opened the session, when it runs as another user (`ibarrow --user`).
    opened_by: Option<String>,
    /// What `SET ibarrow.<name> = <value>` changed, shared by the session's clones.
    settings: Arc<SessionSettings>,
}

/// The settings a session changes with `SET ibarrow.<name> = <value>`.
#[derive(Debug)]
struct SessionSettings {
    /// `ibarrow.result_cache`: whether this session's statements use the result cache.
    result_cache: std::sync::atomic::AtomicBool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            result_cache: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

/// `SET ibarrow.<name> = <value>` (or `TO`), parsed: `None` when `sql` is no such statement.
fn session_setting(sql: &str) -> Option<Result<(&'static str, bool)>> {
    // Every statement passes here: most are let go without a copy.
    let trimmed = sql.trim_start();
    let is_set = trimmed
        .get(..3)
        .is_some_and(|w| w.eq_ignore_ascii_case("set"))
        && trimmed[3..].starts_with(char::is_whitespace);
    if !is_set {
        return None;
    }
    let text = sql.trim().trim_end_matches(';').replace('=', " = ");
    let words: Vec<&str> = text.split_whitespace().collect();
    let [set, name, rest @ ..] = words.as_slice() else {
        return None;
    };
    if !set.eq_ignore_ascii_case("set") || !name.to_ascii_lowercase().starts_with("ibarrow.") {
        return None;
    }
    let value = match rest {
        [op, value] if *op == "=" || op.eq_ignore_ascii_case("to") => *value,
        _ => {
            return Some(Err(Error::InputRejected(format!(
                "write SET {name} = true (or false)"
            ))));
        }
    };
    if !name.eq_ignore_ascii_case("ibarrow.result_cache") {
        return Some(Err(Error::InputRejected(format!(
            "no setting {name}; the session settings are: ibarrow.result_cache"
        ))));
    }
    let on = match value.trim_matches('\'').to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => true,
        "false" | "off" | "0" => false,
        other => {
            return Some(Err(Error::InputRejected(format!(
                "{name} takes true or false, not `{other}`"
            ))));
        }
    };
    Some(Ok(("ibarrow.result_cache", on)))
}

impl Session {
    /// This session for a client at `ip`: the per-IP quotas of `[engine] rate_limits` apply.
    pub fn at_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.ip = Some(ip.to_string());
        self
    }

    /// This session opened by `login` on behalf of its user (`ibarrow --user`, allowed by
    /// `act_as`, src/access/identity.rs): the audit log records both names.
    pub fn opened_by(mut self, login: &str) -> Self {
        self.opened_by = (login != self.user).then(|| login.to_string());
        self
    }

    /// The client's IP address, when set with [`Session::at_ip`].
    pub fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }

    /// The user the session's queries run as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client name the session was opened with (`ibarrow-repl`, `python`, ...).
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The engine the session runs in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What this session's user may read, under the policy in force now (`None`: no
    /// `[roles]`, everything).
    pub fn grants(&self) -> Option<Arc<Grants>> {
        self.engine
            .access_policy()
            .map(|policy| Arc::new(policy.grants(&self.user)))
    }

    /// The catalogs as this session's user sees them, for listings (`\dt`, completion,
    /// Flight SQL `GetTables`): only readable tables, and only their readable columns.
    pub fn catalogs(&self) -> Arc<dyn datafusion::catalog::CatalogProviderList> {
        let all = Arc::clone(self.engine.inner.ctx.state_ref().read().catalog_list());
        match self.grants() {
            Some(grants) => {
                crate::access::GovernedCatalogs::new(all, grants, Default::default()).listing()
            }
            None => all,
        }
    }

    /// The table `name` (`source.schema.table`) and how it reaches this session's user
    /// (`None`: no `[roles]`); a table the user may not read is an error naming the grant.
    async fn table_access(
        &self,
        name: &str,
    ) -> Result<(
        Arc<dyn datafusion::catalog::TableProvider>,
        Option<crate::access::TableAccess>,
    )> {
        let reference = datafusion::common::TableReference::from(name);
        let ctx = &self.engine.inner.ctx;
        let provider = ctx.table_provider(reference.clone()).await?;
        let Some(grants) = self.grants() else {
            return Ok((provider, None));
        };
        let access = table_access(&grants, &reference, &ctx.state(), provider.as_ref())?;
        Ok((provider, Some(access)))
    }

    /// The table `name` (`source.schema.table`) for describing it: the table itself and the
    /// schema this session's user sees (its readable columns). A table the user may not read
    /// is an error that names the missing grant.
    pub async fn describe_table(
        &self,
        name: &str,
    ) -> Result<(
        Arc<dyn datafusion::catalog::TableProvider>,
        datafusion::arrow::datatypes::SchemaRef,
    )> {
        let (provider, access) = self.table_access(name).await?;
        let schema = provider.schema();
        let Some(access) = access else {
            return Ok((provider, schema));
        };
        let visible: Vec<_> = schema
            .fields()
            .iter()
            .zip(&access.columns)
            .filter(|(_, a)| **a != crate::access::ColumnAccess::Denied)
            .map(|(field, _)| Arc::clone(field))
            .collect();
        Ok((
            provider,
            Arc::new(datafusion::arrow::datatypes::Schema::new(visible)),
        ))
    }

    /// The table `name` itself, for registering it in another DataFusion context (Python's
    /// `Engine.table`). Scans there bypass the plan's checks, so under `[roles]` only a table
    /// the user reads whole (no denied or masked column, no row filter) is handed out.
    pub async fn export_table(
        &self,
        name: &str,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        let (provider, access) = self.table_access(name).await?;
        if access.is_some_and(|access| !access.is_unrestricted()) {
            return Err(Error::AccessDenied(format!(
                "access denied: {name} has masked or denied columns or row filters for user \
                 `{}`, so it cannot be handed to another context; query it through the engine \
                 (Engine.sql) instead",
                self.user
            )));
        }
        Ok(provider)
    }

    /// A record for the monitor and the audit log of a statement of this session, with what
    /// its planning decided (`None`: refused before it was planned, or native text).
    fn begin(&self, sql: &str, planning: Option<&Planning>) -> crate::monitor::QueryRecord {
        let inner = &self.engine.inner;
        let mut record = inner.monitor.begin(&self.user, &self.client, sql);
        record.ip = self.ip.clone();
        record.opened_by = self.opened_by.clone();
        if let Some(planning) = planning {
            record.cache = planning.cache.clone();
            record.access = planning.access.clone();
        }
        if inner.audited {
            record.roles = self
                .grants()
                .map(|grants| grants.role_names())
                .unwrap_or_default();
        }
        record
    }

    /// [`Engine::sql`] on behalf of this session's user, within the engine's rate limits. A
    /// refusal is counted and logged; run the plan with [`Self::execute`] (or use
    /// [`Self::stream`]) so that its run is monitored too.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        self.plan_statement(sql, None).await
    }

    /// [`Self::sql`] with values for the statement's placeholders (`$1`, `$2` … in order, or
    /// `$name` by name): each value is cast to the type the plan infers for its placeholder and
    /// replaces it in the plan, never in the text, so a value cannot change the statement.
    pub async fn sql_with_params(
        &self,
        sql: &str,
        params: impl Into<ParamValues>,
    ) -> Result<DataFrame> {
        self.plan_statement(sql, Some(params.into())).await
    }

    /// Plans `sql` once for running many times with new values ([`PreparedStatement`]): the
    /// text is parsed, checked and planned under this session's grants now, within its rate
    /// limits, and each run only binds its values (planned again when the access policy was
    /// reloaded or a source refreshed since).
    pub async fn prepare(&self, sql: &str) -> Result<PreparedStatement> {
        let inner = &self.engine.inner;
        let planned = match inner
            .rate_limits()
            .check(&self.user, &self.client, self.ip.as_deref())
        {
            Ok(()) => self.plan_prepared(sql).await,
            Err(err) => Err(err),
        };
        match planned {
            Ok(planned) => Ok(PreparedStatement {
                session: self.clone(),
                sql: sql.to_string(),
                planned: Arc::new(std::sync::RwLock::new(Arc::new(planned))),
            }),
            Err(err) => {
                inner.monitor.refused(self.begin(sql, None), &err);
                Err(err)
            }
        }
    }

    /// `sql` planned with its placeholders under this session's grants, as the policy and
    /// the catalogs stand now.
    async fn plan_prepared(&self, sql: &str) -> Result<Prepared> {
        let catalogs = self.engine.catalog_generation();
        let policy = self.engine.access_policy();
        let grants = policy
            .as_ref()
            .map(|policy| Arc::new(policy.grants(&self.user)));
        let (frame, report) = self.engine.sql_for(sql, grants.as_ref()).await?;
        Ok(Prepared {
            frame,
            report: report.filter(|_| self.engine.inner.audited).map(Arc::new),
            grants,
            user: self.user.clone(),
            policy,
            catalogs,
        })
    }

    async fn plan_statement(&self, sql: &str, params: Option<ParamValues>) -> Result<DataFrame> {
        let inner = &self.engine.inner;
        match session_setting(sql) {
            Some(Ok((_, on))) => {
                self.settings
                    .result_cache
                    .store(on, std::sync::atomic::Ordering::Relaxed);
                return Ok(inner.ctx.read_empty()?);
            }
            Some(Err(err)) => {
                inner.monitor.refused(self.begin(sql, None), &err);
                return Err(err);
            }
            None => {}
        }
        // One reading of the policy for planning and the cache key alike, also when a reload
        // comes in between.
        let grants = self.grants();
        let planned = match inner
            .rate_limits()
            .check(&self.user, &self.client, self.ip.as_deref())
        {
            Ok(()) => self.engine.sql_for(sql, grants.as_ref()).await,
            Err(err) => Err(err),
        };
        let planned = planned.and_then(|(frame, report)| match params {
            Some(params) => Ok((bind_params(frame, params)?, report)),
            None => Ok((frame, report)),
        });
        match planned {
            Ok((frame, report)) => {
                let report = report.filter(|_| inner.audited).map(Arc::new);
                self.planned(frame, report, grants.as_deref())
            }
            Err(err) => {
                inner.monitor.refused(self.begin(sql, None), &err);
                Err(err)
            }
        }
    }

    /// The state a query builder of this session resolves tables and checks steps in, and
    /// the grants it was read under (src/query.rs).
    pub(crate) fn builder_state(
        &self,
    ) -> (datafusion::execution::SessionState, Option<Arc<Grants>>) {
        let state = self.engine.inner.ctx.state();
        let grants = self.grants();
        let state = match &grants {
            Some(grants) => crate::access::governed_state(state, grants),
            None => state,
        };
        (state, grants)
    }

    /// A builder's plan made ready to run as a statement of this session: within the rate
    /// limits (unless it runs with the engine's own rights), checked and rewritten for
    /// `grants` like planned text, through the result cache. `text` names it in the query log.
    pub(crate) fn built(
        &self,
        state: datafusion::execution::SessionState,
        plan: datafusion::logical_expr::LogicalPlan,
        grants: Option<&Arc<Grants>>,
        within_quotas: bool,
        text: &str,
    ) -> Result<DataFrame> {
        let inner = &self.engine.inner;
        let quota = if within_quotas {
            inner
                .rate_limits()
                .check(&self.user, &self.client, self.ip.as_deref())
        } else {
            Ok(())
        };
        let governed = quota.and_then(|()| {
            if grants.is_none() && !inner.audited {
                return Ok((DataFrame::new(state, plan), None));
            }
            let (plan, report) = crate::access::govern(plan, grants.map(Arc::as_ref), &state)?;
            Ok((DataFrame::new(state, plan), Some(report)))
        });
        match governed {
            Ok((frame, report)) => {
                let report = report.filter(|_| inner.audited).map(Arc::new);
                self.planned(frame, report, grants.map(Arc::as_ref))
            }
            Err(err) => {
                inner.monitor.refused(self.begin(text, None), &err);
                Err(err)
            }
        }
    }

    /// The planned `frame` (values bound), through the result cache, carrying what planning
    /// decided for its run.
    fn planned(
        &self,
        frame: DataFrame,
        report: Option<Arc<AccessReport>>,
        grants: Option<&Grants>,
    ) -> Result<DataFrame> {
        let (frame, cache) = self.through_cache(frame, grants)?;
        Ok(Planning::attach(frame, cache, report))
    }

    /// The planned `frame`, or its kept result when the result cache has it, and what the
    /// cache did (`None`: no cache; src/result_cache.rs).
    fn through_cache(
        &self,
        frame: DataFrame,
        grants: Option<&Grants>,
    ) -> Result<(DataFrame, Option<crate::result_cache::CacheUse>)> {
        let inner = &self.engine.inner;
        let Some(cache) = &inner.result_cache else {
            return Ok((frame, None));
        };

        // EXPLAIN ANALYZE runs the statement it explains: through the cache like the
        // statement itself; its output says what the cache did (src/engine/analysis.rs).
        if let datafusion::logical_expr::LogicalPlan::Analyze(analyze) = frame.logical_plan() {
            let analyze = analyze.clone();
            let (used, kept) = self.cache_decision(cache, &analyze.input, grants);
            let input = match &kept {
                Some(kept) => Arc::new(self.kept_frame(kept)?.into_unoptimized_plan()),
                None => Arc::clone(&analyze.input),
            };
            let analyzed =
                datafusion::logical_expr::LogicalPlan::Analyze(datafusion::logical_expr::Analyze {
                    input,
                    ..analyze
                });
            let frame = DataFrame::new(frame.into_parts().0, analyzed);
            let used = match used {
                // Its writes still make the cache forget their sources when they end.
                crate::result_cache::CacheUse::Write(_) => used,
                // The analysis is not the statement's result: nothing is kept.
                _ => crate::result_cache::CacheUse::Explained(used.label()),
            };
            return Ok((frame, Some(used)));
        }
        let (used, kept) = self.cache_decision(cache, frame.logical_plan(), grants);
        match kept {
            Some(kept) => Ok((self.kept_frame(&kept)?, Some(used))),
            None => Ok((frame, Some(used))),
        }
    }

    /// What the result cache does for `plan` in this session, and its kept result on a hit.
    fn cache_decision(
        &self,
        cache: &crate::result_cache::ResultCache,
        plan: &datafusion::logical_expr::LogicalPlan,
        grants: Option<&Grants>,
    ) -> (
        crate::result_cache::CacheUse,
        Option<Arc<crate::result_cache::CachedResult>>,
    ) {
        let inner = &self.engine.inner;
        let roles = grants.map(Grants::role_names).unwrap_or_default();
        // The engine's state is read in place (its default catalog resolves table names), not
        // copied for every statement.
        let (used, kept) = {
            let state = inner.ctx.state_ref();
            let state = state.read();
            cache.lookup(plan, &roles, &state)
        };
        // Turned off for this session: nothing is read from or kept in the cache, but its
        // writes still make the cache forget their sources for everyone.
        let turned_off = !self
            .settings
            .result_cache
            .load(std::sync::atomic::Ordering::Relaxed);
        match used {
            crate::result_cache::CacheUse::Write(_) => (used, None),
            _ if turned_off => (
                crate::result_cache::CacheUse::Bypass("SET ibarrow.result_cache = false"),
                None,
            ),
            crate::result_cache::CacheUse::StaleKept(_) => {
                let Some(kept) = kept else {
                    return (used, None);
                };
                let down: Vec<&str> = kept
                    .sources()
                    .iter()
                    .filter(|name| {
                        self.engine
                            .source(name)
                            .is_ok_and(|source| !source.has_healthy_endpoint())
                    })
                    .map(String::as_str)
                    .collect();
                if down.is_empty() {
                    return (used, None);
                }
                tracing::warn!(
                    sources = %down.join(", "),
                    age_secs = kept.age().as_secs(),
                    "answering from a cached result past its TTL (serve_stale_secs): no \
                     endpoint of these sources is healthy"
                );
                (crate::result_cache::CacheUse::Stale, Some(kept))
            }
            _ => (used, kept),
        }
    }

    /// A kept result read back as a table: streamed without touching a source.
    fn kept_frame(&self, kept: &crate::result_cache::CachedResult) -> Result<DataFrame> {
        let table = datafusion::datasource::MemTable::try_new(
            Arc::clone(&kept.schema),
            vec![kept.batches.clone()],
        )?;
        Ok(self.engine.inner.ctx.read_table(Arc::new(table))?)
    }

    /// [`Self::sql`] for text that arrives as bytes; invalid UTF-8 is refused.
    pub async fn sql_bytes(&self, sql: &[u8]) -> Result<DataFrame> {
        self.sql(crate::governance::decode(sql)?).await
    }

    /// Plans and runs `sql`; the stream reports the query to the monitor when it ends.
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        let frame = self.sql(sql).await?;
        self.execute(frame, sql).await
    }

    /// Runs a frame planned by [`Self::sql`], monitored.
    pub async fn execute(&self, frame: DataFrame, sql: &str) -> Result<SendableRecordBatchStream> {
        let query = self.physical_plan(frame).await?;
        self.execute_plan(query, sql)
    }

    /// The physical plan of a frame planned by [`Self::sql`], with what planning decided for
    /// its run ([`Self::execute_plan`], [`Self::run_partitions`]). A frame changed since it
    /// was planned (a builder step added) runs without the result cache.
    pub async fn physical_plan(&self, frame: DataFrame) -> Result<PhysicalQuery> {
        // The frame's own state, taken apart rather than copied into a task context.
        let (state, logical) = frame.into_parts();
        let planning = Planning::of(&state, &logical);
        let plan = state.create_physical_plan(&logical).await?;
        let fallback = join_fallback::JoinFallback::for_plan(state, logical, &plan);
        Ok(PhysicalQuery {
            plan,
            planning,
            fallback,
        })
    }

    /// Runs `sql` as written on the source `source` (a native statement, as `query()` runs
    /// one), within the rate limits and monitored like every query of the session. The text
    /// goes to the database unplanned, so a result may repeat a column name.
    pub async fn native(&self, source: &str, sql: &str) -> Result<SendableRecordBatchStream> {
        let monitor = &self.engine.inner.monitor;
        let described = async {
            self.engine
                .inner
                .rate_limits()
                .check(&self.user, &self.client, self.ip.as_deref())?;
            crate::governance::check_text(sql, &self.engine.inner.limits())?;
            if let Some(grants) = self.grants() {
                grants.check_native_sql(source)?;
            }
            let source = self.engine.source(source)?;
            let table = ibarrow_providers::PassthroughTable::describe(source, sql).await?;
            let state = self.engine.inner.ctx.state();
            let plan =
                datafusion::catalog::TableProvider::scan(&table, &state, None, &[], None).await?;
            Ok::<_, Error>(plan)
        };
        match described.await {
            Ok(plan) => self.execute_plan(
                PhysicalQuery {
                    plan,
                    planning: None,
                    fallback: None,
                },
                sql,
            ),
            Err(err) => {
                monitor.refused(self.begin(sql, None), &err);
                Err(err)
            }
        }
    }

    /// Runs a physical plan of one of this session's queries, monitored.
    pub fn execute_plan(
        &self,
        mut query: PhysicalQuery,
        sql: &str,
    ) -> Result<SendableRecordBatchStream> {
        let plan = Arc::clone(&query.plan);
        let fallback = query.fallback.take();
        let cache_line = analysis::cache_line(&query.plan, query.planning.as_deref());
        let run = self.start_run(query, sql, 1)?;
        match datafusion::physical_plan::execute_stream(plan, Arc::clone(&run.task)) {
            Ok(stream) => {
                let stream = match fallback {
                    Some(fallback) => {
                        let query_run = Arc::clone(&run.run);
                        let replace = move |plan| query_run.replace_plan(plan);
                        fallback.guard(stream, Arc::clone(&run.task), replace)
                    }
                    None => stream,
                };
                let stream = match cache_line {
                    Some(line) => analysis::with_first_line(stream, line),
                    None => stream,
                };
                Ok(run.monitored(stream))
            }
            Err(err) => Err(run.failed_to_start(err)),
        }
    }

    /// Runs a physical plan whose output partitions are read as separate streams
    /// ([`PartitionedRun::execute`]; the network service hands each to the client as an
    /// endpoint). The query is monitored and audited once, when its last partition ends or
    /// when the run and its streams are dropped.
    pub fn run_partitions(&self, query: PhysicalQuery, sql: &str) -> Result<PartitionedRun> {
        let partitions = query.plan.properties().partitioning.partition_count();
        self.start_run(query, sql, partitions)
    }

    fn start_run(&self, query: PhysicalQuery, sql: &str, streams: usize) -> Result<PartitionedRun> {
        let record = self.begin(sql, query.planning.as_deref());
        let (task, memory) = self.engine.task_with_own_memory()?;
        let monitor = Arc::clone(&self.engine.inner.monitor);
        let plan = query.plan;
        let run =
            crate::monitor::QueryRun::new(Arc::clone(&plan), monitor, memory, record, streams);
        Ok(PartitionedRun { plan, task, run })
    }
}

/// What planning decided for a statement's run: the result cache's use and what the
/// statement reads, for the audit log. It travels inside the planned [`DataFrame`] (an
/// extension of the frame's own session configuration), so a run takes the decisions made
/// for its own planning, never another's of the same text (two plannings of one statement
/// with different values, or under a policy reloaded in between).
#[derive(Debug)]
pub struct Planning {
    /// The plan the decisions were made for.
    plan: datafusion::logical_expr::LogicalPlan,
    cache: Option<crate::result_cache::CacheUse>,
    access: Option<Arc<AccessReport>>,
}

impl Planning {
    fn attach(
        frame: DataFrame,
        cache: Option<crate::result_cache::CacheUse>,
        access: Option<Arc<AccessReport>>,
    ) -> DataFrame {
        let (mut state, plan) = frame.into_parts();
        state.config_mut().set_extension(Arc::new(Planning {
            plan: plan.clone(),
            cache,
            access,
        }));
        DataFrame::new(state, plan)
    }

    /// The decisions a planned frame's `state` carries for its `plan`. A frame changed after
    /// planning keeps its access report but bypasses the cache: the kept result or the key
    /// would be another plan's.
    fn of(
        state: &datafusion::execution::SessionState,
        plan: &datafusion::logical_expr::LogicalPlan,
    ) -> Option<Arc<Planning>> {
        let planning = state.config().get_extension::<Planning>()?;
        if planning.plan == *plan {
            return Some(planning);
        }
        Some(Arc::new(Planning {
            plan: plan.clone(),
            cache: planning
                .cache
                .as_ref()
                .map(|_| crate::result_cache::CacheUse::Bypass("changed after planning")),
            access: planning.access.clone(),
        }))
    }
}

/// A statement of a [`Session`] planned down to its physical plan ([`Session::physical_plan`]),
/// with what planning decided for its run.
#[derive(Debug, Clone)]
pub struct PhysicalQuery {
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    planning: Option<Arc<Planning>>,
    /// Under a memory limit, a plan with hash joins runs again with sort-merge joins when a
    /// build side cannot fit (src/engine/join_fallback.rs).
    fallback: Option<join_fallback::JoinFallback>,
}

impl PhysicalQuery {
    /// The physical plan, as DataFusion will execute it.
    pub fn plan(&self) -> &Arc<dyn datafusion::physical_plan::ExecutionPlan> {
        &self.plan
    }
}

/// A statement planned once by [`Session::prepare`], run many times with new values. Clones
/// share the plan.
#[derive(Debug, Clone)]
pub struct PreparedStatement {
    session: Session,
    sql: String,
    /// The plan in use, replaced when a run finds it out of date.
    planned: Arc<std::sync::RwLock<Arc<Prepared>>>,
}

#[derive(Debug)]
struct Prepared {
    /// The plan with its placeholders, governed by `grants`.
    frame: DataFrame,
    report: Option<Arc<AccessReport>>,
    grants: Option<Arc<Grants>>,
    /// Whom it was planned for, under which access policy and catalogs: another user, a
    /// reload of the policy or a refreshed source means planning again.
    user: String,
    policy: Option<Arc<AccessPolicy>>,
    catalogs: u64,
}

impl Prepared {
    fn is_current_for(&self, session: &Session) -> bool {
        let same_policy = match (&session.engine.access_policy(), &self.policy) {
            (None, None) => true,
            (Some(now), Some(then)) => Arc::ptr_eq(now, then),
            _ => false,
        };
        same_policy
            && self.user == session.user
            && self.catalogs == session.engine.catalog_generation()
    }
}

impl PreparedStatement {
    /// The SQL text as prepared.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The session it runs in.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// This statement run in `session` (another connection of a network client, say): its
    /// quotas and query log apply. The plan is shared with the same user; another user's
    /// runs plan the text again under their own grants, kept apart.
    pub fn for_session(&self, session: &Session) -> PreparedStatement {
        let planned = if session.user == self.session.user {
            Arc::clone(&self.planned)
        } else {
            Arc::new(std::sync::RwLock::new(self.plan_in_use()))
        };
        PreparedStatement {
            session: session.clone(),
            sql: self.sql.clone(),
            planned,
        }
    }

    fn plan_in_use(&self) -> Arc<Prepared> {
        match self.planned.read() {
            Ok(planned) => Arc::clone(&planned),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The plan for a run now: the one in use, or a new one when it is out of date.
    async fn current_plan(&self) -> Result<Arc<Prepared>> {
        let planned = self.plan_in_use();
        if planned.is_current_for(&self.session) {
            return Ok(planned);
        }
        let fresh = Arc::new(self.session.plan_prepared(&self.sql).await?);
        if let Ok(mut in_use) = self.planned.write() {
            *in_use = Arc::clone(&fresh);
        }
        Ok(fresh)
    }

    /// The columns of its result.
    pub fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        Arc::new(self.plan_in_use().frame.schema().as_arrow().clone())
    }

    /// The placeholders and the types the plan infers for them (`None`: any value): `$1`,
    /// `$2` … in their order, then `$name`s by name.
    pub fn parameter_types(
        &self,
    ) -> Result<Vec<(String, Option<datafusion::arrow::datatypes::DataType>)>> {
        let mut types: Vec<_> = self
            .plan_in_use()
            .frame
            .logical_plan()
            .get_parameter_types()?
            .into_iter()
            .collect();
        types.sort_by_key(|(name, _)| {
            let position = name.trim_start_matches('$').parse::<u64>().ok();
            (position.is_none(), position, name.clone())
        });
        Ok(types)
    }

    /// The statement with `params` bound, ready to run ([`Session::execute`]): within the
    /// session's rate limits, through the result cache; planned again first when the access
    /// policy was reloaded or a source refreshed since.
    pub async fn bind(&self, params: impl Into<ParamValues>) -> Result<DataFrame> {
        let session = &self.session;
        let inner = &session.engine.inner;
        let params = params.into();
        let bound =
            match inner
                .rate_limits()
                .check(&session.user, &session.client, session.ip.as_deref())
            {
                Ok(()) => match self.current_plan().await {
                    Ok(planned) => bind_params(planned.frame.clone(), params).map(|f| (f, planned)),
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
        match bound {
            Ok((frame, planned)) => {
                session.planned(frame, planned.report.clone(), planned.grants.as_deref())
            }
            Err(err) => {
                inner.monitor.refused(session.begin(&self.sql, None), &err);
                Err(err)
            }
        }
    }

    /// Binds `params` and runs the statement, monitored like [`Session::stream`].
    pub async fn stream(
        &self,
        params: impl Into<ParamValues>,
    ) -> Result<SendableRecordBatchStream> {
        let frame = self.bind(params).await?;
        self.session.execute(frame, &self.sql).await
    }
}

/// `frame` with `params` in place of its placeholders, each value cast to the type the plan
/// infers for its placeholder (a `$1` compared with an INTEGER column takes a 64-bit 7 as a
/// 32-bit 7); a value that cannot be cast is an error naming the placeholder.
fn bind_params(frame: DataFrame, params: ParamValues) -> Result<DataFrame> {
    let types = frame.logical_plan().get_parameter_types()?;
    let cast = |name: String, value: ScalarAndMetadata| -> Result<ScalarAndMetadata> {
        let (value, metadata) = value.into_inner();
        let value = match types.get(&name) {
            Some(Some(wanted)) if !value.is_null() && value.data_type() != *wanted => {
                lossless_cast(&value, wanted).map_err(|reason| {
                    Error::InputRejected(format!(
                        "the value given for {name} ({}) cannot be used as {wanted}, the type \
                         the statement needs there: {reason}; pass a value of that type",
                        value.data_type()
                    ))
                })?
            }
            _ => value,
        };
        Ok(ScalarAndMetadata::new(value, metadata))
    };
    let params = match params {
        ParamValues::List(values) => ParamValues::List(
            values
                .into_iter()
                .enumerate()
                .map(|(n, value)| cast(format!("${}", n + 1), value))
                .collect::<Result<_>>()?,
        ),
        ParamValues::Map(values) => ParamValues::Map(
            values
                .into_iter()
                .map(|(name, value)| Ok((name.clone(), cast(format!("${name}"), value)?)))
                .collect::<Result<_>>()?,
        ),
    };
    frame.with_param_values(params).map_err(|err| {
        Error::InputRejected(format!(
            "{err}; pass one value per placeholder ($1, $2 … in order, or $name by name)"
        ))
    })
}

/// `value` as `wanted` when nothing is lost: text is parsed, anything else must come back
/// unchanged when cast back (1.5 is no integer, 1.005 no NUMERIC(10,2), a timestamp with a time
/// of day no date).
fn lossless_cast(
    value: &datafusion::scalar::ScalarValue,
    wanted: &datafusion::arrow::datatypes::DataType,
) -> std::result::Result<datafusion::scalar::ScalarValue, String> {
    use datafusion::arrow::datatypes::DataType;
    let from_text = matches!(
        value.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    // Text for a decimal is read with room for more digits first, so that '1.005' for
    // NUMERIC(10,2) is refused rather than rounded.
    let value = match (from_text, wanted) {
        (true, DataType::Decimal128(_, scale)) => {
            let wide = DataType::Decimal128(38, scale.saturating_add(10).min(38));
            value.cast_to(&wide).map_err(|err| err.to_string())?
        }
        _ => value.clone(),
    };
    let cast = value.cast_to(wanted).map_err(|err| err.to_string())?;
    let exact = value.data_type().is_numeric() || value.data_type().is_temporal();
    if (from_text && !exact) || cast.cast_to(&value.data_type()).ok().as_ref() == Some(&value) {
        Ok(cast)
    } else {
        Err("the conversion would change the value".into())
    }
}

/// A monitored query of a [`Session`] whose output partitions are read one stream each
/// ([`Session::run_partitions`]).
#[derive(Debug)]
pub struct PartitionedRun {
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    task: Arc<datafusion::execution::TaskContext>,
    run: Arc<crate::monitor::QueryRun>,
}

impl PartitionedRun {
    /// The stream of output partition `partition`; each partition is read once.
    pub fn execute(&self, partition: usize) -> Result<SendableRecordBatchStream> {
        match self.plan.execute(partition, Arc::clone(&self.task)) {
            Ok(stream) => Ok(self.monitored(stream)),
            Err(err) => Err(self.failed_to_start(err)),
        }
    }

    fn monitored(&self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(crate::monitor::MonitoredStream::new(
            stream,
            Arc::clone(&self.run),
        ))
    }

    fn failed_to_start(&self, err: datafusion::error::DataFusionError) -> Error {
        let kind = crate::error::ErrorKind::of_datafusion(&err);
        self.run
            .end_partition(crate::monitor::Outcome::Failed(kind));
        err.into()
    }
}
