//! One path for every call to a database: scans, metadata discovery, key ranges, estimates,
//! `query()` descriptions, INSERTs and health pings all go through [`OdbcSource::call`].
//!
//! In order: the circuit breaker admits the call (an open breaker fails it at once, before any
//! driver call) → a pool slot is awaited (asynchronously, within the acquire timeout) → a
//! blocking thread checks out a connection and runs the call (ODBC never runs on a tokio
//! worker) → the statement the call runs is published so that it can be cancelled → the
//! deadline: when it passes, the statement is cancelled, the connection is abandoned (closed
//! when its thread comes back, never pooled again) and its pool slot is freed at once, so the
//! caller is free even while a silent network holds the thread → a transient failure (a lost
//! connection) of a call that may be repeated and has produced nothing yet is retried on a
//! fresh connection after a backoff → the outcome goes to the breaker.
//!
//! A source with replicas (`providers/src/source/endpoints.rs`) first orders its endpoints
//! for the call (a write: the primary alone); each try runs on one of them, under that
//! endpoint's breaker and pool. A try that could not start (connection refused, breaker open,
//! connection lost before anything was delivered) moves to the next endpoint at once, within
//! the retry policy's tries; only an endpoint tried before waits for the backoff.
//!
//! A caller that stops waiting (a dropped query) gets the same treatment as a deadline after
//! [`READER_GONE_GRACE`]: time for a scan to notice by itself at its next batch.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use odbc_api::sys::HStmt;

use crate::cancel::{READER_GONE_GRACE, StatementSlot};
use crate::error::OdbcError;
use crate::pool::{PermitRelease, PooledConnection};
use crate::source::{Endpoint, OdbcSource};

/// What a call is, for its deadline, its retries and its errors.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// What the call does, as an error names it ("listing tables").
    what: String,
    /// The statement as sent, quoted by a timeout error; `what` when there is none.
    statement: Option<String>,
    deadline: Option<Duration>,
    /// Whether the call may run again on a fresh connection after a lost connection, as long
    /// as it has produced nothing ([`CallContext::produced`]).
    repeatable: bool,
    /// The primary alone runs it.
    on_primary: bool,
    /// It writes: reads follow it to the primary for a while (see `OdbcSource::route_call`).
    write: bool,
    /// One endpoint alone, by index (a ping or lag reading of that endpoint).
    endpoint: Option<usize>,
}

impl CallSpec {
    /// A repeatable call under the source's query timeout.
    pub fn new(source: &OdbcSource, what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            statement: None,
            deadline: source.options().scan.query_timeout,
            repeatable: true,
            on_primary: false,
            write: false,
            endpoint: None,
        }
    }

    /// A write (an INSERT, a native statement that may write): on the primary alone, run once,
    /// and the source's reads follow it to the primary for a while, so that they see it.
    pub fn write(mut self) -> Self {
        self.write = true;
        self.on_primary().once()
    }

    /// Only the primary may run it (a statement that may write: preparing one, say); it never
    /// moves to a replica.
    pub fn on_primary(mut self) -> Self {
        self.on_primary = true;
        self
    }

    /// Runs on endpoint `index` of the source alone ([`OdbcSource::endpoints`]).
    pub fn on_endpoint(mut self, index: usize) -> Self {
        self.endpoint = Some(index);
        self
    }

    /// Quote `statement` in a timeout error.
    pub fn statement(mut self, statement: impl Into<String>) -> Self {
        self.statement = Some(statement.into());
        self
    }

    /// Another deadline than the source's query timeout (`None`: none).
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Never run again: the call has effects (a write) or cannot tell what it delivered.
    pub fn once(mut self) -> Self {
        self.repeatable = false;
        self
    }
}

/// State one run of a call shares between its blocking thread and the task awaiting it.
#[derive(Debug)]
pub(crate) struct CallTicket {
    slot: Arc<StatementSlot>,
    release: PermitRelease,
    produced: AtomicBool,
    finished: AtomicBool,
    /// The connection was opened for this run, not reused from the idle list.
    fresh_connection: AtomicBool,
}

impl CallTicket {
    fn new(release: PermitRelease) -> Arc<Self> {
        Arc::new(Self {
            slot: Arc::new(StatementSlot::default()),
            release,
            produced: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            fresh_connection: AtomicBool::new(false),
        })
    }

    /// Gives the call up: cancels its statement (on a thread of its own: a cancel can block on
    /// the network), marks its connection for closing and frees its pool slot.
    fn abandon(&self) {
        self.release.abandon();
        self.slot.cancel_later(Duration::ZERO);
    }

    fn was_abandoned(&self) -> bool {
        self.release.is_abandoned()
    }
}

/// Abandons a run whose caller stopped waiting, unless it ends within the grace period.
struct AbandonOnDrop(Option<Arc<CallTicket>>);

impl AbandonOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        let Some(ticket) = self.0.take() else { return };
        if ticket.finished.load(Ordering::SeqCst) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("ibarrow-abandon".into())
            .spawn({
                let ticket = Arc::clone(&ticket);
                move || {
                    std::thread::sleep(READER_GONE_GRACE);
                    if !ticket.finished.load(Ordering::SeqCst) {
                        tracing::debug!("abandoning a remote call nobody waits for");
                        ticket.abandon();
                    }
                }
            });
        if spawned.is_err() {
            ticket.abandon();
        }
    }
}

/// What a call's closure gets on its blocking thread: the connection (through `Deref`) and the
/// means to make its statement cancellable.
pub struct CallContext<'a> {
    connection: &'a PooledConnection,
    ticket: &'a CallTicket,
    endpoint: &'a str,
}

impl CallContext<'_> {
    /// Makes `handle` the statement a deadline cancels; [`Self::unpublish`] before freeing it.
    pub fn publish(&self, handle: HStmt) {
        self.ticket.slot.publish(handle);
    }

    /// Withdraws the published statement so that no deadline cancels it; call before freeing it.
    pub fn unpublish(&self) {
        self.ticket.slot.clear();
    }

    /// The call has handed results on: it is never repeated after this.
    pub fn produced(&self) {
        self.ticket.produced.store(true, Ordering::SeqCst);
    }

    /// Whether the statement was cancelled (a deadline, a caller gone): stop, and do not trust
    /// what the driver says next.
    pub fn was_cancelled(&self) -> bool {
        self.ticket.slot.was_cancelled() || self.ticket.was_abandoned()
    }

    /// The pooled connection the call runs on.
    pub fn connection(&self) -> &PooledConnection {
        self.connection
    }

    /// The label of the endpoint the call runs on (`primary`, `replica1` …).
    pub fn endpoint(&self) -> &str {
        self.endpoint
    }
}

impl Deref for CallContext<'_> {
    type Target = PooledConnection;

    fn deref(&self) -> &PooledConnection {
        self.connection
    }
}

/// The endpoints a call's tries were admitted to by their breakers, and not yet judged. A
/// retry of the one probe a half-open breaker lets through is still that probe; a probe the
/// call leaves without a verdict (it moved on, or the call was dropped) is given back, so the
/// endpoint's next call probes at once instead of after another `open_for`.
struct Admissions<'a> {
    route: &'a [Arc<Endpoint>],
    admitted: Vec<bool>,
}

impl<'a> Admissions<'a> {
    fn new(route: &'a [Arc<Endpoint>]) -> Self {
        Self {
            route,
            admitted: vec![false; route.len()],
        }
    }

    /// Whether endpoint `at` may take a try: admitted before in this call, or now; when not,
    /// how long until its breaker lets a probe through.
    fn admit(&mut self, at: usize) -> Result<(), std::time::Duration> {
        if !self.admitted[at] {
            if let Some(breaker) = self.route[at].breaker() {
                breaker.admit()?;
            }
            self.admitted[at] = true;
        }
        Ok(())
    }

    /// The verdict on endpoint `at`; coming back to it needs its breaker's leave again.
    fn judge(&mut self, at: usize, answered: bool) {
        if let Some(breaker) = self.route[at].breaker() {
            breaker.record(answered);
        }
        self.admitted[at] = false;
    }
}

impl Drop for Admissions<'_> {
    fn drop(&mut self) {
        for (endpoint, admitted) in self.route.iter().zip(&self.admitted) {
            if let (true, Some(breaker)) = (*admitted, endpoint.breaker()) {
                breaker.release_probe();
            }
        }
    }
}

impl OdbcSource {
    /// Runs `f` on a pooled connection on a blocking thread, under the breaker, the deadline
    /// and the retry policy of the source, on the endpoints its route gives (see the module
    /// notes).
    pub async fn call<R, F>(&self, spec: CallSpec, f: F) -> Result<R, OdbcError>
    where
        F: FnMut(&CallContext<'_>) -> Result<R, OdbcError> + Send + 'static,
        R: Send + 'static,
    {
        let deadline = spec.deadline.map(|d| (tokio::time::Instant::now() + d, d));
        let timed_out = |after| OdbcError::Timeout {
            source_name: self.name().to_string(),
            after,
            statement: spec.statement.clone().unwrap_or_else(|| spec.what.clone()),
        };
        let retry = &self.options().retry;
        let route = self.route_call(spec.on_primary, spec.endpoint)?;
        let mut admissions = Admissions::new(&route);
        // Tried in this call: a move back to it waits for the backoff.
        let mut tried = vec![false; route.len()];
        let mut position = 0;
        let mut last_error = None;
        let mut f = f;
        let mut attempt = 1;
        loop {
            let mut refused: Option<std::time::Duration> = None;
            let mut chosen = None;
            for step in 0..route.len() {
                let at = (position + step) % route.len();
                match admissions.admit(at) {
                    Ok(()) => {
                        chosen = Some(at);
                        break;
                    }
                    Err(retry_in) => {
                        refused = Some(refused.map_or(retry_in, |r| r.min(retry_in)));
                    }
                }
            }
            let Some(at) = chosen else {
                return Err(last_error.unwrap_or_else(|| OdbcError::CircuitOpen {
                    source_name: self.name().to_string(),
                    retry_in: refused.unwrap_or_default(),
                }));
            };
            let endpoint = &route[at];
            // A return to an endpoint this call already tried waits for the backoff; a move
            // to one not tried yet starts at once.
            if tried[at] {
                let delay = retry.backoff(attempt - 1);
                tracing::warn!(
                    source = self.name(),
                    endpoint = endpoint.label(),
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %last_error.as_ref().map(ToString::to_string).unwrap_or_default(),
                    "retrying {} on a fresh connection",
                    spec.what
                );
                match deadline {
                    Some((until, after)) if tokio::time::Instant::now() + delay >= until => {
                        return Err(timed_out(after));
                    }
                    _ => tokio::time::sleep(delay).await,
                }
            }
            tried[at] = true;
            let acquired = match deadline {
                None => endpoint.pool().acquire().await,
                Some((until, after)) => tokio::time::timeout_at(until, endpoint.pool().acquire())
                    .await
                    .map_err(|_| timed_out(after))?,
            };
            let permit = match acquired {
                Ok(permit) => permit,
                // A full pool is no verdict on the server: an endpoint not tried yet takes
                // the call (a probe admitted here stays this call's).
                Err(err @ OdbcError::PoolTimeout { .. })
                    if attempt < retry.attempts
                        && (0..route.len()).any(|other| other != at && !tried[other]) =>
                {
                    endpoint.count_failover();
                    position = (at + 1) % route.len();
                    last_error = Some(err);
                    attempt += 1;
                    continue;
                }
                Err(err) => return Err(err),
            };
            if spec.write {
                self.note_write();
            }
            let running = endpoint.begin(spec.endpoint.is_none());
            let ticket = CallTicket::new(permit.release_handle());
            let mut on_drop = AbandonOnDrop(Some(Arc::clone(&ticket)));
            let pool = Arc::clone(endpoint.pool());
            let label = endpoint.label().to_string();
            let thread_ticket = Arc::clone(&ticket);
            let run = tokio::task::spawn_blocking(move || {
                let result = pool.checkout(permit).and_then(|connection| {
                    thread_ticket
                        .fresh_connection
                        .store(connection.is_fresh(), Ordering::SeqCst);
                    if thread_ticket.was_abandoned() {
                        connection.discard();
                        return Err(OdbcError::Task {
                            source_name: pool.source_name().to_string(),
                            message: "the call was given up before it started".into(),
                        });
                    }
                    let context = CallContext {
                        connection: &connection,
                        ticket: &thread_ticket,
                        endpoint: &label,
                    };
                    let ran =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&context)));
                    thread_ticket.slot.clear();
                    // A panic or a cancel leaves the connection in a state nobody knows (an
                    // insert's transaction open): closed, which rolls back.
                    if ran.is_err() || context.was_cancelled() {
                        connection.discard();
                    }
                    ran.unwrap_or_else(|_| {
                        Err(OdbcError::Task {
                            source_name: pool.source_name().to_string(),
                            message: "the ODBC call panicked; nothing it did is kept".into(),
                        })
                    })
                });
                thread_ticket.finished.store(true, Ordering::SeqCst);
                (f, result)
            });
            let joined = match deadline {
                None => run.await,
                Some((until, after)) => match tokio::time::timeout_at(until, run).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        on_drop.disarm();
                        ticket.abandon();
                        admissions.judge(at, false);
                        return Err(timed_out(after));
                    }
                },
            };
            on_drop.disarm();
            let (returned, result) = joined.map_err(|err| OdbcError::Task {
                source_name: self.name().to_string(),
                message: if err.is_panic() {
                    format!("{} panicked; the result is incomplete", spec.what)
                } else {
                    err.to_string()
                },
            })?;
            f = returned;
            let err = match result {
                Ok(value) => {
                    admissions.judge(at, true);
                    running.answered();
                    return Ok(value);
                }
                Err(err) => err,
            };
            let untouched = !ticket.produced.load(Ordering::SeqCst)
                && !ticket.slot.was_cancelled()
                && attempt < retry.attempts;
            // Another endpoint takes a call that could not start here; one endpoint retries
            // a repeatable call that lost its connection.
            let again_here = spec.repeatable && err.is_transient();
            let elsewhere =
                route.len() > 1 && (again_here || matches!(err, OdbcError::ConnectFailed { .. }));
            let give_up = !untouched || !(again_here || elsewhere);
            // The breaker judges an endpoint when the call ends with it, or leaves it because
            // it could not connect or dropped a connection opened for this call. A reused
            // connection lost alone (a stale idle one, say) is no verdict.
            let fresh = ticket.fresh_connection.load(Ordering::SeqCst);
            if give_up || (elsewhere && (!err.is_transient() || fresh)) {
                admissions.judge(at, !err.is_source_failure());
            }
            if give_up {
                return Err(err);
            }
            if elsewhere {
                endpoint.count_failover();
                tracing::warn!(
                    source = self.name(),
                    from = endpoint.label(),
                    attempt,
                    error = %err,
                    "starting {} on another endpoint",
                    spec.what
                );
                position = (at + 1) % route.len();
            } else {
                position = at;
            }
            last_error = Some(err);
            attempt += 1;
        }
    }
}
