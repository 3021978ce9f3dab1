//! The reading side of a backend connection: reading bytes, finding reply boundaries with
//! the [`ReplyScanner`], and handing each reply to the batch that is owed it (or, for
//! pub/sub messages, invalidations and MONITOR lines, to the client that owns the connection).
//! Large replies are forwarded before they are complete, so a multi-megabyte value is never
//! held whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use super::*;

impl Driver<'_> {
    pub(super) fn read(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnError> {
        self.rbuf.reserve(READ_CHUNK);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
            Poll::Ready(Ok(0)) => Err(ConnError::Closed),
            Poll::Ready(Ok(_)) => {
                self.on_bytes()?;
                Ok(true)
            }
            Poll::Ready(Err(e)) => Err(e.into()),
            Poll::Pending => Ok(false),
        }
    }

    /// Matches every complete frame in the read buffer to its batch.
    fn on_bytes(&mut self) -> Result<(), ConnError> {
        let mut at = 0;
        self.frames.clear();
        loop {
            let info = self
                .scanner
                .next(&self.rbuf[at..])
                .map_err(|_| ConnError::Protocol("malformed reply"))?;
            let Some(info) = info else {
                at = self.maybe_stream(at)?;
                break;
            };
            let range = at..at + info.len;
            at = range.end;
            if self.is_unsolicited(&info, &self.rbuf[range.clone()]) {
                self.deliver_run();
                self.deliver_oob(range);
                continue;
            }
            if self.pending.front().is_some_and(|p| p.to.is_none()) {
                let acked = durable::acked(&self.rbuf[range]);
                self.on_wait_reply(acked);
                continue;
            }
            let released = self
                .superseded
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire));
            let refused = info.kind == b'-' && is_refusal(&self.rbuf[range.clone()], released);
            if refused {
                self.deliver_run();
            }
            let Some(front) = self.pending.front_mut() else {
                return Err(ConnError::Protocol("reply without a request"));
            };
            front.got += 1;
            if refused {
                if let Some(to) = &front.to {
                    to.refuse(&self.rbuf[range]);
                }
            } else {
                self.frames.push(range);
            }
            if front.got >= front.expect {
                self.deliver_run();
                self.complete_front();
            }
        }
        self.deliver_run();
        self.rbuf.advance(at);
        if self.pending.front().is_some_and(|p| p.timed) {
            self.arm_timer();
        } else {
            self.timer_armed = false;
        }
        Ok(())
    }

    /// Forwards the scanned part of a large unfinished reply.
    fn maybe_stream(&mut self, at: usize) -> Result<usize, ConnError> {
        let scanned = self.scanner.scanned();
        let streamable = self.pending.front().is_some_and(durable::streamable)
            && self.scanner.kind().is_some_and(|k| k != b'>')
            && scanned >= STREAM_THRESHOLD;
        if !streamable {
            return Ok(at);
        }
        self.deliver_run();
        if let Some(to) = self.pending.front().and_then(|p| p.to.as_ref()) {
            to.deliver(&self.rbuf, &[], Some(at..at + scanned));
        }
        self.scanner.consumed(scanned);
        Ok(at + scanned)
    }

    fn deliver_run(&mut self) {
        if self.frames.is_empty() {
            return;
        }
        if let Some(to) = self.pending.front().and_then(|p| p.to.as_ref()) {
            to.deliver(&self.rbuf, &self.frames, None);
        }
        self.frames.clear();
    }

    fn complete_front(&mut self) {
        let Some(done) = self.pending.pop_front() else {
            return;
        };
        self.idle_mode = done.mode;
        match done.to {
            Some(to) if to.durability().is_some() => self.awaiting.push_back(to),
            Some(to) => to.finish(),
            None => {}
        }
    }

    fn deliver_oob(&mut self, range: std::ops::Range<usize>) {
        let bytes = &self.rbuf[range];
        match (
            self.pending.front().and_then(|p| p.to.as_ref()),
            &self.idle_owner,
        ) {
            (Some(to), _) => to.deliver_oob(bytes),
            (None, Some(owner)) => deliver_oob_idle(owner, bytes),
            // A shared connection has no owner for unsolicited frames: nothing can want them.
            (None, None) => {}
        }
    }

    fn is_unsolicited(&self, info: &ReplyInfo, frame: &[u8]) -> bool {
        let mode = self.pending.front().map_or(self.idle_mode, |p| p.mode);
        // A frame forwarded in pieces is never a message (see `maybe_stream`).
        let first = info
            .first
            .filter(|_| info.consumed == 0)
            .and_then(|(s, e)| frame.get(s..e));
        match info.kind {
            b'>' => !first.is_some_and(is_subscription_reply),
            b'*' if mode == ReplyMode::PubSub => first.is_some_and(is_message),
            _ => mode == ReplyMode::Monitor && self.pending.is_empty(),
        }
    }
}

/// Errors Redis raises before running a command (the command had no effect, whatever it
/// was), which the session may answer by sending it again elsewhere. `-UNBLOCKED` only when a
/// failover released the client: Redis releasing blocked clients of a master turned replica,
/// or, on a connection to a superseded node (`released`), the answer to the proxy's own
/// `CLIENT UNBLOCK ... ERROR` (sent when it moves a blocked client to a new master). A
/// client's own `CLIENT UNBLOCK` and Redis's other `-UNBLOCKED` errors (a stream deleted under
/// a blocked `XREADGROUP`) are the command's outcome and go to the client as they are.
const REFUSALS: [&[u8]; 6] = [
    b"-READONLY ",
    b"-MASTERDOWN ",
    b"-NOREPLICAS ",
    b"-LOADING ",
    b"-UNBLOCKED force unblock from blocking operation, instance state changed",
    b"-NOSCRIPT ",
];

/// The proxy's own release of a client blocked on a superseded node.
const RELEASED: &[u8] = b"-UNBLOCKED client unblocked via CLIENT UNBLOCK";

pub(super) fn is_refusal(frame: &[u8], released: bool) -> bool {
    REFUSALS.iter().any(|r| frame.starts_with(r)) || (released && frame.starts_with(RELEASED))
}

/// Pub/sub confirmations: replies owed to (P|S)(UN)SUBSCRIBE commands.
fn is_subscription_reply(first: &[u8]) -> bool {
    const KINDS: [&[u8]; 6] = [
        b"subscribe",
        b"psubscribe",
        b"ssubscribe",
        b"unsubscribe",
        b"punsubscribe",
        b"sunsubscribe",
    ];
    KINDS.iter().any(|k| first.eq_ignore_ascii_case(k))
}

/// Pub/sub deliveries.
fn is_message(first: &[u8]) -> bool {
    first.eq_ignore_ascii_case(b"message")
        || first.eq_ignore_ascii_case(b"pmessage")
        || first.eq_ignore_ascii_case(b"smessage")
}
