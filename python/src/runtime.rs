//! The one tokio runtime of the process and the bridge that waits on it from Python.
//!
//! Waiting releases the GIL and wakes every 200 ms to let Python run its signal handlers, so
//! Ctrl-C raises `KeyboardInterrupt` in the caller and drops the future: dropping a query's
//! stream stops its remote scans and returns their connections.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors::error_of_kind;

struct ProcessRuntime {
    runtime: Runtime,
    pid: u32,
}

static RUNTIME: OnceLock<ProcessRuntime> = OnceLock::new();

const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The runtime, created on first use and never dropped (threads blocked in ODBC drivers may
/// outlive any scope).
pub fn runtime() -> PyResult<&'static Runtime> {
    let process = match RUNTIME.get() {
        Some(process) => process,
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .thread_name("ibarrow")
                .enable_all()
                .build()
                .map_err(|err| {
                    error_of_kind("Error", format!("cannot start ibarrow's runtime: {err}"))
                })?;
            RUNTIME.get_or_init(|| ProcessRuntime {
                runtime,
                pid: std::process::id(),
            })
        }
    };
    if process.pid != std::process::id() {
        // A forked child inherits the runtime's memory but not its threads.
        return Err(error_of_kind(
            "Error",
            "ibarrow was started before this process forked; its threads do not exist in the \
             child. Create engines and connections in the child process (or use the \
             'spawn' start method of multiprocessing)"
                .to_string(),
        ));
    }
    Ok(&process.runtime)
}

/// Runs `future` to completion on the runtime with the GIL released. Ctrl-C (or any pending
/// Python signal whose handler raises) drops the future and returns that exception.
pub fn wait_for_future<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let runtime = runtime()?;
    py.detach(|| {
        runtime.block_on(async {
            let mut future = std::pin::pin!(future);
            loop {
                tokio::select! {
                    output = &mut future => return Ok(output),
                    _ = tokio::time::sleep(SIGNAL_CHECK_INTERVAL) => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    })
}
