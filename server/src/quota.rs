//! Entries one user may hold at once in the server's shared caches (planned queries,
//! prepared statements, tokens), so that one user cannot push out everyone else's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::ServerError;

/// A count of entries per user under one limit, for one cache.
pub struct PerUser {
    limit: usize,
    /// What is counted, for the error: "planned queries", "prepared statements", ...
    what: &'static str,
    counts: Mutex<HashMap<String, usize>>,
}

impl PerUser {
    /// A quota of `limit` entries per user; `what` names them in the error.
    pub fn new(limit: usize, what: &'static str) -> Arc<Self> {
        Arc::new(Self {
            limit,
            what,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more for `user`, or refuses when the user holds the limit already.
    pub fn take(&self, user: &str) -> Result<(), ServerError> {
        let mut counts = self
            .counts
            .lock()
            .map_err(|_| ServerError::Internal("quota lock".into()))?;
        let held = counts.entry(user.to_string()).or_insert(0);
        if *held >= self.limit {
            return Err(ServerError::TooMany(format!(
                "user `{user}` holds {} open {}; close or fetch some (or wait for them to expire)",
                self.limit, self.what
            )));
        }
        *held += 1;
        Ok(())
    }

    /// One of `user`'s entries left its cache.
    pub fn give_back(&self, user: &str) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        if let Some(held) = counts.get_mut(user) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.remove(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_at_the_limit_is_refused_until_one_is_given_back() {
        let quota = PerUser::new(2, "prepared statements");
        quota.take("ann").unwrap();
        quota.take("ann").unwrap();
        let err = quota.take("ann").unwrap_err();
        assert!(
            err.to_string().contains("2 open prepared statements"),
            "{err}"
        );
        assert_eq!(err.status(), http::StatusCode::TOO_MANY_REQUESTS);
        quota.take("bob").unwrap();
        quota.give_back("ann");
        quota.take("ann").unwrap();
    }
}
