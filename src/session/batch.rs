//! How a session's commands leave for the connection it uses: ordinary commands accumulate
//! in a [`Batch`] and leave in one send; special ones (or a few the proxy composed) as a
//! [`Single`], composed by [`compose`](super::compose). Both become a [`Dispatch`] registered with the client's inbox, carrying the
//! client's durable-writes setting, and an [`Outgoing`] for the connection.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::compose::Composed;
use super::route::Conn;
use super::Session;
use crate::backend::{Dispatch, Inbox, Outgoing, ReplyMode, Sent};
use crate::config::Durability;
use crate::resp::command::{writes_data, Kind};
use crate::resp::Request;
use std::sync::Arc;

/// Commands accumulated for one send.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// The first command, kept as is (a batch of one is not copied).
    first: Option<Bytes>,
    buf: BytesMut,
    cmds: SmallVec<[Sent; 1]>,
    expect: u32,
    silent: bool,
    mode: Option<ReplyMode>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }

    /// Bytes accumulated.
    pub(super) fn bytes(&self) -> usize {
        self.len()
    }

    fn push(&mut self, frame: &Bytes, kind: Kind, confirm: bool) {
        let start = self.len();
        if self.cmds.is_empty() {
            self.first = Some(frame.clone());
        } else {
            if let Some(first) = self.first.take() {
                // A second command: a pipeline. Make room for a typical one at once rather
                // than growing by doubling, one reallocation per power of two.
                self.cmds.reserve(PIPELINE_GUESS - 1);
                let room = (first.len() + frame.len()) * PIPELINE_GUESS / 2;
                self.buf.reserve(room.min(PIPELINE_ROOM_MAX));
                self.buf.extend_from_slice(&first);
            }
            self.buf.extend_from_slice(frame);
        }
        self.cmds.push(Sent {
            range: start..start + frame.len(),
            kind,
            frames: 1,
            replies: 1,
            confirm,
        });
        self.expect += 1;
    }

    fn take(&mut self) -> (Bytes, SmallVec<[Sent; 1]>, u32, bool, ReplyMode) {
        let payload = match self.first.take() {
            Some(first) => first,
            None => self.buf.split().freeze(),
        };
        let out = (
            payload,
            std::mem::take(&mut self.cmds),
            self.expect,
            self.silent,
            self.mode.take().unwrap_or(ReplyMode::Counted),
        );
        self.expect = 0;
        self.silent = false;
        out
    }
}

/// Turns `batch` into a dispatch on connection `conn`, registered with the client's inbox and
/// ready to send.
fn batch_dispatch(
    batch: &mut Batch,
    inbox: &Arc<Inbox>,
    conn: u64,
    durability: Option<Durability>,
) -> Outgoing {
    let (payload, cmds, expect, silent, mode) = batch.take();
    let to = inbox.push_dispatch(Dispatch {
        conn,
        expect,
        skip: 0,
        silent,
        payload: payload.clone(),
        cmds,
        attempt: 0,
        started: None,
        durability,
    });
    Outgoing {
        payload,
        expect,
        mode,
        timed: true,
        to,
    }
}

/// Commands a batch makes room for once it holds two (the depth pipelining clients commonly
/// use); and the most bytes it reserves for them ahead.
const PIPELINE_GUESS: usize = 16;
const PIPELINE_ROOM_MAX: usize = 64 * 1024;

/// Batches grow at most this large before they are sent.
const BATCH_BYTES: usize = 256 * 1024;

/// A dispatch of one special command (or a few the proxy composed, see [`compose`]).
///
/// [`compose`]: super::compose
#[derive(Debug)]
pub(super) struct Single {
    pub(super) parts: Composed,
    pub(super) timed: bool,
    /// Reply mode to use instead of the session's current one.
    pub(super) mode: Option<ReplyMode>,
    /// When a blocking command was first sent (its timeout runs from there).
    pub(super) started: Option<std::time::Instant>,
}

impl Single {
    /// One client command producing `frames` replies, all visible.
    pub(super) fn command(req: &Request, kind: Kind, frames: u32, timed: bool) -> Self {
        Self::of(Composed::command(req.bytes(), kind, frames), timed)
    }

    /// A composed dispatch; `timed`: under the reply deadline.
    pub(super) fn of(parts: Composed, timed: bool) -> Self {
        Self {
            parts,
            timed,
            mode: None,
            started: None,
        }
    }
}

impl Session {
    /// Adds an ordinary command to the batch for the current connection.
    pub(super) async fn batch_command(&mut self, req: &Request, kind: Kind, silent: bool) {
        if !self.batch_takes(silent) {
            self.flush_batch().await;
        }
        self.batch_add(req, kind, silent);
    }

    /// Whether a command can join the batch as it is (or must wait for it to be sent).
    pub(super) fn batch_takes(&self, silent: bool) -> bool {
        self.batch.is_empty() || (self.batch.silent == silent && self.batch.len() < BATCH_BYTES)
    }

    /// Adds a command to the batch (which [`batch_takes`](Self::batch_takes) it).
    pub(super) fn batch_add(&mut self, req: &Request, kind: Kind, silent: bool) {
        if self.batch.is_empty() {
            self.batch.silent = silent;
            self.batch.mode = Some(self.reply_mode());
        }
        let confirm = kind == Kind::Write && self.durability().is_some() && writes_data(req);
        self.batch.push(req.bytes(), kind, confirm);
        if kind == Kind::Write {
            self.note_write();
        }
    }

    /// The durability this client's writes wait for (its user's; `None`: off).
    pub(super) fn durability(&self) -> Option<Durability> {
        self.state.user.as_ref().and_then(|u| u.durability)
    }

    /// Remembers where this client's writes go (for WAIT).
    pub(super) fn note_write(&mut self) {
        let node = match &self.conn {
            Conn::Shared { key, .. } => Some(&key.node),
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } => Some(&conn.key().node),
            Conn::None => None,
        };
        if let Some(node) = node {
            if self.last_write.as_ref() != Some(node) {
                self.last_write = Some(Arc::clone(node));
            }
        }
    }

    /// Sends the batch.
    pub(super) async fn flush_batch(&mut self) {
        if let Some(out) = self.batch_out() {
            self.conn.send(out).await;
        }
    }

    /// Sends the batch if that needs no waiting; returns whether nothing is left to send.
    pub(super) fn try_flush_batch(&mut self) -> bool {
        let Some(conn_id) = self.conn.id() else {
            return true;
        };
        if self.batch.is_empty() {
            return true;
        }
        // The slot is taken before the batch becomes a dispatch, so that a full queue leaves
        // everything as it was for `flush_batch`.
        let Some(permit) = self.conn.try_reserve() else {
            return false;
        };
        let durability = self.durability();
        permit.send(batch_dispatch(
            &mut self.batch,
            &self.inbox,
            conn_id,
            durability,
        ));
        true
    }

    /// Turns the batch into a dispatch on the current connection, ready to send.
    fn batch_out(&mut self) -> Option<Outgoing> {
        if self.batch.is_empty() {
            return None;
        }
        let conn_id = self.conn.id()?;
        let durability = self.durability();
        Some(batch_dispatch(
            &mut self.batch,
            &self.inbox,
            conn_id,
            durability,
        ))
    }

    /// Sends one composed dispatch on the current connection, after the batch.
    pub(super) async fn send_single(&mut self, single: Single, silent: bool) {
        self.flush_batch().await;
        let Some(conn_id) = self.conn.id() else {
            return;
        };
        let mode = single.mode.unwrap_or_else(|| self.reply_mode());
        let (payload, expect) = (single.parts.payload.clone(), single.parts.expect);
        let durability = self.durability();
        let dispatch = single
            .parts
            .into_dispatch(conn_id, silent, 0, single.started, durability);
        let to = self.inbox.push_dispatch(dispatch);
        self.conn
            .send(Outgoing {
                payload,
                expect,
                mode,
                timed: single.timed,
                to,
            })
            .await;
    }
}
