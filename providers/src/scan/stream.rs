//! A partition's stream: the batches its call sends through a channel, then the call's
//! outcome.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::error::OdbcError;

pub(super) type BatchSender = mpsc::Sender<Result<RecordBatch>>;

pub(super) type BatchStream = futures::stream::BoxStream<'static, Result<RecordBatch>>;

/// The batches a scan's call sends through `receiver`, then the call's error if it failed
/// (a timeout ends the stream at once, whatever the fetch thread is doing). Dropping the
/// stream drops the call, which cancels the statement if it does not stop by itself.
pub(super) fn batches_of_call(
    receiver: mpsc::Receiver<Result<RecordBatch>>,
    call: impl std::future::Future<Output = Result<(), OdbcError>> + Send + 'static,
) -> BatchStream {
    enum State {
        Running(futures::future::BoxFuture<'static, Result<(), OdbcError>>),
        /// The call succeeded: what is left in the channel, then the end.
        Draining,
        Done,
    }
    futures::stream::unfold(
        (receiver, State::Running(Box::pin(call))),
        |(mut receiver, state)| async move {
            let mut running = match state {
                State::Running(running) => running,
                State::Draining => {
                    let batch = receiver.recv().await?;
                    return Some((batch, (receiver, State::Draining)));
                }
                State::Done => return None,
            };
            let outcome = tokio::select! {
                biased;
                batch = receiver.recv() => match batch {
                    Some(batch) => return Some((batch, (receiver, State::Running(running)))),
                    // The fetch thread let go of its sender: the call is ending.
                    None => running.await,
                },
                outcome = &mut running => outcome,
            };
            match outcome {
                Ok(()) => {
                    let batch = receiver.recv().await?;
                    Some((batch, (receiver, State::Draining)))
                }
                Err(err) => {
                    // A fetch thread still sending (past a deadline) stops at its next batch.
                    receiver.close();
                    Some((Err(err.into()), (receiver, State::Done)))
                }
            }
        },
    )
    .boxed()
}
