//! The meeting point of one client session and the backend connections serving it: replies
//! arrive here from any connection and leave in the client's request order.
//!
//! The session registers one entry per dispatch (a run of commands sent together) or per
//! reply it produces itself, in request order. Connections deliver reply frames to an entry by
//! id. Bytes for the entry at the front go straight to the output buffer; bytes for entries
//! further back wait inside their entry until everything before them is complete. An entry
//! that fails (its connection died, or Redis refused a command before running it) stops at the
//! front until the session decides what to do with the commands it carried, so a failure can
//! never reorder or drop a reply.
//!
//! Every dispatched entry is answered exactly once: a [`ReplyTo`] dropped before its entry
//! completed marks the entry as not sent, which the session turns into a retry or an error.
//!
//! Memory: everything buffered here counts against the client's output buffer limit; past it
//! the inbox stops storing and flags the overflow, and the session closes the client. A
//! connection never waits for a client.

mod confirm;
mod entry;
mod reply_to;

pub use reply_to::deliver_oob_idle;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use tokio::sync::Notify;

use crate::config::Durability;

pub use entry::{Dispatch, Fault, FaultKind, Resolution, Sent, Tail};
use entry::{Entry, State as EntryState};

#[derive(Debug, Default)]
struct State {
    /// Bytes ready for the client, in order.
    out: BytesMut,
    /// Entries not yet released, in request order.
    queue: VecDeque<Entry>,
    next_id: u64,
    /// Bytes held in `out`, in entries and in refusal tails.
    buffered: usize,
    overflow: bool,
    closed: bool,
}

/// Reply slots of one client.
#[derive(Debug)]
pub struct Inbox {
    state: Mutex<State>,
    notify: Notify,
    /// Output buffer limit in bytes (a subscriber may get a different one).
    limit: AtomicUsize,
    /// Entries faulted and not yet resolved (read without the lock on the hot path).
    faults: AtomicUsize,
    /// Dispatched entries not yet released, and their payload bytes.
    dispatched: AtomicUsize,
    dispatched_bytes: AtomicUsize,
}

/// Where a connection sends the replies of one dispatch. Dropping it before the entry is
/// complete marks the entry as not sent.
#[derive(Debug)]
pub struct ReplyTo {
    inbox: Arc<Inbox>,
    id: u64,
    finished: bool,
    /// Its durable writes wait for this many replicas (see [`confirm`]).
    durability: Option<Durability>,
}

/// What a session takes from its inbox in one go.
#[derive(Debug, Default)]
pub struct Taken {
    /// Bytes to write to the client.
    pub out: BytesMut,
    /// The front entry stopped and is settled: the session must resolve it.
    pub fault: Option<Fault>,
    /// The output buffer limit was exceeded.
    pub overflow: bool,
}

// === impl Inbox ===

impl Inbox {
    /// A new inbox with an output buffer limit of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            limit: AtomicUsize::new(limit),
            faults: AtomicUsize::new(0),
            dispatched: AtomicUsize::new(0),
            dispatched_bytes: AtomicUsize::new(0),
        })
    }

    /// Changes the output buffer limit (a client that subscribes gets the pub/sub limit).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Whether an entry is faulted and waits for the session.
    pub fn has_fault(&self) -> bool {
        self.faults.load(Ordering::Acquire) > 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere while holding it; the state is plain data
        // that stays consistent between statements, so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until something was delivered, completed or failed.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    fn new_id(st: &mut State) -> u64 {
        let id = st.next_id;
        st.next_id += 1;
        id
    }

    /// Appends a reply the proxy produced itself.
    pub fn push_local(&self, bytes: &[u8]) {
        let mut st = self.lock();
        if st.queue.is_empty() {
            st.out.extend_from_slice(bytes);
        } else {
            let id = Self::new_id(&mut st);
            st.queue.push_back(Entry::local(id, bytes));
        }
        st.buffered += bytes.len();
        self.check_limit(&mut st);
    }

    /// Registers a dispatch; the returned [`ReplyTo`] goes to the connection that sends it.
    pub fn push_dispatch(self: &Arc<Self>, d: Dispatch) -> ReplyTo {
        self.count_in(&d);
        let mut st = self.lock();
        let id = Self::new_id(&mut st);
        let entry = Entry::dispatched(id, d);
        let durability = entry.durability();
        st.queue.push_back(entry);
        self.reply_to(id, durability)
    }

    fn count_in(&self, d: &Dispatch) {
        self.dispatched.fetch_add(1, Ordering::AcqRel);
        self.dispatched_bytes
            .fetch_add(d.payload.len(), Ordering::AcqRel);
    }

    fn count_out(&self, e: &Entry) {
        if e.expect > 0 {
            self.dispatched.fetch_sub(1, Ordering::AcqRel);
            self.dispatched_bytes
                .fetch_sub(e.payload.len(), Ordering::AcqRel);
        }
    }

    fn reply_to(self: &Arc<Self>, id: u64, durability: Option<Durability>) -> ReplyTo {
        ReplyTo {
            inbox: Arc::clone(self),
            id,
            finished: false,
            durability,
        }
    }

    /// Replaces the faulted front entry `id` with `items`, in order, in one step (so that no
    /// reply from behind can overtake them). Returns one [`ReplyTo`] per dispatch item.
    pub fn resolve(self: &Arc<Self>, id: u64, items: Vec<Resolution>) -> Vec<ReplyTo> {
        let mut st = self.lock();
        let mut tos = Vec::new();
        if st.queue.front().map(|e| e.id) != Some(id) {
            return tos;
        }
        if let Some(e) = st.queue.pop_front() {
            self.count_out(&e);
            if e.faulted() {
                self.faults.fetch_sub(1, Ordering::AcqRel);
            }
            st.buffered = st
                .buffered
                .saturating_sub(e.tail.iter().map(|t| t.bytes.len()).sum::<usize>());
        }
        let mut fresh = Vec::with_capacity(items.len());
        for item in items {
            let id = Self::new_id(&mut st);
            match item {
                Resolution::Local(bytes) => {
                    st.buffered += bytes.len();
                    fresh.push(Entry::local(id, &bytes));
                }
                Resolution::Dispatch(d) => {
                    self.count_in(&d);
                    let entry = Entry::dispatched(id, d);
                    tos.push(self.reply_to(id, entry.durability()));
                    fresh.push(entry);
                }
            }
        }
        for e in fresh.into_iter().rev() {
            st.queue.push_front(e);
        }
        self.release(&mut st);
        self.check_limit(&mut st);
        drop(st);
        self.notify.notify_one();
        tos
    }

    /// Takes the output ready for the client and the faulted front entry, if it is settled.
    pub fn take(&self) -> Taken {
        let mut st = self.lock();
        self.release(&mut st);
        let out = st.out.split();
        st.buffered = st.buffered.saturating_sub(out.len());
        let fault = st
            .queue
            .front()
            .filter(|e| e.settled())
            .and_then(Entry::fault);
        Taken {
            out,
            fault,
            overflow: st.overflow,
        }
    }

    /// Dispatched entries not yet released to the client (waiting for replies, for the
    /// session when faulted, or behind an earlier entry).
    pub fn in_flight(&self) -> usize {
        self.dispatched.load(Ordering::Acquire)
    }

    /// Payload bytes of those entries.
    pub fn in_flight_bytes(&self) -> usize {
        self.dispatched_bytes.load(Ordering::Acquire)
    }

    /// Whether sending on connection `conn` now could run a command before an earlier one:
    /// an entry is faulted (it will be re-sent or answered first), or an entry is still open
    /// on another connection. The session sends only when this is false, which keeps each
    /// client's commands executing in the order it sent them.
    pub fn busy_elsewhere(&self, conn: u64) -> bool {
        self.lock()
            .queue
            .iter()
            .any(|e| e.faulted() || (e.open() && e.conn != conn))
    }

    /// Marks the inbox as abandoned: later deliveries are dropped.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.queue.clear();
        self.dispatched.store(0, Ordering::Release);
        self.dispatched_bytes.store(0, Ordering::Release);
        st.out = BytesMut::new();
        st.buffered = 0;
        self.faults.store(0, Ordering::Release);
    }

    /// Whether the session is gone.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Moves completed front entries to the output.
    fn release(&self, st: &mut State) {
        while let Some(front) = st.queue.front_mut() {
            if front.confirm.is_some() {
                // Durable writes: nothing of the entry leaves before the replicas answered.
                return;
            }
            if !front.held.is_empty() {
                let held = front.held.split();
                st.out.extend_from_slice(&held);
            }
            if !front.done() {
                return;
            }
            if let Some(e) = st.queue.pop_front() {
                self.count_out(&e);
                record_duration(&e);
            }
        }
    }

    fn check_limit(&self, st: &mut State) {
        if st.buffered > self.limit.load(Ordering::Relaxed) && !st.overflow {
            st.overflow = true;
            self.notify.notify_one();
        }
    }

    fn deliver(&self, id: u64, buf: &[u8], frames: &[Range<usize>], partial: Option<Range<usize>>) {
        let mut st = self.lock();
        if st.closed || st.overflow {
            return;
        }
        let Some(pos) = st.queue.iter().position(|e| e.id == id) else {
            return;
        };
        let st = &mut *st;
        let entry = &mut st.queue[pos];
        // Straight to the output only when nothing of this entry is still held back.
        let direct = pos == 0 && entry.held.is_empty() && entry.confirm.is_none();
        let mut added = 0;
        for r in frames {
            if entry.faulted() {
                added += push_tail(entry, &buf[r.clone()], false);
                continue;
            }
            let keep = entry.visible();
            let index = entry.got;
            entry.got += 1;
            if !keep {
                continue;
            }
            let frame = &buf[r.clone()];
            added += frame.len();
            if let Some(wait) = entry.confirm.as_mut() {
                let at = entry.held.len();
                wait.observe(index, at..at + frame.len(), frame);
                entry.held.extend_from_slice(frame);
            } else if direct {
                st.out.extend_from_slice(frame);
            } else {
                entry.held.extend_from_slice(frame);
            }
        }
        if entry.got >= entry.expect {
            if let Some(wait) = entry.confirm.as_mut() {
                wait.replied();
            }
        }
        if let Some(r) = partial {
            if entry.faulted() {
                entry.tail_partial.extend_from_slice(&buf[r.clone()]);
                added += r.len();
            } else if entry.visible() {
                added += r.len();
                let to = if direct { &mut st.out } else { &mut entry.held };
                to.extend_from_slice(&buf[r]);
            }
        }
        st.buffered += added;
        self.release(st);
        self.check_limit(st);
        self.notify.notify_one();
    }

    /// A refusal frame (the command did not run): the entry stops releasing replies; this and
    /// every later frame are held for the session.
    fn refuse(&self, id: u64, frame: &[u8]) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        let st = &mut *st;
        let Some(entry) = st.queue.iter_mut().find(|e| e.id == id) else {
            return;
        };
        if !entry.faulted() {
            entry.state = EntryState::Faulted(FaultKind::Refused);
            self.faults.fetch_add(1, Ordering::AcqRel);
        }
        st.buffered += push_tail(entry, frame, true);
        self.check_limit(st);
        self.notify.notify_one();
    }

    /// Out-of-band frames (pub/sub messages, invalidations, MONITOR lines) from a connection
    /// whose current entry is `current` (or none): they go out in arrival order.
    fn deliver_oob(&self, current: Option<u64>, bytes: &[u8]) {
        let mut st = self.lock();
        if st.closed || st.overflow {
            return;
        }
        let st = &mut *st;
        let pos = current.and_then(|id| st.queue.iter().position(|e| e.id == id));
        match pos {
            Some(0) if st.queue[0].held.is_empty() && st.queue[0].confirm.is_none() => {
                st.out.extend_from_slice(bytes)
            }
            Some(p) => st.queue[p].held.extend_from_slice(bytes),
            None => match st.queue.back_mut() {
                Some(last) => last.held.extend_from_slice(bytes),
                None => st.out.extend_from_slice(bytes),
            },
        }
        st.buffered += bytes.len();
        self.check_limit(st);
        self.notify.notify_one();
    }

    /// The replicas' answer for the durable writes of entry `id`: `acked` of them hold them
    /// (`None`: unknown).
    fn confirm(&self, id: u64, acked: Option<u32>) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        let st = &mut *st;
        if let Some(entry) = st.queue.iter_mut().find(|e| e.id == id) {
            let change = entry.settle(acked);
            st.buffered = st.buffered.saturating_add_signed(change);
        }
        self.release(st);
        self.check_limit(st);
        self.notify.notify_one();
    }

    fn fail(&self, id: u64, kind: FaultKind) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        let st = &mut *st;
        if let Some(entry) = st.queue.iter_mut().find(|e| e.id == id) {
            // Durable writes that got their replies ran; the replicas' answer will not come.
            let change = entry.settle(None);
            st.buffered = st.buffered.saturating_add_signed(change);
            match entry.state {
                EntryState::Open if entry.got < entry.expect => {
                    entry.state = EntryState::Faulted(kind);
                    self.faults.fetch_add(1, Ordering::AcqRel);
                }
                EntryState::Faulted(FaultKind::Refused) if entry.got < entry.expect => {
                    entry.lost_after_refusal = true;
                }
                _ => {}
            }
        }
        self.release(st);
        self.notify.notify_one();
    }
}

/// Records how long a completed dispatch took, once per command it carried.
fn record_duration(e: &Entry) {
    let Some(first) = e.cmds.first() else {
        return;
    };
    let secs = e.sent_at.elapsed().as_secs_f64();
    crate::metrics::hot().durations[first.kind.class_index()].record_many(secs, e.cmds.len());
}

/// Stores a frame received after a refusal; returns the bytes added.
fn push_tail(entry: &mut entry::Entry, frame: &[u8], refused: bool) -> usize {
    let mut bytes = std::mem::take(&mut entry.tail_partial);
    bytes.extend_from_slice(frame);
    let len = frame.len();
    entry.got += 1;
    entry.tail.push(Tail {
        bytes: bytes.freeze(),
        refused,
    });
    len
}

#[cfg(test)]
mod tests;
