//! [`ReplyTo`]: what a connection holds for one dispatch, to deliver its replies, refusals
//! and failure, and the replicas' verdict on its durable writes.

use std::ops::Range;
use std::sync::Arc;

use super::{FaultKind, Inbox, ReplyTo};
use crate::config::Durability;

impl ReplyTo {
    /// Entry id (for out-of-band ordering).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Delivers complete frames (`frames`, ranges into `buf`) and optionally the finished part
    /// of an unfinished frame (`partial`).
    pub fn deliver(&self, buf: &[u8], frames: &[Range<usize>], partial: Option<Range<usize>>) {
        self.inbox.deliver(self.id, buf, frames, partial);
    }

    /// Delivers a frame in which Redis refused a command before running it.
    pub fn refuse(&self, frame: &[u8]) {
        self.inbox.refuse(self.id, frame);
    }

    /// Delivers an out-of-band frame in arrival order relative to this entry's replies.
    pub fn deliver_oob(&self, bytes: &[u8]) {
        self.inbox.deliver_oob(Some(self.id), bytes);
    }

    /// All frames arrived: nothing to report on drop.
    pub fn finish(mut self) {
        self.finished = true;
    }

    /// The durability its durable writes wait for (`None`: no durable write in it).
    pub fn durability(&self) -> Option<Durability> {
        self.durability
    }

    /// All frames arrived and `acked` replicas acknowledged the writes before them (`None`:
    /// the answer will not come).
    pub fn confirm(mut self, acked: Option<u32>) {
        self.finished = true;
        self.inbox.confirm(self.id, acked);
    }

    /// The connection failed with the entry incomplete.
    pub fn fail(mut self, kind: FaultKind) {
        self.finished = true;
        self.inbox.fail(self.id, kind);
    }

    /// The inbox this entry belongs to.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Whether the client is gone (its replies are no longer wanted).
    pub fn abandoned(&self) -> bool {
        self.inbox.is_closed()
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if !self.finished {
            self.inbox.fail(self.id, FaultKind::NotSent);
        }
    }
}

/// Out-of-band delivery for a connection with no open entry (a subscriber between commands).
pub fn deliver_oob_idle(inbox: &Inbox, bytes: &[u8]) {
    inbox.deliver_oob(None, bytes);
}
