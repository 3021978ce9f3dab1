//! The handle sessions and pools send batches through to a connection task.

use tokio::sync::mpsc;

use super::Outgoing;

/// A handle to send batches to a connection task.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: mpsc::Sender<Outgoing>,
}

impl Sender {
    pub(crate) fn new(tx: mpsc::Sender<Outgoing>) -> Self {
        Self { tx }
    }

    /// Sends a batch, waiting while the connection's queue is full. When the connection task
    /// is gone the batch is failed as not sent (through the dropped [`ReplyTo`]).
    pub async fn send(&self, out: Outgoing) {
        // A send error returns the batch; dropping it fails its entry as not sent. The
        // common case needs no waiting; the waiting future is boxed so that every client
        // task, which may await this, stays small.
        match self.tx.try_send(out) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(out)) => {
                let _ = Box::pin(self.tx.send(out)).await;
            }
        }
    }

    /// A slot for one batch, when the queue has room now and the connection task is alive
    /// (the synchronous path of a session: no future to build when nothing must wait).
    pub fn try_reserve(&self) -> Option<mpsc::Permit<'_, Outgoing>> {
        self.tx.try_reserve().ok()
    }

    /// Whether the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
