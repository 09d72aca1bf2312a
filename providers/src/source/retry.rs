//! How failed calls are retried: [`RetryPolicy`].

/// How reads that fail with a lost connection before delivering any row are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all (1: no retry).
    pub attempts: u32,
    /// Pause before the first retry, doubled for each further one (default 100 ms).
    pub initial_backoff: std::time::Duration,
    /// Upper bound of one pause (default 2 s).
    pub max_backoff: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The pause before try `attempt + 1`: doubling from `initial_backoff`, capped, with up
    /// to half of it as random jitter so that many scans do not retry in step.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let doubled = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let base = doubled.min(self.max_backoff);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 2000.0);
        base.saturating_sub(jitter)
    }
}

#[cfg(test)]
mod retry_tests {
    use super::RetryPolicy;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_half_jitter() {
        let policy = RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        for (attempt, base) in [(1, 100), (2, 200), (3, 300), (4, 300)] {
            let delay = policy.backoff(attempt).as_millis();
            assert!(delay <= base && delay >= base / 2, "{attempt}: {delay}");
        }
    }
}
