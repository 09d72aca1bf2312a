//! Applying a new configuration to a running engine ([`Engine::reload`]): SIGHUP to
//! `ibarrow serve` and `\reload` in the REPL call it (repl/src/serve.rs, repl/src/command.rs).
//!
//! Everything is checked and every new or changed source connected before anything changes,
//! so a bad file leaves the engine as it was. Then the new settings replace the old ones, each
//! under its own lock (a statement planned during those microseconds may see the new policy
//! with an old source). Queries planned before hold their sources, pools and grants, and
//! finish on them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Engine, input_limits};
use crate::access::AccessPolicy;
use crate::config::{Config, EngineConfig, SourceConfig};

use crate::error::{Error, Result};

/// What [`Engine::reload`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Sources the new configuration names and the old one did not.
    pub added: Vec<String>,
    /// Sources of the old configuration that the new one no longer names.
    pub removed: Vec<String>,
    /// Sources whose settings changed: connected again with the new ones.
    pub changed: Vec<String>,
    /// Whether `[roles]` or the users' roles changed.
    pub roles_changed: bool,
    /// Whether `[engine] rate_limits` or `max_sql_bytes` changed.
    pub limits_changed: bool,
    /// The new `[engine] log_level` when it changed (the process that installed the log
    /// subscriber applies it: `ibarrow::logging::set_filter`).
    pub log_level: Option<String>,
    /// Settings that changed but apply only when the engine starts again.
    pub needs_restart: Vec<String>,
}

impl ReloadReport {
    /// Whether the reload changed nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if !names.is_empty() {
                parts.push(format!("sources {what}: {}", names.join(", ")));
            }
        }
        if self.roles_changed {
            parts.push("roles changed".into());
        }
        if self.limits_changed {
            parts.push("limits changed".into());
        }
        if let Some(level) = &self.log_level {
            parts.push(format!("log level {level}"));
        }
        if !self.needs_restart.is_empty() {
            parts.push(format!(
                "changed but applied only after a restart: {}",
                self.needs_restart.join(", ")
            ));
        }
        if parts.is_empty() {
            return f.write_str("nothing changed");
        }
        f.write_str(&parts.join("; "))
    }
}

impl Engine {
    /// Applies `config` to the running engine: sources added, removed or changed (connected
    /// anew), roles, rate limits, the text size limit and engine defaults for sources. Sources
    /// added after start (`register_odbc`, `register_source`) stay. A configuration that does not validate, or
    /// a new or changed source that cannot be opened, is an error and nothing changes.
    /// Queries already planned finish on the sources and grants they were planned with.
    pub async fn reload(&self, config: &Config) -> Result<ReloadReport> {
        let inner = &self.inner;
        let _one_at_a_time = inner.reloading.lock().await;
        let old_engine = inner.defaults();
        let old_sources = inner
            .configured
            .read()
            .map(|configured| configured.clone())
            .unwrap_or_default();
        let old_start_only = inner
            .start_only
            .read()
            .map(|start_only| start_only.clone())
            .unwrap_or_default();

        // Checked before anything changes.
        let policy = AccessPolicy::from_config(config)?.map(Arc::new);
        let new_rate_limits = if config.engine.rate_limits == old_engine.rate_limits {
            None
        } else {
            Some(Arc::new(crate::rate_limit::RateLimits::new(
                &config.engine.rate_limits.clone().unwrap_or_default(),
            )?))
        };
        // Secrets are resolved now: a rotated password file changes its source.
        let wanted = configured_sources(config)?;
        let mut report = ReloadReport::default();
        let mut opening = Vec::new();
        for (name, ConfiguredSource { config: source, .. }) in &wanted {
            match old_sources.get(name) {
                Some(old) if old == &wanted[name] => continue,
                Some(_) => report.changed.push(name.clone()),
                None if self.catalog(name).is_ok() => report.changed.push(name.clone()),
                None => report.added.push(name.clone()),
            }
            opening.push(async move {
                let opened = async {
                    let source_handle = Self::connect_source(name, source).await?;
                    let catalog = crate::catalog::SourceCatalog::new(
                        Arc::clone(&source_handle),
                        source.tables.clone(),
                        inner.cache_ttl,
                    )
                    .await?;
                    Ok::<_, Error>((source_handle, catalog))
                };
                opened
                    .await
                    .map(|opened| (name, source, opened))
                    .map_err(|err| Error::Config {
                        location: format!("[sources.{name}]"),
                        message: format!(
                            "the reloaded configuration's source cannot be opened, so nothing \
                             was changed: {err}"
                        ),
                    })
            });
        }
        let opened = futures::future::try_join_all(opening).await?;
        report.removed = old_sources
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        let access = access_settings(config);
        report.roles_changed = inner
            .access_settings
            .read()
            .map_or(true, |old| *old != access);
        report.limits_changed =
            new_rate_limits.is_some() || config.engine.max_sql_bytes != old_engine.max_sql_bytes;
        if config.engine.log_level != old_engine.log_level {
            report.log_level = Some(
                config
                    .engine
                    .log_level
                    .clone()
                    .unwrap_or_else(|| "warn".into()),
            );
        }
        report.needs_restart = needs_restart(&old_engine, &config.engine);
        let start_only = StartOnly::of(config);
        for (key, changed) in [
            ("[audit]", start_only.audit != old_start_only.audit),
            ("[server]", start_only.server != old_start_only.server),
            (
                "[users] logins (passwords, act_as)",
                start_only.users != old_start_only.users,
            ),
        ] {
            if changed {
                report.needs_restart.push(key.to_string());
            }
        }

        // Applied.
        if report.roles_changed {
            if let Ok(mut slot) = inner.access.write() {
                *slot = policy;
            }
            if let Ok(mut slot) = inner.access_settings.write() {
                *slot = access;
            }
        }
        if let Some(rate_limits) = new_rate_limits
            && let Ok(mut slot) = inner.rate_limits.write()
        {
            *slot = rate_limits;
        }
        if let Ok(mut limits) = inner.limits.write() {
            *limits = input_limits(&config.engine);
        }
        if let Ok(mut defaults) = inner.defaults.write() {
            *defaults = config.engine.clone();
        }
        for (name, source, (handle, catalog)) in opened {
            if let Some(cache) = &inner.result_cache {
                cache.invalidate_source(name);
                cache.set_source_ttl(name, source.result_cache_ttl_secs);
            }
            self.install_source(name, handle, catalog);
            // Again: a query planned in between may have kept a result of the old source.
            if let Some(cache) = &inner.result_cache {
                cache.invalidate_source(name);
            }
        }
        for name in &report.removed {
            self.remove_source(name);
        }
        if let Ok(mut configured) = inner.configured.write() {
            *configured = wanted;
        }
        if let Ok(mut slot) = inner.start_only.write() {
            *slot = start_only;
        }
        // Prepared statements and built queries resolve their tables again only when
        // something they may depend on changed.
        if !report.is_empty() {
            self.bump_catalog_generation();
        }
        tracing::info!(report = %report, "configuration reloaded");
        Ok(report)
    }

    /// Takes the source `name` out: new statements no longer see it; running ones finish.
    fn remove_source(&self, name: &str) {
        let inner = &self.inner;
        inner.catalog_list.remove(name);
        if let Ok(mut catalogs) = inner.catalogs.write() {
            catalogs.remove(name);
        }
        if let Ok(mut sources) = inner.sources.write() {
            sources.remove(name);
        }
        if let Some(cache) = &inner.result_cache {
            cache.invalidate_source(name);
        }
    }
}

/// A source as a configuration names it: its settings with the engine's defaults applied,
/// and a fingerprint of its connection with the secrets resolved (a secret rotated in its file
/// or variable changes the source, though its settings read the same).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ConfiguredSource {
    pub(super) config: SourceConfig,
    resolved: u64,
}

/// The sources `config` names.
pub(super) fn configured_sources(config: &Config) -> Result<BTreeMap<String, ConfiguredSource>> {
    config
        .sources
        .iter()
        .map(|(name, source)| {
            let source = source.with_defaults(&config.engine);
            let mut endpoints = vec![source.connect(name)?];
            endpoints.extend(source.replica_connects(name)?);
            let resolved = fingerprint(&endpoints);
            Ok((
                name.clone(),
                ConfiguredSource {
                    config: source,
                    resolved,
                },
            ))
        })
        .collect()
}

/// A hash of how a source's endpoints connect, kept instead of their secrets.
fn fingerprint(endpoints: &[crate::config::Connect]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    endpoints.hash(&mut hasher);
    hasher.finish()
}

/// What the engine's embedder reads only at start (`ibarrow serve`: the audit log, the
/// listeners, the logins), to say when a reload changed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct StartOnly {
    audit: Option<crate::config::AuditConfig>,
    server: Option<crate::config::ServerConfig>,
    /// The users without their roles, which a reload applies.
    users: BTreeMap<String, crate::config::UserConfig>,
}

impl StartOnly {
    pub(super) fn of(config: &Config) -> Self {
        let users = config
            .users
            .iter()
            .map(|(name, user)| {
                let mut user = user.clone();
                user.roles.clear();
                (name.clone(), user)
            })
            .collect();
        Self {
            audit: config.audit.clone(),
            server: config.server.clone(),
            users,
        }
    }
}

/// `[roles]` and each user's roles, in a form two configurations compare by.
pub(super) fn access_settings(config: &Config) -> String {
    let users: BTreeMap<&String, &Vec<String>> = config
        .users
        .iter()
        .map(|(name, user)| (name, &user.roles))
        .collect();
    format!("{:?} {users:?}", config.roles)
}

/// The `[engine]` keys that changed but are read only when the engine starts.
fn needs_restart(old: &EngineConfig, new: &EngineConfig) -> Vec<String> {
    let mut keys = Vec::new();
    let mut compare = |key: &str, changed: bool| {
        if changed {
            keys.push(format!("[engine] {key}"));
        }
    };
    compare(
        "target_partitions",
        old.target_partitions != new.target_partitions,
    );
    compare("memory_limit", old.memory_limit != new.memory_limit);
    compare("result_cache", old.result_cache != new.result_cache);
    compare(
        "schema_cache_ttl_secs",
        old.schema_cache_ttl_secs != new.schema_cache_ttl_secs,
    );
    compare("slow_query_ms", old.slow_query_ms != new.slow_query_ms);
    compare(
        "log_mask_literals",
        old.log_mask_literals != new.log_mask_literals,
    );
    compare("cluster", old.cluster != new.cluster);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_keys_read_at_start_are_reported() {
        let old = EngineConfig::default();
        let new = EngineConfig {
            memory_limit: Some(crate::config::ByteSize(1 << 20)),
            pool_size: Some(3),
            ..EngineConfig::default()
        };
        assert_eq!(needs_restart(&old, &new), vec!["[engine] memory_limit"]);
        assert!(needs_restart(&new, &new).is_empty());
    }

    #[test]
    fn a_report_says_what_changed() {
        let report = ReloadReport {
            added: vec!["pg".into()],
            roles_changed: true,
            needs_restart: vec!["[engine] memory_limit".into()],
            ..ReloadReport::default()
        };
        assert_eq!(
            report.to_string(),
            "sources added: pg; roles changed; changed but applied only after a restart: \
             [engine] memory_limit"
        );
        assert_eq!(ReloadReport::default().to_string(), "nothing changed");
    }
}
