//! Durable writes in the inbox. An entry carrying durable writes keeps every reply in its own
//! buffer, even at the front, until its connection reports how many replicas acknowledged
//! them (the answer to the `WAIT` the connection sent after them, see `backend::durable`).
//! Enough replicas: the replies leave as Redis sent them. Too few, or the connection lost
//! before the answer: each durable write that succeeded is answered with the
//! [`ClientError::Unconfirmed`] error instead (it ran on the master, it may be lost), while
//! errors, reads and the other replies of the entry leave unchanged. Nothing is re-sent.

use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::config::Durability;
use crate::resp::reply::ClientError;

/// What an entry with durable writes waits for.
#[derive(Debug)]
pub(super) struct Awaiting {
    /// Frame numbers of the durable writes' replies, in order, with whether the command is a
    /// transaction block (whose null reply means that nothing ran).
    targets: Vec<(u32, bool)>,
    next: usize,
    /// Where, in the entry's held bytes, the replies of durable writes that succeeded are.
    writes: Vec<Range<usize>>,
    /// When the last reply arrived (the added latency runs from there).
    replied_at: Option<Instant>,
}

impl Awaiting {
    /// The wait for the durable writes among a batch's commands, given in order as (reply
    /// frames, replies to the client, durable); `None` when there are none.
    pub(super) fn new(cmds: impl IntoIterator<Item = (u32, u32, bool)>) -> Option<Self> {
        let mut targets = Vec::new();
        let mut end = 0u32;
        for (frames, replies, confirm) in cmds {
            end += frames;
            if confirm && frames > 0 {
                targets.push((end - 1, frames > replies));
            }
        }
        (!targets.is_empty()).then(|| Self {
            targets,
            next: 0,
            writes: Vec::new(),
            replied_at: None,
        })
    }

    /// Notes reply frame number `index`, stored at `at` in the held bytes.
    pub(super) fn observe(&mut self, index: u32, at: Range<usize>, frame: &[u8]) {
        while self.targets.get(self.next).is_some_and(|t| t.0 < index) {
            self.next += 1;
        }
        let Some(&(target, block)) = self.targets.get(self.next) else {
            return;
        };
        if target == index && applied(frame, block) {
            self.writes.push(at);
        }
    }

    /// Every reply arrived: the wait for the replicas starts.
    pub(super) fn replied(&mut self) {
        self.replied_at.get_or_insert_with(Instant::now);
    }
}

/// Whether a reply says that its write ran: not an error, and for a transaction block not
/// the null of an EXEC aborted by WATCH.
fn applied(frame: &[u8], block: bool) -> bool {
    match frame.first() {
        Some(b'-' | b'!') => false,
        _ => !(block && (frame == b"*-1\r\n" || frame == b"_\r\n")),
    }
}

impl Awaiting {
    /// Ends the wait with `acked` replicas acknowledging (`None`: unknown, the connection
    /// was lost), for writes asked to be `durable`. Returns `held` rewritten when some
    /// durable write goes unconfirmed.
    pub(super) fn settle(
        self,
        durable: Durability,
        acked: Option<u32>,
        held: &[u8],
    ) -> Option<BytesMut> {
        let confirmed = acked.is_some_and(|n| n >= durable.replicas);
        let waited = self.replied_at.map_or(Duration::ZERO, |t| t.elapsed());
        crate::metrics::durable_writes(self.writes.len(), confirmed, waited);
        if confirmed || self.writes.is_empty() {
            return None;
        }
        let error = ClientError::Unconfirmed {
            replicas: durable.replicas,
            acked,
            timeout_ms: durable.timeout_ms(),
        }
        .to_bytes();
        Some(rewrite(held, &self.writes, &error))
    }
}

/// `held` with every range of `writes` replaced by `error`.
fn rewrite(held: &[u8], writes: &[Range<usize>], error: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(held.len() + writes.len() * error.len());
    let mut at = 0;
    for w in writes {
        out.extend_from_slice(&held[at..w.start]);
        out.extend_from_slice(error);
        at = w.end;
    }
    out.extend_from_slice(&held[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(frames: u32, replies: u32, confirm: bool) -> (u32, u32, bool) {
        (frames, replies, confirm)
    }

    #[test]
    fn only_durable_writes_are_targets() {
        let cmds = [sent(1, 1, false), sent(1, 1, true), sent(3, 1, true)];
        let w = Awaiting::new(cmds).unwrap();
        assert_eq!(w.targets, vec![(1, false), (4, true)]);
        assert!(Awaiting::new([sent(1, 1, false)]).is_none());
    }

    #[test]
    fn errors_and_aborted_blocks_are_not_rewritten() {
        let cmds = [sent(1, 1, true), sent(1, 1, true), sent(2, 1, true)];
        let mut w = Awaiting::new(cmds).unwrap();
        w.observe(0, 0..5, b"+OK\r\n");
        w.observe(1, 5..12, b"-ERR x\r\n");
        w.observe(2, 12..17, b"+OK\r\n");
        w.observe(3, 17..22, b"*-1\r\n");
        assert_eq!(w.writes, vec![0..5]);
    }

    #[test]
    fn rewrite_replaces_only_the_ranges() {
        let held = b"+OK\r\n$1\r\nx\r\n:3\r\n";
        let out = rewrite(held, &[0..5, 12..16], b"-E\r\n");
        assert_eq!(&out[..], b"-E\r\n$1\r\nx\r\n-E\r\n");
    }
}
