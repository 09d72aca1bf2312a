//! The result cache (`[engine] result_cache`): whole results of queries over the sources'
//! tables, kept in memory up to a size in bytes and for a time per source, so a repeated query
//! answers without touching a database.
//!
//! The key is the statement's logical plan as planned (before optimization), after access
//! control rewrote it, so that it carries the user's masks and row filters
//! (src/access/rewrite.rs), and the user's roles; never the SQL text. A query is cached only
//! when every table it reads is a source's table whose source caches, and no function in it
//! may answer differently on another run (`now()`, `random()`). `query()` passthrough, VALUES
//! lists (the plan's text, which is the key, shows only their first rows), parameters (bound
//! after the look-up), results that repeat a column name, writes, EXPLAIN and catalog
//! listings are never cached. Entries of a source go when it is refreshed or written through
//! the engine, and a query that overlapped such a change keeps nothing (`generations`).
//!
//! With `serve_stale_secs`, a result is kept that much longer than its TTL: a query that finds
//! only such a stale result runs as a miss, unless a source it reads has no healthy endpoint
//! (every circuit breaker open), when the stale result answers with a warning (`stale` in
//! the query log) instead of an error (`src/engine.rs`, `cache_decision`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};

use crate::config::ResultCacheConfig;

const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// What the cache did for one statement: the query log's `cache` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// Answered from the cache.
    Hit,
    /// Not cached yet: the result is kept when the query completes.
    Miss(CacheKey),
    /// Only a result past its TTL is kept (`serve_stale_secs`): a miss, unless a source
    /// the query reads is down.
    StaleKept(CacheKey),
    /// Answered from a result past its TTL because a source it reads is down.
    Stale,
    /// Not cacheable; the reason is for the log.
    Bypass(&'static str),
    /// A write into these sources: their results are forgotten when it is planned and again
    /// when it ends, so that no query running meanwhile keeps the old rows.
    Write(Vec<String>),
    /// EXPLAIN ANALYZE of a statement the cache would have answered as `hit`, `miss` or
    /// `bypass`: the analysis is not the statement's result, so nothing is kept.
    Explained(&'static str),
}

impl CacheUse {
    /// The query log's `cache` value: `hit`, `miss` or `bypass` (a write is `bypass`).
    pub fn label(&self) -> &'static str {
        match self {
            CacheUse::Hit => "hit",
            CacheUse::Miss(_) | CacheUse::StaleKept(_) => "miss",
            CacheUse::Stale => "stale",
            CacheUse::Bypass(_) | CacheUse::Write(_) => "bypass",
            CacheUse::Explained(label) => label,
        }
    }
}

/// A cacheable statement: its key, the sources it reads with their generations when it was
/// looked up, and how long its result may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    key: String,
    sources: Vec<(String, u64)>,
    ttl: Duration,
}

/// A kept result.
#[derive(Debug)]
pub struct CachedResult {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The result's rows.
    pub batches: Vec<RecordBatch>,
    sources: Vec<String>,
    ttl: Duration,
    /// How long it is kept past `ttl`, for a source that goes down (`serve_stale_secs`).
    stale_for: Duration,
    kept_at: Instant,
    /// The batches' size, counted while they were collected.
    bytes: usize,
}

impl CachedResult {
    /// The sources the result read.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// How long ago the result was kept.
    pub fn age(&self) -> Duration {
        self.kept_at.elapsed()
    }
}

struct PerEntryTtl;

impl moka::Expiry<String, Arc<CachedResult>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<CachedResult>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl.saturating_add(value.stale_for))
    }
}

/// The engine's result cache.
pub struct ResultCache {
    entries: moka::sync::Cache<String, Arc<CachedResult>>,
    default_ttl: Duration,
    /// `result_cache_ttl_secs` of the sources that set one (0: not cached).
    source_ttls: RwLock<HashMap<String, Duration>>,
    /// A result larger than this is not kept (an eighth of the cache).
    max_entry_bytes: usize,
    /// How long results are kept past their TTL for sources that go down.
    serve_stale: Duration,
    /// Per source, a number that changes whenever its data may have changed through the
    /// engine (a write starts or ends, a refresh): a result is kept only if none of its
    /// sources' numbers changed while it ran, so a query overlapping a write keeps nothing.
    generations: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("entries", &self.entries.entry_count())
            .field("default_ttl", &self.default_ttl)
            .finish()
    }
}

impl ResultCache {
    /// An empty cache with `config`'s size and time limits (default 256 MiB and 60 s).
    pub fn new(config: &ResultCacheConfig) -> Self {
        let max_bytes = config.max_bytes.map_or(DEFAULT_MAX_BYTES, |size| size.0);
        let entries = moka::sync::Cache::builder()
            // Weighed in KiB, so that a weight fits in a u32.
            .max_capacity((max_bytes / 1024).max(1))
            .weigher(|_key: &String, value: &Arc<CachedResult>| {
                u32::try_from(value.bytes / 1024 + 1).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .build();
        Self {
            entries,
            default_ttl: config.ttl_secs.map_or(DEFAULT_TTL, Duration::from_secs),
            source_ttls: RwLock::new(HashMap::new()),
            max_entry_bytes: usize::try_from(max_bytes / 8).unwrap_or(usize::MAX),
            serve_stale: Duration::from_secs(config.serve_stale_secs.unwrap_or(0)),
            generations: Mutex::new(HashMap::new()),
        }
    }

    /// How long results of `source` are kept: `Some(0)` never, `None` the engine's default.
    pub fn set_source_ttl(&self, source: &str, ttl_secs: Option<u64>) {
        if let Ok(mut ttls) = self.source_ttls.write() {
            match ttl_secs {
                Some(secs) => ttls.insert(source.to_string(), Duration::from_secs(secs)),
                None => ttls.remove(source),
            };
        }
    }

    fn ttl_of(&self, source: &str) -> Duration {
        self.source_ttls
            .read()
            .ok()
            .and_then(|ttls| ttls.get(source).copied())
            .unwrap_or(self.default_ttl)
    }

    /// Whether and how the statement planned as `plan` for a user of `roles` may be cached,
    /// and its kept result when there is one.
    pub fn lookup(
        &self,
        plan: &LogicalPlan,
        roles: &[String],
        state: &SessionState,
    ) -> (CacheUse, Option<Arc<CachedResult>>) {
        let written = written_sources(plan, state);
        if !written.is_empty() {
            for source in &written {
                self.invalidate_source(source);
            }
            return (CacheUse::Write(written), None);
        }
        if !plan
            .get_parameter_types()
            .is_ok_and(|types| types.is_empty())
        {
            // The key would not show the values bound later.
            return (CacheUse::Bypass("has parameters"), None);
        }
        let names = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name())
            .collect::<BTreeSet<_>>();
        if names.len() != plan.schema().fields().len() {
            // A kept result is read back as one table, whose columns need distinct names.
            return (CacheUse::Bypass("repeats a column name"), None);
        }
        let key = match self.key_of(plan, roles, state) {
            Ok(key) => key,
            Err(reason) => return (CacheUse::Bypass(reason), None),
        };
        match self.entries.get(&key.key) {
            Some(kept) if kept.age() <= kept.ttl => (CacheUse::Hit, Some(kept)),
            Some(kept) => (CacheUse::StaleKept(key), Some(kept)),
            None => (CacheUse::Miss(key), None),
        }
    }

    fn key_of(
        &self,
        plan: &LogicalPlan,
        roles: &[String],
        state: &SessionState,
    ) -> Result<CacheKey, &'static str> {
        let mut sources = BTreeSet::new();
        let mut refused = None;
        let walked = plan.apply_with_subqueries(|node| {
            refused = refusal(node, state, &mut sources);
            Ok(if refused.is_some() {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        });
        if walked.is_err() {
            return Err("the plan could not be read");
        }
        if let Some(reason) = refused {
            return Err(reason);
        }
        if sources.is_empty() {
            return Err("reads no source's table");
        }
        let ttl = sources
            .iter()
            .map(|source| self.ttl_of(source))
            .min()
            .unwrap_or(self.default_ttl);
        if ttl.is_zero() {
            return Err("a source it reads is not cached (result_cache_ttl_secs = 0)");
        }
        let generations = self.generations.lock().ok();
        let sources = sources
            .into_iter()
            .map(|source| {
                let generation = generations
                    .as_ref()
                    .and_then(|g| g.get(&source).copied())
                    .unwrap_or(0);
                (source, generation)
            })
            .collect();
        Ok(CacheKey {
            key: format!("{}\nroles: {}", plan.display_indent(), roles.join(",")),
            sources,
            ttl,
        })
    }

    /// Keeps the complete result of a [`CacheUse::Miss`], unless a source it read may have
    /// changed through the engine since the query was looked up.
    pub fn insert(
        &self,
        key: &CacheKey,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        bytes: usize,
    ) {
        let unchanged = self.generations.lock().is_ok_and(|generations| {
            key.sources
                .iter()
                .all(|(source, seen)| generations.get(source).copied().unwrap_or(0) == *seen)
        });
        if !unchanged {
            return;
        }
        self.entries.insert(
            key.key.clone(),
            Arc::new(CachedResult {
                schema,
                batches,
                sources: key
                    .sources
                    .iter()
                    .map(|(source, _)| source.clone())
                    .collect(),
                ttl: key.ttl,
                stale_for: self.serve_stale,
                kept_at: Instant::now(),
                bytes,
            }),
        );
    }

    /// Forgets every result that read `source` (refreshed, or written to), and keeps none of
    /// the queries running now.
    pub fn invalidate_source(&self, source: &str) {
        if let Ok(mut generations) = self.generations.lock() {
            *generations.entry(source.to_string()).or_default() += 1;
        }
        let source = source.to_string();
        // Only fails when the cache was built without invalidation closures.
        let _ = self
            .entries
            .invalidate_entries_if(move |_, kept| kept.sources.contains(&source));
    }

    /// A collector of one query's result, bounded by the size of an entry.
    pub fn collector(&self, key: CacheKey, schema: SchemaRef) -> ResultCollector {
        ResultCollector {
            key,
            schema,
            kept: Mutex::new(Some((Vec::new(), 0))),
            max_bytes: self.max_entry_bytes,
        }
    }
}

/// The sources the plan writes into, wherever its `Dml` node stands (`EXPLAIN ANALYZE INSERT`
/// writes too).
fn written_sources(plan: &LogicalPlan, state: &SessionState) -> Vec<String> {
    let mut written = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Dml(dml) = node {
            written.insert(crate::access::table_name(&dml.table_name, state).0);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    written.into_iter().collect()
}

/// Why `node` keeps its statement out of the cache, if it does; the sources of its scans go
/// to `sources`.
fn refusal(
    node: &LogicalPlan,
    state: &SessionState,
    sources: &mut BTreeSet<String>,
) -> Option<&'static str> {
    match node {
        LogicalPlan::Dml(_)
        | LogicalPlan::Ddl(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::Statement(_)
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_)
        | LogicalPlan::DescribeTable(_) => return Some("not a query"),
        // The key is the plan's text, and these do not print all they hold (a VALUES list
        // shows its first rows only).
        LogicalPlan::Values(_) | LogicalPlan::Extension(_) => {
            return Some("holds a VALUES list or a plan node the key cannot show whole");
        }
        LogicalPlan::TableScan(scan) => {
            let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source) else {
                return Some("reads a table that is not a source's");
            };
            let any = provider.as_ref() as &dyn std::any::Any;
            if !any.is::<ibarrow_providers::OdbcTable>() {
                return Some("reads a table that is not a source's (query(), a listing)");
            }
            let (source, _, _) = crate::access::table_name(&scan.table_name, state);
            sources.insert(source);
        }
        _ => {}
    }
    let volatile = node.expressions().iter().any(|expr| {
        expr.exists(|e| {
            Ok(matches!(e, Expr::ScalarFunction(f)
                if f.func.signature().volatility != Volatility::Immutable
                    // Access control's placeholder for a denied column: it fails when
                    // evaluated and never gives a value (src/access/rewrite.rs).
                    && f.func.name() != crate::access::DENIED_COLUMN_FUNCTION))
        })
        .unwrap_or(true)
    });
    volatile.then_some("calls a function whose value changes between runs")
}

/// Collects the batches of one query; a result larger than an entry may be is dropped.
#[derive(Debug)]
pub struct ResultCollector {
    key: CacheKey,
    schema: SchemaRef,
    kept: Mutex<Option<(Vec<RecordBatch>, usize)>>,
    max_bytes: usize,
}

impl ResultCollector {
    /// Keeps `batch`; once the result outgrows an entry, drops what it kept and keeps nothing more.
    pub fn add(&self, batch: &RecordBatch) {
        if let Ok(mut kept) = self.kept.lock()
            && let Some((batches, bytes)) = kept.as_mut()
        {
            *bytes += batch.get_array_memory_size();
            if *bytes > self.max_bytes {
                *kept = None;
            } else {
                batches.push(batch.clone());
            }
        }
    }

    /// Keeps the result in `cache` when it was collected whole.
    pub fn finish(&self, cache: &ResultCache) {
        let kept = self.kept.lock().ok().and_then(|mut kept| kept.take());
        if let Some((batches, bytes)) = kept {
            cache.insert(&self.key, Arc::clone(&self.schema), batches, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;

    #[test]
    fn a_result_that_overlapped_a_change_of_its_source_is_not_kept() {
        let cache = ResultCache::new(&ResultCacheConfig::default());
        let key = |name: &str, generation| CacheKey {
            key: name.to_string(),
            sources: vec![("pg".to_string(), generation)],
            ttl: Duration::from_secs(60),
        };
        let schema = Arc::new(Schema::empty());
        // Looked up before the write (generation 0), finished after it.
        let before = key("q1", 0);
        cache.invalidate_source("pg");
        cache.insert(&before, Arc::clone(&schema), Vec::new(), 0);
        assert!(cache.entries.get("q1").is_none());
        // Looked up after it.
        cache.insert(&key("q2", 1), Arc::clone(&schema), Vec::new(), 0);
        assert!(cache.entries.get("q2").is_some());
        // Another source's change leaves it alone; its own forgets it.
        cache.invalidate_source("maria");
        assert!(cache.entries.get("q2").is_some());
        cache.invalidate_source("pg");
        cache.entries.run_pending_tasks();
        assert!(cache.entries.get("q2").is_none());
    }
}
