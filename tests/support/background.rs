//! Test helpers shared by the fault tests: log capture, and a query run in the background
//! while a test breaks something under it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use ibarrow::Engine;

/// Log output captured while a test runs (a `MakeWriter` for tracing-subscriber).
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl CapturedLog {
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|log| String::from_utf8_lossy(&log).into_owned())
            .unwrap_or_default()
    }
}

/// What a background query ended with, and when.
pub type Finished = (ibarrow::Result<Vec<RecordBatch>>, Duration);

/// Plans and collects `sql` on a task of its own.
pub fn run_in_background(engine: &Engine, sql: &'static str) -> tokio::task::JoinHandle<Finished> {
    let engine = engine.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = match engine.sql(sql).await {
            Ok(frame) => frame.collect().await.map_err(ibarrow::Error::from),
            Err(err) => Err(err),
        };
        (outcome, started.elapsed())
    })
}
