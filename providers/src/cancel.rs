//! Stopping a remote statement from outside its fetch thread: `SQLCancel` on the running
//! statement, for query deadlines and for queries nobody reads any more.
//!
//! The fetch thread publishes its statement handle while it executes and fetches, and takes it
//! back before the statement is freed; both happen under one lock, so `SQLCancel` never sees a
//! freed handle. A connection whose statement was cancelled is in an unknown state and is
//! closed instead of going back to the pool.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use odbc_api::sys::{HStmt, SQLCancel};

/// How long a scan whose reader went away may take to notice it by itself (at its next batch)
/// before its statement is cancelled.
pub const READER_GONE_GRACE: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct StatementSlot {
    handle: Mutex<Option<RawStatement>>,
    cancelled: AtomicBool,
}

/// An ODBC statement handle; ODBC allows `SQLCancel` on it from any thread.
struct RawStatement(HStmt);

// SAFETY: the handle is only used for SQLCancel, which ODBC defines for use from another
// thread, and only while the owning thread keeps the statement alive (see `StatementSlot`).
unsafe impl Send for RawStatement {}

impl std::fmt::Debug for StatementSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatementSlot")
            .field("running", &self.is_running())
            .field("cancelled", &self.was_cancelled())
            .finish()
    }
}

impl StatementSlot {
    /// Called by the fetch thread before executing.
    pub fn publish(&self, handle: HStmt) {
        if let Ok(mut slot) = self.handle.lock() {
            *slot = Some(RawStatement(handle));
        }
    }

    /// Called by the fetch thread before the statement is freed.
    pub fn clear(&self) {
        if let Ok(mut slot) = self.handle.lock() {
            *slot = None;
        }
    }

    pub fn is_running(&self) -> bool {
        self.handle.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Cancels the running statement, if any. Blocks while the driver sends the cancel request.
    pub fn cancel(&self) {
        if let Ok(slot) = self.handle.lock()
            && let Some(statement) = slot.as_ref()
        {
            self.cancelled.store(true, Ordering::SeqCst);
            // SAFETY: the handle is alive: the fetch thread frees it only after `clear`, which
            // waits for this lock.
            unsafe {
                let _ = SQLCancel(statement.0);
            }
        }
    }

    /// Whether the statement was cancelled: its connection must not be reused.
    pub fn was_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Cancels the statement after `delay` if it is still running then, on a thread of its
    /// own (cancelling can block on the network). A reader that went away gives the fetch
    /// thread [`READER_GONE_GRACE`] to notice by itself at its next batch; a deadline cancels at once.
    pub fn cancel_later(self: &std::sync::Arc<Self>, delay: Duration) {
        let slot = std::sync::Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("ibarrow-cancel".into())
            .spawn(move || {
                std::thread::sleep(delay);
                if slot.is_running() {
                    tracing::debug!("cancelling a remote statement");
                    slot.cancel();
                }
            });
        if spawned.is_err() {
            self.cancel();
        }
    }
}
