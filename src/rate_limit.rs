//! Query quotas per user, per client and per client IP, per minute and per hour (`[engine] rate_limits`),
//! with governor's GCRA: a quota of N per minute allows a burst of N, then one query every
//! 60/N s. Off unless configured. Keyed stores are pruned as they are used, so memory stays
//! bounded by the users and clients seen recently.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimitConfig;
use crate::error::{Error, Result};

/// Checks between two prunings of the keyed stores.
const PRUNE_EVERY: u64 = 1024;

struct Limit {
    /// "user", "client" or "ip".
    key_kind: &'static str,
    per: &'static str,
    quota: u32,
    limiter: DefaultKeyedRateLimiter<String>,
}

/// The engine's query quotas (`[engine] rate_limits`), checked as each query starts.
pub struct RateLimits {
    limits: Vec<Limit>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limits: Vec<String> = self
            .limits
            .iter()
            .map(|l| format!("{} per {} per {}", l.quota, l.key_kind, l.per))
            .collect();
        f.debug_struct("RateLimits")
            .field("limits", &limits)
            .finish()
    }
}

impl RateLimits {
    /// The quotas of `config`; a quota of 0 is an error.
    pub fn new(config: &RateLimitConfig) -> Result<Self> {
        let mut limits = Vec::new();
        let settings = [
            ("user", "minute", config.per_user_per_minute),
            ("user", "hour", config.per_user_per_hour),
            ("client", "minute", config.per_client_per_minute),
            ("client", "hour", config.per_client_per_hour),
            ("ip", "minute", config.per_ip_per_minute),
            ("ip", "hour", config.per_ip_per_hour),
        ];
        for (key_kind, per, quota) in settings {
            let Some(quota) = quota else { continue };
            let burst = NonZeroU32::new(quota).ok_or_else(|| Error::Config {
                location: "[engine] rate_limits".into(),
                message: format!(
                    "per_{key_kind}_per_{per} must be at least 1 (leave it out for no limit)"
                ),
            })?;
            let quota_of = if per == "minute" {
                Quota::per_minute(burst)
            } else {
                Quota::per_hour(burst)
            };
            limits.push(Limit {
                key_kind,
                per,
                quota: burst.get(),
                limiter: DefaultKeyedRateLimiter::keyed(quota_of),
            });
        }
        Ok(Self {
            limits,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        })
    }

    /// Takes one query from every quota of `user`, `client` and `ip` (none for a local
    /// caller), or says when to retry.
    pub fn check(&self, user: &str, client: &str, ip: Option<&str>) -> Result<()> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        for limit in &self.limits {
            let key = match limit.key_kind {
                "user" => user,
                "client" => client,
                _ => match ip {
                    Some(ip) => ip,
                    None => continue,
                },
            };
            if let Err(not_until) = limit.limiter.check_key(&key.to_string()) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(Error::RateLimited {
                    message: format!(
                        "{} `{key}` has used its {} queries per {}; retry in {:.1} s",
                        limit.key_kind,
                        limit.quota,
                        limit.per,
                        wait.as_secs_f64()
                    ),
                    retry_after: wait,
                });
            }
        }
        Ok(())
    }

    /// Forgets keys whose quota has fully recovered.
    pub fn prune(&self) {
        for limit in &self.limits {
            limit.limiter.retain_recent();
            limit.limiter.shrink_to_fit();
        }
    }

    /// Keys held, over all quotas (for tests of the pruning).
    pub fn keys_held(&self) -> usize {
        self.limits.iter().map(|l| l.limiter.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_recovered_quotas_are_pruned() {
        let limits = RateLimits::new(&RateLimitConfig {
            per_user_per_minute: Some(6000),
            ..RateLimitConfig::default()
        })
        .unwrap();
        for n in 0..2000 {
            limits.check(&format!("user{n}"), "c", None).unwrap();
        }
        assert_eq!(limits.keys_held(), 2000);
        // One query of a 6000-per-minute quota is back after 10 ms.
        std::thread::sleep(std::time::Duration::from_millis(50));
        limits.prune();
        assert_eq!(limits.keys_held(), 0);
    }

    #[test]
    fn a_zero_quota_is_a_configuration_error() {
        let err = RateLimits::new(&RateLimitConfig {
            per_client_per_hour: Some(0),
            ..RateLimitConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("per_client_per_hour must be at least 1"),
            "{err}"
        );
    }
}
