//! The servers one source reaches: its primary and its replicas (`replicas = [...]`), each
//! with its own pool, circuit breaker, replication lag and counters, and the order in which a
//! call tries them ([`route`], a pure function). The call path (`providers/src/call.rs`)
//! walks that order: the next endpoint takes a statement that could not start on one.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::breaker::CircuitBreaker;
use crate::pool::ConnectionPool;

/// Which endpoints serve reads first (`read_from`); the others are the fallback when none
/// of those is healthy. Writes always go to the primary alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The primary; replicas only while it is down.
    Primary,
    /// The replicas, balanced; the primary only while none of them is healthy (the default).
    Replicas,
    /// Every endpoint alike, balanced.
    Any,
}

impl FromStr for ReadFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "primary" => Ok(ReadFrom::Primary),
            "replicas" => Ok(ReadFrom::Replicas),
            "any" => Ok(ReadFrom::Any),
            _ => Err(format!(
                "`{text}` is not a place to read from; use \"primary\", \"replicas\" or \"any\""
            )),
        }
    }
}

impl ReadFrom {
    /// Whether reads go first to an endpoint of `role`.
    pub fn prefers(self, role: EndpointRole) -> bool {
        match self {
            ReadFrom::Primary => role == EndpointRole::Primary,
            ReadFrom::Replicas => role == EndpointRole::Replica,
            ReadFrom::Any => true,
        }
    }
}

/// As the configuration spells it.
impl std::fmt::Display for ReadFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadFrom::Primary => "primary",
            ReadFrom::Replicas => "replicas",
            ReadFrom::Any => "any",
        })
    }
}

/// How reads are spread over the endpoints they may use (`balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// The endpoint running the fewest statements of this engine now (the default).
    LeastBusy,
    /// Each in turn.
    RoundRobin,
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "least_busy" => Ok(Balance::LeastBusy),
            "round_robin" => Ok(Balance::RoundRobin),
            _ => Err(format!(
                "`{text}` is not a way to balance; use \"least_busy\" or \"round_robin\""
            )),
        }
    }
}

/// As the configuration spells it.
impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Balance::LeastBusy => "least_busy",
            Balance::RoundRobin => "round_robin",
        })
    }
}

/// How a source with replicas uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaOptions {
    /// Where reads go first.
    pub read_from: ReadFrom,
    /// How reads are spread.
    pub balance: Balance,
    /// Replicas further behind their primary than this take no reads (`None`: lag is not
    /// checked).
    pub max_lag: Option<Duration>,
    /// How old a lag reading may be before the next read starts a new one.
    pub lag_check_interval: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        Self {
            read_from: ReadFrom::Replicas,
            balance: Balance::LeastBusy,
            max_lag: None,
            lag_check_interval: Duration::from_secs(5),
        }
    }
}

/// What an endpoint is to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointRole {
    /// Takes writes and, by `read_from`, reads.
    Primary,
    /// Takes reads only; its sessions are read-only where the database can make them so.
    Replica,
}

/// The last reading of a replica's lag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LagReading {
    /// Not read yet, or the last reading failed.
    Unknown,
    /// The server could not tell (replication stopped).
    NotReplicating,
    /// Behind its primary by this much (zero: caught up, or not a replica at all).
    Behind(Duration),
}

#[derive(Debug)]
struct LagState {
    reading: LagReading,
    read_at: Option<Instant>,
    /// When the reading under way started (`None`: none is).
    checking_since: Option<Instant>,
}

/// A lag reading that has not reported after this long is given up (its task was dropped
/// with the runtime it ran on, say) and another may start.
const LAG_READING_GIVEN_UP: Duration = Duration::from_secs(30);

/// One server of a source (see the module notes).
#[derive(Debug)]
pub struct Endpoint {
    label: String,
    role: EndpointRole,
    pool: Arc<ConnectionPool>,
    breaker: Option<Arc<CircuitBreaker>>,
    /// Calls routed here and not finished: what `least_busy` compares.
    active: AtomicUsize,
    /// Routed calls started here (tries; not its own pings and lag readings).
    started: AtomicU64,
    /// Routed calls that succeeded here.
    answered: AtomicU64,
    /// Calls that could not start here and went to another endpoint.
    failed_over: AtomicU64,
    /// A ping started in the background to probe its breaker has not ended yet.
    probing: std::sync::atomic::AtomicBool,
    lag: Mutex<LagState>,
}

impl Endpoint {
    pub(crate) fn new(
        label: String,
        role: EndpointRole,
        pool: Arc<ConnectionPool>,
        breaker: Option<Arc<CircuitBreaker>>,
    ) -> Self {
        Self {
            label,
            role,
            pool,
            breaker,
            active: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            failed_over: AtomicU64::new(0),
            probing: std::sync::atomic::AtomicBool::new(false),
            lag: Mutex::new(LagState {
                reading: LagReading::Unknown,
                read_at: None,
                checking_since: None,
            }),
        }
    }

    /// `primary`, `replica1`, `replica2` … in the order of the configuration.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Primary or replica.
    pub fn role(&self) -> EndpointRole {
        self.role
    }

    /// The endpoint's own connection pool.
    pub fn pool(&self) -> &Arc<ConnectionPool> {
        &self.pool
    }

    /// The endpoint's own circuit breaker (`None`: the source has none).
    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.breaker.as_ref()
    }

    /// Statements running on it now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Routed calls started on it since the source was connected: each try of a call
    /// counts; its own health pings and lag readings do not.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Routed calls that succeeded on it.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Calls that could not start on it and were started on another endpoint.
    pub fn failed_over(&self) -> u64 {
        self.failed_over.load(Ordering::SeqCst)
    }

    /// The last lag reading.
    pub fn lag(&self) -> LagReading {
        self.lag
            .lock()
            .map_or(LagReading::Unknown, |state| state.reading)
    }

    /// Marks a call as running here until the guard drops; `routed`: counted in
    /// [`Self::started`] and [`Self::answered`] (a call pinned here is not).
    pub(crate) fn begin(self: &Arc<Self>, routed: bool) -> ActiveCall {
        self.active.fetch_add(1, Ordering::SeqCst);
        if routed {
            self.started.fetch_add(1, Ordering::SeqCst);
        }
        ActiveCall {
            endpoint: Arc::clone(self),
            routed,
        }
    }

    /// Claims the background probe of this endpoint's breaker until the guard drops; `None`:
    /// one is under way.
    pub(crate) fn start_probe(self: &Arc<Self>) -> Option<ProbeClaim> {
        (!self.probing.swap(true, Ordering::SeqCst)).then(|| ProbeClaim(Arc::clone(self)))
    }

    pub(crate) fn count_failover(&self) {
        self.failed_over.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a new lag reading is due; when it is, the caller must take it and report it
    /// with [`Self::record_lag`] (only one caller is told at a time).
    pub(crate) fn lag_check_due(&self, interval: Duration) -> bool {
        let Ok(mut state) = self.lag.lock() else {
            return false;
        };
        let idle = state
            .checking_since
            .is_none_or(|since| since.elapsed() >= LAG_READING_GIVEN_UP);
        let due = idle && state.read_at.is_none_or(|at| at.elapsed() >= interval);
        if due {
            state.checking_since = Some(Instant::now());
        }
        due
    }

    pub(crate) fn record_lag(&self, reading: LagReading) {
        if let Ok(mut state) = self.lag.lock() {
            state.reading = reading;
            state.read_at = Some(Instant::now());
            state.checking_since = None;
        }
    }

    /// What [`route`] needs to know of this endpoint now.
    pub(crate) fn candidate(&self, max_lag: Option<Duration>) -> Candidate {
        let availability = match self.breaker.as_ref().map(|b| b.availability()) {
            None | Some(Ok(false)) => Availability::Healthy,
            Some(Ok(true)) => Availability::ProbeDue,
            Some(Err(retry_in)) => Availability::Open(retry_in),
        };
        let lag = match (self.role, max_lag) {
            (EndpointRole::Replica, Some(max)) => match self.lag() {
                LagReading::Behind(lag) if lag <= max => None,
                reading => Some(reading),
            },
            _ => None,
        };
        Candidate {
            role: self.role,
            busy: self.active(),
            availability,
            lagging: lag,
        }
    }
}

/// The claim on an endpoint's background probe; given up when dropped, however its task ends.
#[derive(Debug)]
pub(crate) struct ProbeClaim(Arc<Endpoint>);

impl Drop for ProbeClaim {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::SeqCst);
    }
}

/// A call running on an endpoint; counted in its `active` until dropped.
#[derive(Debug)]
pub(crate) struct ActiveCall {
    endpoint: Arc<Endpoint>,
    routed: bool,
}

impl ActiveCall {
    /// The call succeeded here.
    pub(crate) fn answered(&self) {
        if self.routed {
            self.endpoint.answered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether an endpoint's breaker lets calls through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Availability {
    Healthy,
    /// Open, but its time is up: the next call is its probe.
    ProbeDue,
    /// Open for this much longer.
    Open(Duration),
}

/// One endpoint as [`route`] sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub role: EndpointRole,
    pub busy: usize,
    pub availability: Availability,
    /// `Some`: a replica kept out by `max_replica_lag_secs`, with what its reading said.
    pub lagging: Option<LagReading>,
}

/// The order in which a call tries the endpoints (indexes into `candidates`): a write the
/// primary alone; a read first those of the endpoints `read_from` names whose breaker is due
/// for its probe (a read is how it comes back into use; if the probe fails the call moves
/// on), then the rest of those, then the others, each group the least busy first or in turn
/// from `turn`; last, the replicas beyond the allowed lag (a replica of a dead primary cannot
/// catch up, and stale rows beat none when nothing else starts the read). Endpoints whose
/// breaker is open are left out.
pub(crate) fn route(
    candidates: &[Candidate],
    options: &ReplicaOptions,
    write: bool,
    turn: usize,
) -> Vec<usize> {
    let reachable =
        |index: &usize| !matches!(candidates[*index].availability, Availability::Open(_));
    let usable = |index: &usize| reachable(index) && candidates[*index].lagging.is_none();
    let primary = candidates
        .iter()
        .position(|c| c.role == EndpointRole::Primary);
    if write {
        return primary.into_iter().filter(usable).collect();
    }
    let preferred = |c: &Candidate| options.read_from.prefers(c.role);
    let probe = |i: &usize| candidates[*i].availability == Availability::ProbeDue;
    let groups: [Vec<usize>; 4] = [
        (0..candidates.len())
            .filter(|i| preferred(&candidates[*i]) && usable(i) && probe(i))
            .collect(),
        (0..candidates.len())
            .filter(|i| preferred(&candidates[*i]) && usable(i) && !probe(i))
            .collect(),
        (0..candidates.len())
            .filter(|i| !preferred(&candidates[*i]) && usable(i))
            .collect(),
        (0..candidates.len())
            .filter(|i| reachable(i) && !usable(i))
            .collect(),
    ];
    let mut order = Vec::with_capacity(candidates.len());
    for group in groups {
        if group.is_empty() {
            continue;
        }
        // In turn: the group rotated by `turn`; least busy: that rotation breaks the ties.
        let start = turn % group.len();
        let mut rotated: Vec<usize> = group[start..]
            .iter()
            .chain(&group[..start])
            .copied()
            .collect();
        if options.balance == Balance::LeastBusy {
            rotated.sort_by_key(|&i| candidates[i].busy);
        }
        order.extend(rotated);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(role: EndpointRole, busy: usize) -> Candidate {
        Candidate {
            role,
            busy,
            availability: Availability::Healthy,
            lagging: None,
        }
    }

    fn options(read_from: ReadFrom, balance: Balance) -> ReplicaOptions {
        ReplicaOptions {
            read_from,
            balance,
            ..ReplicaOptions::default()
        }
    }

    const P: EndpointRole = EndpointRole::Primary;
    const R: EndpointRole = EndpointRole::Replica;

    #[test]
    fn writes_go_to_the_primary_alone() {
        let all = [endpoint(P, 5), endpoint(R, 0), endpoint(R, 0)];
        let any = options(ReadFrom::Any, Balance::LeastBusy);
        assert_eq!(route(&all, &any, true, 3), vec![0]);
        let mut down = all;
        down[0].availability = Availability::Open(Duration::from_secs(3));
        assert!(
            route(&down, &any, true, 0).is_empty(),
            "no failover for writes"
        );
    }

    #[test]
    fn reads_prefer_what_read_from_names_and_fall_back_to_the_rest() {
        let all = [endpoint(P, 0), endpoint(R, 0), endpoint(R, 0)];
        let replicas = options(ReadFrom::Replicas, Balance::RoundRobin);
        assert_eq!(route(&all, &replicas, false, 0), vec![1, 2, 0]);
        assert_eq!(route(&all, &replicas, false, 1), vec![2, 1, 0]);
        let primary = options(ReadFrom::Primary, Balance::RoundRobin);
        assert_eq!(route(&all, &primary, false, 1), vec![0, 2, 1]);
        let any = options(ReadFrom::Any, Balance::RoundRobin);
        assert_eq!(route(&all, &any, false, 2), vec![2, 0, 1]);
    }

    #[test]
    fn least_busy_first_with_turns_breaking_ties() {
        let all = [endpoint(P, 4), endpoint(R, 2), endpoint(R, 1)];
        let any = options(ReadFrom::Any, Balance::LeastBusy);
        assert_eq!(route(&all, &any, false, 0), vec![2, 1, 0]);
        let tied = [endpoint(P, 1), endpoint(R, 1), endpoint(R, 1)];
        assert_eq!(route(&tied, &any, false, 1), vec![1, 2, 0]);
    }

    #[test]
    fn open_breakers_are_left_out_lagging_replicas_come_last_and_probes_first() {
        let mut all = [endpoint(P, 0), endpoint(R, 0), endpoint(R, 0)];
        all[1].availability = Availability::Open(Duration::from_secs(10));
        all[2].lagging = Some(LagReading::Behind(Duration::from_secs(60)));
        let replicas = options(ReadFrom::Replicas, Balance::LeastBusy);
        assert_eq!(
            route(&all, &replicas, false, 0),
            vec![0, 2],
            "the primary as fallback, the lagging replica as last resort"
        );
        all[1].availability = Availability::ProbeDue;
        all[1].busy = 7;
        assert_eq!(
            route(&all, &replicas, false, 0),
            vec![1, 0, 2],
            "probe despite being busy; the lagging replica last"
        );
        all[0].availability = Availability::Open(Duration::from_secs(1));
        all[1].availability = Availability::Open(Duration::from_secs(1));
        assert_eq!(
            route(&all, &replicas, false, 0),
            vec![2],
            "with the primary down, a lagging replica is the last resort"
        );
        all[2].availability = Availability::Open(Duration::from_secs(1));
        assert!(
            route(&all, &replicas, false, 0).is_empty(),
            "no healthy endpoint"
        );
    }

    #[test]
    fn a_probe_goes_first_among_the_endpoints_read_from_names() {
        let mut all = [endpoint(P, 0), endpoint(R, 0), endpoint(R, 0)];
        all[0].availability = Availability::ProbeDue;
        all[2].availability = Availability::ProbeDue;
        let replicas = options(ReadFrom::Replicas, Balance::RoundRobin);
        assert_eq!(route(&all, &replicas, false, 0), vec![2, 1, 0]);
    }

    #[test]
    fn settings_read_from_text_with_clear_errors() {
        assert_eq!("Replicas".parse(), Ok(ReadFrom::Replicas));
        assert_eq!("round_robin".parse(), Ok(Balance::RoundRobin));
        let err = "nearest".parse::<ReadFrom>().unwrap_err();
        assert!(
            err.contains("\"primary\", \"replicas\" or \"any\""),
            "{err}"
        );
        assert!(
            "fastest"
                .parse::<Balance>()
                .unwrap_err()
                .contains("least_busy")
        );
    }
}
