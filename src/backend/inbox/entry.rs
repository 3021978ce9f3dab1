//! The pieces of an inbox: what a session registers ([`Dispatch`]), what it remembers of each
//! command ([`Sent`]), and what it gets back when a dispatch fails ([`Fault`]).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::confirm::Awaiting;
use crate::config::Durability;
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
    /// A durable write: its reply waits for the replicas' acknowledgement (see
    /// [`Dispatch::durability`]).
    pub confirm: bool,
}

impl Sent {
    /// A command the proxy added (`SCRIPT LOAD`, `PUBLISH` before `WAIT`, re-subscriptions):
    /// `frames` replies of kind `kind`, none of them for the client, never durable.
    pub fn hidden(range: Range<usize>, kind: Kind, frames: u32) -> Self {
        Self {
            range,
            kind,
            frames,
            replies: 0,
            confirm: false,
        }
    }
}

/// Why an entry stopped before all its replies reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The payload never reached the connection's socket: nothing ran.
    NotSent,
    /// The payload was written, and the connection was lost before all replies arrived.
    Lost,
    /// Redis refused a command before running it (READONLY, MASTERDOWN, NOREPLICAS, LOADING,
    /// UNBLOCKED, NOSCRIPT): the replies from that one on are held for the session.
    Refused,
}

/// A reply frame received after a refusal.
#[derive(Debug, Clone)]
pub struct Tail {
    /// The frame.
    pub bytes: Bytes,
    /// Whether it is itself a refusal (the command did not run).
    pub refused: bool,
}

/// A stopped entry, as handed to the session. The entry stays at the front of the inbox until
/// the session calls `Inbox::resolve` with what replaces it.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The entry.
    pub id: u64,
    /// What happened.
    pub kind: FaultKind,
    /// Frames released to the client before the fault.
    pub received: u32,
    /// Frames received after a refusal, in order (complete frames only).
    pub tail: Vec<Tail>,
    /// Whether every expected frame arrived (a refusal followed by a lost connection leaves
    /// some missing).
    pub complete: bool,
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
    /// When a blocking command was first sent.
    pub started: Option<std::time::Instant>,
    /// The durability its durable writes waited for (kept when they are sent again).
    pub durability: Option<Durability>,
}

/// What replaces a faulted entry.
#[derive(Debug)]
pub enum Resolution {
    /// A reply the proxy writes (an error, or a held reply released as is).
    Local(Bytes),
    /// Commands sent again.
    Dispatch(Dispatch),
}

/// How a session registers a dispatch.
#[derive(Debug)]
pub struct Dispatch {
    /// Id of the connection it is sent on (see `Inbox::busy_elsewhere`).
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
    /// When a blocking command was first sent (its timeout runs from there).
    pub started: Option<std::time::Instant>,
    /// Durable writes: the replies of the commands marked `confirm` wait until this many
    /// replicas acknowledged them (`None`: answered as Redis answers).
    pub durability: Option<Durability>,
}

/// Lifecycle of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Waiting for frames.
    Open,
    /// Stopped; waits for the session (for a refusal: once every frame arrived or the
    /// connection is gone).
    Faulted(FaultKind),
}

/// One slot of the inbox.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: u64,
    /// Connection carrying it (0 for local replies).
    pub(super) conn: u64,
    /// Frames expected (0 for local replies).
    pub(super) expect: u32,
    pub(super) got: u32,
    pub(super) skip: u32,
    pub(super) silent: bool,
    /// Bytes waiting for this entry to reach the front.
    pub(super) held: BytesMut,
    pub(super) state: State,
    /// Frames after a refusal, and the part of an unfinished one.
    pub(super) tail: Vec<Tail>,
    pub(super) tail_partial: BytesMut,
    /// The connection was lost after a refusal.
    pub(super) lost_after_refusal: bool,
    pub(super) payload: Bytes,
    pub(super) cmds: SmallVec<[Sent; 1]>,
    pub(super) attempt: u8,
    pub(super) started: Option<std::time::Instant>,
    /// When it was registered (for the command duration metric).
    pub(super) sent_at: std::time::Instant,
    /// Its durable writes wait for the replicas: every reply stays in `held` until then.
    pub(super) confirm: Option<Box<Awaiting>>,
    /// The durability asked for at dispatch.
    pub(super) durable: Option<Durability>,
}

impl Entry {
    pub(super) fn dispatched(id: u64, d: Dispatch) -> Self {
        let confirm = d
            .durability
            .and_then(|_| Awaiting::new(d.cmds.iter().map(|c| (c.frames, c.replies, c.confirm))))
            .map(Box::new);
        Self {
            confirm,
            durable: d.durability,
            id,
            conn: d.conn,
            expect: d.expect,
            got: 0,
            skip: d.skip,
            silent: d.silent,
            held: BytesMut::new(),
            state: State::Open,
            tail: Vec::new(),
            tail_partial: BytesMut::new(),
            lost_after_refusal: false,
            payload: d.payload,
            cmds: d.cmds,
            attempt: d.attempt,
            started: d.started,
            sent_at: std::time::Instant::now(),
        }
    }

    pub(super) fn local(id: u64, bytes: &[u8]) -> Self {
        let mut e = Self::dispatched(
            id,
            Dispatch {
                conn: 0,
                expect: 0,
                skip: 0,
                silent: false,
                payload: Bytes::new(),
                cmds: SmallVec::new(),
                attempt: 0,
                started: None,
                durability: None,
            },
        );
        e.held = BytesMut::from(bytes);
        e
    }

    /// The durability its replies wait for, when it carries durable writes.
    pub(super) fn durability(&self) -> Option<Durability> {
        self.confirm.as_ref().and(self.durable)
    }

    /// All frames arrived, nothing went wrong, and the replicas answered (durable writes).
    pub(super) fn done(&self) -> bool {
        self.state == State::Open && self.got >= self.expect && self.confirm.is_none()
    }

    /// Still waiting for frames (counts as in flight).
    pub(super) fn open(&self) -> bool {
        self.expect > 0 && !self.done()
    }

    pub(super) fn faulted(&self) -> bool {
        matches!(self.state, State::Faulted(_))
    }

    /// A faulted entry the session can resolve now: a refusal waits for the remaining frames
    /// (they tell which later commands ran).
    /// Ends the wait of its durable writes with `acked` replicas acknowledging (`None`:
    /// unknown, the connection was lost). Returns the change in held bytes.
    pub(super) fn settle(&mut self, acked: Option<u32>) -> isize {
        let (Some(wait), Some(d)) = (self.confirm.take(), self.durable) else {
            return 0;
        };
        let Some(rewritten) = wait.settle(d, acked, &self.held) else {
            return 0;
        };
        let before = self.held.len();
        self.held = rewritten;
        self.held.len() as isize - before as isize
    }

    pub(super) fn settled(&self) -> bool {
        if self.confirm.is_some() {
            // Writes before the refusal ran: their replies wait for the replicas first.
            return false;
        }
        match self.state {
            State::Faulted(FaultKind::Refused) => {
                self.got >= self.expect || self.lost_after_refusal
            }
            State::Faulted(_) => true,
            State::Open => false,
        }
    }

    /// Whether frame number `got` (the next one) is shown to the client.
    pub(super) fn visible(&self) -> bool {
        self.got >= self.skip && !self.silent
    }

    pub(super) fn fault(&self) -> Option<Fault> {
        let State::Faulted(kind) = self.state else {
            return None;
        };
        let received = match kind {
            FaultKind::Refused => self.got - self.tail.len() as u32,
            _ => self.got,
        };
        Some(Fault {
            id: self.id,
            kind,
            received,
            tail: self.tail.clone(),
            complete: self.got >= self.expect,
            payload: self.payload.clone(),
            cmds: self.cmds.clone(),
            skip: self.skip,
            conn: self.conn,
            attempt: self.attempt,
            silent: self.silent,
            started: self.started,
            durability: self.durable,
        })
    }
}
