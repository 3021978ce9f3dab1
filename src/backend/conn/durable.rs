//! Durable writes on a connection. After the batches that carry durable writes, the
//! connection writes one `WAIT replicas timeout` of its own, in the same write, so one
//! replication round trip covers every write of every client before it (Redis counts, for
//! `WAIT`, the replication offset of the connection's last write). Those batches' replies
//! arrive as usual but stay in their inboxes (see `inbox::confirm`); when `WAIT` answers, the
//! driver tells each of them how many replicas acknowledged. Batches wanting different
//! settings get a `WAIT` each, in order.
//!
//! At most one `WAIT` is outstanding: Redis runs the commands behind a blocked `WAIT` only
//! once it returns, so a `WAIT` per write would make every batch pay a whole replication
//! round trip in turn. Batches written meanwhile run as soon as it returns, and the next
//! `WAIT`, sent when its answer arrives, covers all of them.

use bytes::Bytes;

use super::{Driver, Pending, ReplyMode};
use crate::config::Durability;
use crate::resp::Request;

/// The `WAIT` command for `d`.
fn wait_command(d: Durability) -> Bytes {
    let replicas = d.replicas.to_string();
    let timeout = d.timeout_ms().to_string();
    Request::from_args(&["WAIT", replicas.as_str(), timeout.as_str()])
        .bytes()
        .clone()
}

/// Replicas acknowledging, from `WAIT`'s reply (`None` for an error: a node that became a
/// replica, or a user not allowed to run `WAIT`; logged).
pub(super) fn acked(frame: &[u8]) -> Option<u32> {
    let n = frame
        .strip_prefix(b":")
        .and_then(|f| f.strip_suffix(b"\r\n"))
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok());
    if n.is_none() {
        tracing::warn!(
            reply = %String::from_utf8_lossy(frame).trim_end(),
            "WAIT refused: durable writes are answered as not confirmed"
        );
    }
    n
}

impl Driver<'_> {
    /// Notes a batch about to be queued: one with durable writes needs a `WAIT` after it.
    pub(super) fn owe_wait(&mut self, d: Option<Durability>) {
        let Some(d) = d else {
            return;
        };
        if let Some(before) = self.owed.filter(|o| *o != d) {
            self.push_wait(before);
        }
        self.owed = Some(d);
    }

    /// Queues the `WAIT` owed, if any and none is outstanding, behind everything queued so
    /// far.
    pub(super) fn settle_owed(&mut self) {
        if self.waits_out > 0 {
            return;
        }
        if let Some(d) = self.owed.take() {
            self.push_wait(d);
        }
    }

    fn push_wait(&mut self, d: Durability) {
        let bytes = wait_command(d);
        let mode = self.pending.back().map_or(self.idle_mode, |p| p.mode);
        self.small.extend_from_slice(&bytes);
        self.queued += bytes.len();
        self.enqueued += bytes.len() as u64;
        if self.pending.is_empty() {
            self.arm_timer();
        }
        self.waits_out += 1;
        self.pending.push_back(Pending {
            to: None,
            expect: 1,
            got: 0,
            mode,
            timed: true,
            start_at: self.enqueued - bytes.len() as u64,
            end_at: self.enqueued,
        });
    }

    /// `WAIT`'s reply arrived (`acked` replicas): every batch answered before it learns its
    /// outcome.
    pub(super) fn on_wait_reply(&mut self, acked: Option<u32>) {
        for to in self.awaiting.drain(..) {
            to.confirm(acked);
        }
        self.pending.pop_front();
        self.waits_out = self.waits_out.saturating_sub(1);
    }

    /// The connection ends: answers never to come.
    pub(super) fn fail_awaiting(&mut self) {
        self.owed = None;
        for to in self.awaiting.drain(..) {
            to.confirm(None);
        }
    }
}

/// Whether `mode` allows forwarding a reply in pieces for `p` (never for a durable batch,
/// whose replies are held whole until the replicas answer, nor for the proxy's `WAIT`).
pub(super) fn streamable(p: &Pending) -> bool {
    p.mode == ReplyMode::Counted && p.to.as_ref().is_some_and(|t| t.durability().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wait_command_and_reply() {
        let d = Durability {
            replicas: 2,
            timeout: Duration::from_millis(250),
        };
        assert_eq!(
            &wait_command(d)[..],
            b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$3\r\n250\r\n"
        );
        assert_eq!(acked(b":1\r\n"), Some(1));
        assert_eq!(
            acked(b"-ERR WAIT cannot be used with replica instances\r\n"),
            None
        );
    }
}
