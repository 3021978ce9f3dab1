//! The meeting point of one client session and the backend connections serving it: replies
//! arrive here from any connection and leave in the client's request order.
//!
//! The session registers one [`Entry`] per dispatch (a run of commands sent together) or per
//! reply it produces itself, in request order. Connections deliver reply frames to an entry by
//! id. Bytes for the entry at the front go straight to the output buffer; bytes for entries
//! further back wait inside their entry until everything before them is complete. An entry
//! that fails (its connection died) stops at the front until the session decides what to do
//! with the commands it carried, so a failure can never reorder or drop a reply.
//!
//! Every dispatched entry is answered exactly once: a [`ReplyTo`] dropped before its entry
//! completed marks the entry as not sent, which the session turns into a retry or an error.
//!
//! Memory: everything buffered here counts against the client's output buffer limit; past it
//! the inbox stops storing and flags the overflow, and the session closes the client. A
//! connection never waits for a client.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::sync::Notify;

use crate::resp::command::Kind;

/// One command inside a dispatched entry, remembered so that it can be re-sent or answered
/// with an error if its connection fails.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Byte range of the command inside the entry's payload.
    pub range: Range<usize>,
    /// How the command is handled (decides whether it may be re-sent).
    pub kind: Kind,
    /// Reply frames the command produces.
    pub frames: u32,
    /// Of those, frames the client sees (the others belong to commands the proxy added).
    pub replies: u32,
}

/// Why an entry stopped before receiving all its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The payload never reached the connection's socket.
    NotSent,
    /// The payload was written, and the connection was lost before all replies arrived.
    Lost,
}

/// A stopped entry, as handed to the session. The entry stays at the front of the inbox until
/// the session calls [`Inbox::resolve`] with what replaces it.
#[derive(Debug)]
pub struct Fault {
    /// The entry.
    pub id: u64,
    /// What happened.
    pub kind: FaultKind,
    /// Frames received (and released to the client) before the fault.
    pub received: u32,
    /// The payload that was dispatched.
    pub payload: Bytes,
    /// The commands it carried, in order.
    pub cmds: SmallVec<[Sent; 1]>,
    /// Frames of the payload the client must not see (see [`Dispatch::skip`]).
    pub skip: u32,
    /// Connection it was sent on.
    pub conn: u64,
    /// How many times it was sent already.
    pub attempt: u8,
    /// Whether its replies were to be dropped.
    pub silent: bool,
}

/// What replaces a faulted entry.
#[derive(Debug)]
pub enum Resolution {
    /// A reply the proxy writes (an error, typically).
    Local(Bytes),
    /// Commands sent again.
    Dispatch(Dispatch),
}

/// How a session registers a dispatch.
#[derive(Debug)]
pub struct Dispatch {
    /// Id of the connection it is sent on (see [`Inbox::busy_elsewhere`]).
    pub conn: u64,
    /// Reply frames expected.
    pub expect: u32,
    /// Leading frames to drop instead of forwarding (replies to commands the proxy added,
    /// such as the MULTI and QUEUED replies of a transaction it buffered).
    pub skip: u32,
    /// Drop every frame (CLIENT REPLY OFF / SKIP).
    pub silent: bool,
    /// The bytes sent.
    pub payload: Bytes,
    /// The commands they carry.
    pub cmds: SmallVec<[Sent; 1]>,
    /// 0 for a first send, then 1, 2... for re-sends.
    pub attempt: u8,
}

#[derive(Debug)]
enum EntryState {
    /// Waiting for frames.
    Open,
    /// Stopped; waits for the session.
    Faulted(FaultKind),
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// Connection carrying it (0 for local replies).
    conn: u64,
    /// Frames still expected (0 for local replies).
    expect: u32,
    got: u32,
    skip: u32,
    silent: bool,
    /// Bytes waiting for this entry to reach the front.
    held: BytesMut,
    state: EntryState,
    payload: Bytes,
    cmds: SmallVec<[Sent; 1]>,
    attempt: u8,
}

impl Entry {
    fn done(&self) -> bool {
        matches!(self.state, EntryState::Open) && self.got >= self.expect
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bytes ready for the client, in order.
    out: BytesMut,
    /// Entries not yet released, in request order.
    queue: VecDeque<Entry>,
    next_id: u64,
    /// Bytes held in `out` and in entries.
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
}

/// Where a connection sends the replies of one dispatch. Dropping it before the entry is
/// complete marks the entry as not sent.
#[derive(Debug)]
pub struct ReplyTo {
    inbox: Arc<Inbox>,
    id: u64,
    finished: bool,
}

/// What a session takes from its inbox in one go.
#[derive(Debug, Default)]
pub struct Taken {
    /// Bytes to write to the client.
    pub out: BytesMut,
    /// The front entry stopped: the session must resolve it.
    pub fault: Option<Fault>,
    /// Dispatched entries still open.
    pub in_flight: usize,
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

    /// Appends a reply the proxy produced itself.
    pub fn push_local(&self, bytes: &[u8]) {
        let mut st = self.lock();
        if st.queue.is_empty() {
            st.out.extend_from_slice(bytes);
            st.buffered += bytes.len();
        } else {
            let entry = Self::local_entry(&mut st, bytes);
            st.queue.push_back(entry);
        }
        self.check_limit(&mut st);
    }

    /// Registers a dispatch; the returned [`ReplyTo`] goes to the connection that sends it.
    pub fn push_dispatch(self: &Arc<Self>, d: Dispatch) -> ReplyTo {
        let mut st = self.lock();
        let entry = Self::new_entry(&mut st, d);
        let id = entry.id;
        st.queue.push_back(entry);
        self.reply_to(id)
    }

    fn new_entry(st: &mut State, d: Dispatch) -> Entry {
        let id = st.next_id;
        st.next_id += 1;
        Entry {
            id,
            conn: d.conn,
            expect: d.expect,
            got: 0,
            skip: d.skip,
            silent: d.silent,
            held: BytesMut::new(),
            state: EntryState::Open,
            payload: d.payload,
            cmds: d.cmds,
            attempt: d.attempt,
        }
    }

    fn local_entry(st: &mut State, bytes: &[u8]) -> Entry {
        let id = st.next_id;
        st.next_id += 1;
        st.buffered += bytes.len();
        Entry {
            id,
            conn: 0,
            expect: 0,
            got: 0,
            skip: 0,
            silent: false,
            held: BytesMut::from(bytes),
            state: EntryState::Open,
            payload: Bytes::new(),
            cmds: SmallVec::new(),
            attempt: 0,
        }
    }

    fn reply_to(self: &Arc<Self>, id: u64) -> ReplyTo {
        ReplyTo {
            inbox: Arc::clone(self),
            id,
            finished: false,
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
            if matches!(e.state, EntryState::Faulted(_)) {
                self.faults.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let mut fresh = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Resolution::Local(bytes) => fresh.push(Self::local_entry(&mut st, &bytes)),
                Resolution::Dispatch(d) => {
                    let e = Self::new_entry(&mut st, d);
                    tos.push(self.reply_to(e.id));
                    fresh.push(e);
                }
            }
        }
        for e in fresh.into_iter().rev() {
            st.queue.push_front(e);
        }
        Self::release(&mut st);
        self.check_limit(&mut st);
        drop(st);
        self.notify.notify_one();
        tos
    }

    /// Takes the output ready for the client and the faulted front entry, if any.
    pub fn take(&self) -> Taken {
        let mut st = self.lock();
        Self::release(&mut st);
        let out = st.out.split();
        st.buffered -= out.len();
        let fault = match st.queue.front() {
            Some(
                e @ Entry {
                    state: EntryState::Faulted(kind),
                    ..
                },
            ) => Some(Fault {
                id: e.id,
                kind: *kind,
                received: e.got,
                payload: e.payload.clone(),
                cmds: e.cmds.clone(),
                skip: e.skip,
                conn: e.conn,
                attempt: e.attempt,
                silent: e.silent,
            }),
            _ => None,
        };
        let in_flight = st.queue.iter().filter(|e| e.expect > 0).count();
        Taken {
            out,
            fault,
            in_flight,
            overflow: st.overflow,
        }
    }

    /// Dispatched entries still waiting for replies.
    pub fn in_flight(&self) -> usize {
        self.lock().queue.iter().filter(|e| e.expect > 0).count()
    }

    /// Whether sending on connection `conn` now could run a command before an earlier one:
    /// an entry is faulted (it will be re-sent or answered first), or an entry is still open
    /// on another connection. The session sends only when this is false, which keeps each
    /// client's commands executing in the order it sent them.
    pub fn busy_elsewhere(&self, conn: u64) -> bool {
        self.lock().queue.iter().any(|e| {
            matches!(e.state, EntryState::Faulted(_))
                || (e.expect > 0 && !e.done() && e.conn != conn)
        })
    }

    /// Marks the inbox as abandoned: later deliveries are dropped.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.queue.clear();
        self.faults.store(0, Ordering::Release);
        st.out = BytesMut::new();
        st.buffered = 0;
    }

    /// Whether the session is gone.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Moves completed front entries to the output.
    fn release(st: &mut State) {
        while let Some(front) = st.queue.front_mut() {
            if !front.held.is_empty() {
                let held = front.held.split();
                st.out.extend_from_slice(&held);
            }
            if !front.done() {
                return;
            }
            st.queue.pop_front();
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
        let at_front = pos == 0 && entry.held.is_empty();
        let mut added = 0;
        for r in frames {
            let keep = entry.got >= entry.skip && !entry.silent;
            entry.got += 1;
            if keep {
                added += r.len();
                if at_front {
                    st.out.extend_from_slice(&buf[r.clone()]);
                } else {
                    entry.held.extend_from_slice(&buf[r.clone()]);
                }
            }
        }
        if let Some(r) = partial {
            if entry.got >= entry.skip && !entry.silent {
                added += r.len();
                if at_front {
                    st.out.extend_from_slice(&buf[r]);
                } else {
                    entry.held.extend_from_slice(&buf[r]);
                }
            }
        }
        st.buffered += added;
        Self::release(st);
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
            Some(0) if st.queue[0].held.is_empty() => st.out.extend_from_slice(bytes),
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

    fn fail(&self, id: u64, kind: FaultKind) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        if let Some(entry) = st.queue.iter_mut().find(|e| e.id == id) {
            if entry.got < entry.expect && matches!(entry.state, EntryState::Open) {
                entry.state = EntryState::Faulted(kind);
                self.faults.fetch_add(1, Ordering::AcqRel);
            }
        }
        drop(st);
        self.notify.notify_one();
    }
}

// === impl ReplyTo ===

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

    /// Delivers an out-of-band frame in arrival order relative to this entry's replies.
    pub fn deliver_oob(&self, bytes: &[u8]) {
        self.inbox.deliver_oob(Some(self.id), bytes);
    }

    /// All frames arrived: nothing to report on drop.
    pub fn finish(mut self) {
        self.finished = true;
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

#[cfg(test)]
#[path = "inbox_tests.rs"]
mod tests;
