//! Runs statements: plans them on the engine, streams the result into the chosen format,
//! shows progress on a terminal and lets Ctrl-C cancel the query without ending the session.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use ibarrow::Engine;
use ibarrow::providers::OdbcExec;

use crate::prepared::Command;
use crate::print_format::{Format, Sink, Summary, writer};

/// What a statement or command ended with.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Failed; the message is for stderr.
    Failed(String),
    Cancelled,
    Quit,
}

/// The state of one REPL or batch session.
pub struct Session {
    pub engine: Engine,
    /// The identity statements, listings and completion run as: the OS user, or the user of
    /// `--user` (src/access/identity.rs).
    pub user: ibarrow::Session,
    pub runtime: tokio::runtime::Runtime,
    pub format: Format,
    pub sink: Sink,
    pub timing: bool,
    pub max_rows: Option<usize>,
    /// Ctrl-C cancels the running query (interactive mode) instead of ending the process.
    pub cancel_on_interrupt: bool,
    /// PREPARE'd statements, by name.
    pub prepared: crate::prepared::Prepared,
    /// Where the configuration came from, for `\reload`.
    pub config: crate::ConfigLoader,
}

/// `--verbose`: errors show their kind and cause chain.
static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn set_verbose(on: bool) {
    VERBOSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The REPL's client name in the query log and the audit log.
pub const CLIENT: &str = "ibarrow-repl";

/// The engine session of the REPL: statements and listings follow `user`'s roles; `login`
/// (the OS user) is recorded as having opened it when it differs.
pub fn user_session(engine: &Engine, user: &str, login: &str) -> ibarrow::Session {
    engine.session(user, CLIENT).opened_by(login)
}

impl Session {
    pub fn run_sql(&mut self, sql: &str) -> Outcome {
        if let Some(command) = crate::prepared::parse(sql) {
            return match command {
                Ok(command) => self.run_prepared(command),
                Err(message) => Outcome::Failed(message),
            };
        }
        let user = self.user.clone();
        let planning = async move { plan(&user, sql).await };
        self.run_planned(planning, sql)
    }

    /// PREPARE, EXECUTE and DEALLOCATE (`repl/src/prepared.rs`).
    fn run_prepared(&mut self, command: Command) -> Outcome {
        match command {
            Command::Prepare { name, types, sql } => {
                let user = self.user.clone();
                match self.runtime.block_on(user.prepare(&sql)) {
                    Ok(statement) => match self.prepared.insert(name, statement, types) {
                        Ok(()) => Outcome::Done,
                        Err(message) => Outcome::Failed(message),
                    },
                    Err(err) => Outcome::Failed(error_message(&as_datafusion(err))),
                }
            }
            Command::Deallocate { name } => match self.prepared.remove(name.as_deref()) {
                Ok(()) => Outcome::Done,
                Err(message) => Outcome::Failed(message),
            },
            Command::Execute { name, values } => {
                let (statement, types) = match self.prepared.get(&name) {
                    Ok((statement, types)) => (statement.clone(), types.clone()),
                    Err(message) => return Outcome::Failed(message),
                };
                let sql = statement.sql().to_string();
                // The literals are evaluated in a context of their own that holds no table,
                // so whatever the text says, it reads nothing.
                let context = datafusion::prelude::SessionContext::new();
                let planning = async move {
                    let values = if values.is_empty() {
                        Vec::new()
                    } else {
                        let query = crate::prepared::values_query(&values, &types);
                        let batches = context.sql(&query).await?.collect().await?;
                        crate::prepared::row_values(&batches)?
                    };
                    let frame = statement.bind(values).await.map_err(as_datafusion)?;
                    statement
                        .session()
                        .physical_plan(frame)
                        .await
                        .map_err(as_datafusion)
                };
                self.run_planned(planning, &sql)
            }
        }
    }

    /// Runs what `planning` plans, streaming the result into the session's format; Ctrl-C
    /// cancels it in interactive mode.
    fn run_planned(
        &mut self,
        planning: impl std::future::Future<Output = Result<ibarrow::PhysicalQuery, DataFusionError>>,
        sql: &str,
    ) -> Outcome {
        let started = Instant::now();
        let user = self.user.clone();
        let cancellable = self.cancel_on_interrupt;
        let format = self.format;
        let max_rows = self.max_rows;
        let timing = self.timing;
        let sink = &mut self.sink;
        self.runtime.block_on(async move {
            let run = run_query(
                &user, planning, sql, format, sink, max_rows, timing, started,
            );
            if !cancellable {
                return run.await;
            }
            tokio::select! {
                outcome = run => outcome,
                _ = tokio::signal::ctrl_c() => Outcome::Cancelled,
            }
        })
    }

    /// Runs a statement whose result is built here (meta-commands), in the session's format.
    pub fn print_batch(&mut self, batch: RecordBatch) -> Outcome {
        let result =
            writer(self.format, &mut self.sink, batch.schema(), self.max_rows).and_then(|mut w| {
                w.write(&batch)?;
                w.finish(&Summary { elapsed: None })
            });
        match result {
            Ok(()) => Outcome::Done,
            Err(message) => Outcome::Failed(message),
        }
    }
}

/// Runs the query `planning` plans (its text `sql`), writing its result to `sink`; a progress
/// line is shown while it runs.
#[allow(clippy::too_many_arguments)]
async fn run_query(
    session: &ibarrow::Session,
    planning: impl std::future::Future<Output = Result<ibarrow::PhysicalQuery, DataFusionError>>,
    sql: &str,
    format: Format,
    sink: &mut Sink,
    max_rows: Option<usize>,
    timing: bool,
    started: Instant,
) -> Outcome {
    // A session of the engine, so the REPL gets the same input checks, rate limits and
    // query monitoring as every other caller.
    let query = match planning.await {
        Ok(query) => query,
        Err(err) => return Outcome::Failed(error_message(&err)),
    };
    let plan = Arc::clone(query.plan());
    // Stops (and clears its line) when dropped: at the end, or when Ctrl-C drops the query.
    let _progress = Progress::start(Arc::clone(&plan), started);
    let mut stream = match session.execute_plan(query, sql) {
        Ok(stream) => stream,
        Err(err) => return Outcome::Failed(error_message(&as_datafusion(err))),
    };
    let mut out = match writer(format, sink, plan.schema(), max_rows) {
        Ok(out) => out,
        Err(message) => return Outcome::Failed(message),
    };
    while let Some(batch) = stream.next().await {
        let written = match batch {
            Ok(batch) => out.write(&batch),
            Err(err) => Err(error_message(&err)),
        };
        if let Err(message) = written {
            return Outcome::Failed(message);
        }
    }
    let elapsed = started.elapsed();
    let summary = Summary {
        elapsed: timing.then_some(elapsed),
    };
    match out.finish(&summary) {
        Ok(()) => {
            if timing && format != Format::Table {
                eprintln!("Time: {:.3} s", elapsed.as_secs_f64());
            }
            Outcome::Done
        }
        Err(message) => Outcome::Failed(message),
    }
}

/// The message of a failed query: the ibarrow error itself (which names the source and the
/// remote statement) rather than DataFusion's wrapping of it.
pub fn error_message(err: &DataFusionError) -> String {
    let message = short_message(err);
    if !VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
        return message;
    }
    let mut lines = vec![
        message,
        format!(
            "  kind: {}",
            ibarrow::ErrorKind::of_datafusion(err).as_str()
        ),
    ];
    let mut cause = std::error::Error::source(err);
    while let Some(err) = cause {
        let text = err.to_string();
        if !lines.iter().any(|line| line.contains(&text)) {
            lines.push(format!("  caused by: {text}"));
        }
        cause = err.source();
    }
    lines.join("\n")
}

/// The error's message without DataFusion's wrappers.
fn short_message(err: &DataFusionError) -> String {
    match err {
        DataFusionError::External(inner) => inner.to_string(),
        DataFusionError::Shared(inner) => short_message(inner),
        DataFusionError::Context(context, inner) => {
            format!("{context}: {}", short_message(inner))
        }
        DataFusionError::ArrowError(inner, _) => match inner.as_ref() {
            arrow::error::ArrowError::ExternalError(e) => e.to_string(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// A line on stderr with the rows fetched from the databases so far, for queries running
/// longer than a second, when stderr is a terminal.
struct Progress {
    done: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

const PROGRESS_AFTER: Duration = Duration::from_secs(1);

impl Progress {
    fn start(plan: Arc<dyn ExecutionPlan>, started: Instant) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self { done, task: None };
        }
        let flag = Arc::clone(&done);
        let task = tokio::spawn(async move {
            tokio::time::sleep(PROGRESS_AFTER.saturating_sub(started.elapsed())).await;
            while !flag.load(Ordering::Relaxed) {
                let rows = remote_rows(plan.as_ref());
                eprint!(
                    "\r\x1b[K{} rows fetched, {:.1} s",
                    rows,
                    started.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self {
            done,
            task: Some(task),
        }
    }
}

// Also runs when Ctrl-C drops the query midway.
impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.abort();
            eprint!("\r\x1b[K");
        }
    }
}

async fn plan(
    session: &ibarrow::Session,
    sql: &str,
) -> Result<ibarrow::PhysicalQuery, DataFusionError> {
    let frame = session.sql(sql).await.map_err(as_datafusion)?;
    session.physical_plan(frame).await.map_err(as_datafusion)
}

pub fn as_datafusion(err: ibarrow::Error) -> DataFusionError {
    match err {
        ibarrow::Error::DataFusion(err) => err,
        other => DataFusionError::External(Box::new(other)),
    }
}

/// Rows delivered so far by the plan's remote scans.
fn remote_rows(plan: &dyn ExecutionPlan) -> usize {
    let own = plan
        .downcast_ref::<OdbcExec>()
        .and_then(|exec| exec.metrics())
        .and_then(|m| m.output_rows())
        .unwrap_or(0);
    own + plan
        .children()
        .into_iter()
        .map(|child| remote_rows(child.as_ref()))
        .sum::<usize>()
}
