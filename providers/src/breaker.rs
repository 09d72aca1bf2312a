//! A circuit breaker per source: after too many failed remote calls in a row of recent calls,
//! the source fails fast (no driver call) for a while, then one probe decides whether it is
//! back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a source's circuit breaker opens and how long it stays open (default: half of the
/// last 10 calls failed; open for 30 s).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Share of failed calls among the last `window` that opens the breaker (0 < rate ≤ 1).
    pub failure_rate: f64,
    /// How many recent calls are judged; fewer never open it.
    pub window: usize,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            window: 10,
            open_for: Duration::from_secs(30),
        }
    }
}

/// Time, replaceable in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real clock ([`Instant::now`]).
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Where a circuit breaker stands, as health checks report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; their outcomes are counted.
    Closed,
    /// Calls fail at once, without reaching the driver.
    Open,
    /// One probe call is let through; its outcome closes or reopens the breaker.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed {
        outcomes: VecDeque<bool>,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; its outcome closes or reopens the breaker. A probe that never
    /// reports (its query was dropped) is replaced after `open_for`.
    HalfOpen {
        since: Instant,
    },
}

/// The circuit breaker of one source, shared by all its calls (see the module docs).
#[derive(Debug)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker following `policy`, timed by `clock`.
    pub fn new(policy: BreakerPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            policy,
            clock,
            state: Mutex::new(State::Closed {
                outcomes: VecDeque::new(),
            }),
        }
    }

    /// Where the breaker stands now.
    pub fn state(&self) -> BreakerState {
        match self.state.lock().as_deref() {
            Ok(State::Open { .. }) => BreakerState::Open,
            Ok(State::HalfOpen { .. }) => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Whether a call would be let through now, without changing anything: `Ok(true)` when it
    /// would be the probe of an open breaker whose time is up, `Err` with the time until then.
    /// A source with several endpoints (`providers/src/source/endpoints.rs`) routes by it.
    pub fn availability(&self) -> Result<bool, Duration> {
        let Ok(state) = self.state.lock() else {
            return Ok(false);
        };
        let now = self.clock.now();
        match &*state {
            State::Closed { .. } => Ok(false),
            State::Open { until } if now >= *until => Ok(true),
            State::Open { until } => Err(*until - now),
            State::HalfOpen { since } if now >= *since + self.policy.open_for => Ok(true),
            State::HalfOpen { since } => Err(*since + self.policy.open_for - now),
        }
    }

    /// Whether a call may go to the database now; when not, how long until it may.
    pub fn admit(&self) -> Result<(), Duration> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let now = self.clock.now();
        match &*state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now >= *until => {
                *state = State::HalfOpen { since: now };
                Ok(())
            }
            State::Open { until } => Err(*until - now),
            State::HalfOpen { since } if now >= *since + self.policy.open_for => {
                *state = State::HalfOpen { since: now };
                Ok(())
            }
            // The probe has not answered yet.
            State::HalfOpen { since } => Err(*since + self.policy.open_for - now),
        }
    }

    /// Gives back a probe that ends without a verdict (its call moved to another endpoint
    /// before the connection could tell, or was dropped): the next call may probe at once.
    pub fn release_probe(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let State::HalfOpen { .. } = *state {
            *state = State::Open {
                until: self.clock.now(),
            };
        }
    }

    /// The outcome of an admitted call: `false` when the database could not be reached or
    /// did not answer in time.
    pub fn record(&self, success: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = self.clock.now();
        let open = State::Open {
            until: now + self.policy.open_for,
        };
        *state = match std::mem::replace(&mut *state, State::HalfOpen { since: now }) {
            State::HalfOpen { .. } if success => State::Closed {
                outcomes: VecDeque::new(),
            },
            State::HalfOpen { .. } => open,
            State::Open { until } => State::Open { until },
            State::Closed { mut outcomes } => {
                outcomes.push_back(success);
                while outcomes.len() > self.policy.window.max(1) {
                    outcomes.pop_front();
                }
                let failed = outcomes.iter().filter(|ok| !**ok).count();
                let judged = outcomes.len() >= self.policy.window.max(1);
                if judged && failed as f64 >= self.policy.failure_rate * outcomes.len() as f64 {
                    tracing::warn!(failed, of = outcomes.len(), "circuit breaker opens");
                    open
                } else {
                    State::Closed { outcomes }
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct ManualClock(Mutex<Instant>);

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    impl ManualClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    fn breaker() -> (CircuitBreaker, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let policy = BreakerPolicy {
            failure_rate: 0.5,
            window: 4,
            open_for: Duration::from_secs(30),
        };
        (CircuitBreaker::new(policy, clock.clone()), clock)
    }

    #[test]
    fn opens_at_the_failure_rate_over_the_window_and_fails_fast() {
        let (b, clock) = breaker();
        for ok in [true, false, true] {
            b.record(ok);
        }
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "fewer calls than the window"
        );
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed, "1 of 4 failed");
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open, "2 of the last 4 failed");
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.admit(), Err(Duration::from_secs(20)));
    }

    #[test]
    fn half_open_lets_one_probe_through_which_closes_or_reopens_it() {
        let (b, clock) = breaker();
        for _ in 0..4 {
            b.record(false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.availability(), Err(Duration::from_secs(30)));
        clock.advance(Duration::from_secs(30));
        assert_eq!(b.availability(), Ok(true), "a probe is due");
        assert_eq!(b.admit(), Ok(()), "the probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_err(), "only one probe at a time");
        clock.advance(Duration::from_secs(30));
        assert_eq!(b.admit(), Ok(()), "a probe that never reported is replaced");
        b.release_probe();
        assert_eq!(
            b.availability(),
            Ok(true),
            "a released probe is due again at once"
        );
        assert_eq!(b.admit(), Ok(()));
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        assert_eq!(b.admit(), Err(Duration::from_secs(30)));
        clock.advance(Duration::from_secs(30));
        assert_eq!(b.admit(), Ok(()));
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed, "a good probe closes");
        assert_eq!(b.availability(), Ok(false));
        assert_eq!(b.admit(), Ok(()));
    }
}
