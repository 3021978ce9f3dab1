//! Which backend connection a session's commands go to, and how they get there.
//!
//! A session uses one connection at a time: a shared lane for its key, a dedicated connection
//! pinned while it holds server-side state, or one borrowed for a blocking command. Ordinary
//! commands accumulate in a [`Batch`] and leave in one send.
//!
//! The ordering rule: a command is sent on a connection only when nothing earlier of this
//! client is still open on another connection and no failed dispatch waits to be resolved
//! ([`Inbox::busy_elsewhere`]). Otherwise the command *stalls* until that is true. This is what
//! makes a client's commands execute in the order it sent them even across connection
//! switches (SELECT, WATCH, a blocking command, a new master) and failures.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::hold::Wait;
use super::state::ClientState;
use super::Session;
use crate::backend::pool::Unavailable;
use crate::backend::ConnError;
use crate::backend::{
    Dedicated, Dispatch, Inbox, Lane, NodeId, Outgoing, PoolKey, ReplyMode, Sent,
};
use crate::config::Durability;
use crate::resp::command::{writes_data, Kind};
use crate::resp::reply::{ClientError, Proto};
use crate::resp::Request;
use crate::topology::{RouteState, Topology};
use std::sync::Arc;

/// Why a dedicated connection is pinned (several reasons may hold at once).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Pins {
    pub(super) watch: bool,
    pub(super) pubsub: bool,
    pub(super) tracking: bool,
    pub(super) monitor: bool,
}

impl Pins {
    pub(super) fn any(&self) -> bool {
        self.watch || self.pubsub || self.tracking || self.monitor
    }
}

/// The backend connection a session uses.
#[derive(Debug, Default)]
pub(super) enum Conn {
    /// None yet (or released).
    #[default]
    None,
    /// A shared lane.
    Shared { lane: Lane, key: PoolKey },
    /// A dedicated connection holding server-side state.
    Pinned {
        conn: Dedicated,
        pins: Pins,
        /// Its state changed in a way that forbids reuse (SELECT, tracking off).
        dirty: bool,
    },
    /// A dedicated connection lent for a blocking command (or WAIT).
    Borrowed { conn: Dedicated },
}

impl Conn {
    pub(super) fn id(&self) -> Option<u64> {
        match self {
            Conn::None => None,
            Conn::Shared { lane, .. } => Some(lane.id()),
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } => Some(conn.id()),
        }
    }

    pub(super) fn pins(&self) -> Option<&Pins> {
        match self {
            Conn::Pinned { pins, .. } => Some(pins),
            _ => None,
        }
    }

    pub(super) fn pins_mut(&mut self) -> Option<&mut Pins> {
        match self {
            Conn::Pinned { pins, .. } => Some(pins),
            _ => None,
        }
    }

    pub(super) fn is_pinned(&self) -> bool {
        matches!(self, Conn::Pinned { .. })
    }

    /// The node and server id of the dedicated connection in use, pinned or borrowed (for
    /// CLIENT UNBLOCK).
    pub(super) fn server_identity(&self) -> Option<(Arc<NodeId>, i64)> {
        match self {
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } => {
                Some((Arc::clone(&conn.key().node), conn.client_id))
            }
            _ => None,
        }
    }

    /// The node and server id of a pinned connection (for TRACKING REDIRECT).
    pub(super) fn pinned_identity(&self) -> Option<(Arc<NodeId>, i64)> {
        match self {
            Conn::Pinned { conn, .. } => Some((Arc::clone(&conn.key().node), conn.client_id)),
            _ => None,
        }
    }

    /// Sends on this connection.
    pub(super) async fn send_out(&self, out: Outgoing) {
        self.send(out).await;
    }

    /// A slot for one batch if the connection's queue has room now.
    fn try_reserve(&self) -> Option<tokio::sync::mpsc::Permit<'_, Outgoing>> {
        match self {
            Conn::Shared { lane, .. } => lane.try_reserve(),
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } => conn.try_reserve(),
            Conn::None => None,
        }
    }

    async fn send(&self, out: Outgoing) {
        match self {
            Conn::Shared { lane, .. } => lane.send(out).await,
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } => conn.send(out).await,
            // Dropping the batch fails its entry as not sent; never reached, since a batch is
            // only built for an existing connection.
            Conn::None => drop(out),
        }
    }
}

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

/// A dispatch of one special command (or a few the proxy composed).
#[derive(Debug)]
pub(super) struct Single {
    pub(super) payload: Bytes,
    pub(super) cmds: SmallVec<[Sent; 1]>,
    pub(super) expect: u32,
    pub(super) skip: u32,
    pub(super) timed: bool,
    /// Reply mode to use instead of the session's current one.
    pub(super) mode: Option<ReplyMode>,
    /// When a blocking command was first sent (its timeout runs from there).
    pub(super) started: Option<std::time::Instant>,
}

impl Single {
    /// One client command producing `frames` replies, all visible.
    pub(super) fn command(req: &Request, kind: Kind, frames: u32, timed: bool) -> Self {
        let payload = req.bytes().clone();
        let len = payload.len();
        Self {
            payload,
            cmds: SmallVec::from_elem(
                Sent {
                    range: 0..len,
                    kind,
                    frames,
                    replies: frames,
                    confirm: false,
                },
                1,
            ),
            expect: frames,
            skip: 0,
            timed,
            mode: None,
            started: None,
        }
    }
}

/// Where ordinary commands go, as read from one topology snapshot: the lane key and that
/// snapshot's epoch. Both come from the same snapshot, so a lane is never remembered under an
/// epoch newer than the one it was chosen on (a swap in between would otherwise go unseen).
#[derive(Debug)]
pub(super) struct Target {
    pub(super) key: PoolKey,
    pub(super) epoch: u64,
}

/// The target in snapshot `topo` for a client in `state`.
fn target_in(topo: &Topology, state: &ClientState) -> Result<Target, Unroutable> {
    let master = match (&topo.state, topo.routable_master()) {
        (RouteState::Verified, Some(m)) => m,
        (RouteState::NoMaster, _) => {
            return Err(Unroutable::Refuse(ClientError::NoMaster {
                why: topo.reason.clone(),
            }))
        }
        (RouteState::Verified, None) => return Err(Unroutable::Hold(topo.lapse_reason())),
        (RouteState::Holding, _) => return Err(Unroutable::Hold(topo.reason.clone())),
    };
    let Some(user) = &state.user else {
        return Err(Unroutable::Refuse(ClientError::NoAuth));
    };
    Ok(Target {
        key: PoolKey {
            node: Arc::clone(&master.node),
            db: state.db,
            proto: state.proto,
            auth: Arc::clone(&user.backend),
            stale: false,
        },
        epoch: topo.epoch,
    })
}

/// The lane key for a read served while the write lease of the last verified master is
/// lapsed (`stale_reads = "serve"`); `None` when no such master is known.
fn stale_key_in(topo: &Topology, state: &ClientState) -> Option<PoolKey> {
    let master = topo.master.as_ref()?;
    if master.lease.valid() || master.lease.is_unbounded() {
        return None;
    }
    Some(PoolKey {
        node: Arc::clone(&master.node),
        db: state.db,
        proto: state.proto,
        auth: Arc::clone(&state.user.as_ref()?.backend),
        stale: true,
    })
}

/// The client's error when the master refused the connection handshake in a way that will
/// stay (credentials, rights, a database that does not exist), rather than pass (`LOADING`,
/// a master stepping down): the master's own words.
pub(super) fn refused_for_good(e: &ConnError) -> Option<ClientError> {
    let ConnError::Rejected { reply, .. } = e else {
        return None;
    };
    let text = reply.trim_start_matches('-');
    ["WRONGPASS", "NOAUTH", "NOPERM", "ERR DB index"]
        .iter()
        .any(|p| text.starts_with(p))
        .then(|| ClientError::BackendRefused {
            reply: reply.clone(),
        })
}

/// Why no master can take a command now.
#[derive(Debug)]
pub(super) enum Unroutable {
    /// A change is under way: hold.
    Hold(String),
    /// Waiting will not help: answer this error.
    Refuse(ClientError),
}

/// Where a command may go now.
#[derive(Debug)]
pub(super) enum Route {
    /// Send on the current connection.
    Go,
    /// Wait for earlier commands (the caller stalls the request).
    Stall,
    /// Cannot be routed: answer with this error.
    Refuse(ClientError),
}

impl Session {
    /// Reply mode for a dispatch on the current connection.
    fn reply_mode(&self) -> ReplyMode {
        // RESP3 messages are push frames, recognised in any mode; only a RESP2 subscriber's
        // messages look like replies.
        match self.conn.pins() {
            Some(p) if p.monitor => ReplyMode::Monitor,
            Some(_) if self.subs.any() && self.state.proto == Proto::Resp2 => ReplyMode::PubSub,
            _ => ReplyMode::Counted,
        }
    }

    /// The shared-lane key for this client now, or why there is none.
    pub(super) fn shared_key(&self) -> Result<PoolKey, Unroutable> {
        self.target().map(|t| t.key)
    }

    /// Where this client's ordinary commands go now, read from one snapshot.
    pub(super) fn target(&self) -> Result<Target, Unroutable> {
        target_in(&self.ctx.topology.load(), &self.state)
    }

    /// Routing outcome when no master can take the command now.
    pub(super) fn unroutable(&mut self, u: Unroutable) -> Route {
        match u {
            Unroutable::Refuse(e) => Route::Refuse(e),
            Unroutable::Hold(why) => match self.hold_for(&why) {
                Wait::Hold => Route::Stall,
                Wait::Fail(e) => Route::Refuse(e),
            },
        }
    }

    /// Makes the connection for ordinary commands current: the pinned one if pinned, else a
    /// shared lane for the current key.
    pub(super) async fn route_data(&mut self) -> Route {
        if let Some(route) = self.route_current() {
            return route;
        }
        let Target { key, epoch } = match self.target() {
            Ok(t) => t,
            Err(u) => return self.unroutable(u),
        };
        self.master_back();
        match self.use_lane(&key).await {
            Ok(route) => {
                if matches!(&self.conn, Conn::Shared { key: k, .. } if *k == key) {
                    self.route_epoch = epoch;
                }
                route
            }
            Err(_) if self.node_busy(&key) => Route::Refuse(ClientError::Busy),
            // The master refused the handshake (a wrong backend password, an ACL user without
            // rights): waiting will not change that; the client gets the master's own words.
            Err(Unavailable(e)) => match refused_for_good(&e) {
                Some(refused) => Route::Refuse(refused),
                None => self.unroutable(Unroutable::Hold("the master cannot be reached".into())),
            },
        }
    }

    /// Makes a shared lane for `key` the current connection: the current one if it is that
    /// lane, else a new one once everything earlier of this client is answered (`Stall`
    /// until then).
    async fn use_lane(&mut self, key: &PoolKey) -> Result<Route, Unavailable> {
        if let Conn::Shared { lane, key: k } = &self.conn {
            if k == key && !lane.is_closed() {
                return Ok(self.may_send(lane.id()));
            }
        }
        // Switching connections: everything earlier must be answered first.
        if self.switch_blocked().await {
            return Ok(Route::Stall);
        }
        let lane = self.ctx.pool.lane(key)?;
        self.release_conn();
        self.conn = Conn::Shared {
            lane,
            key: key.clone(),
        };
        Ok(Route::Go)
    }

    /// The route for a read: like [`route_data`](Self::route_data), but while the master's
    /// write lease is lapsed and the operator chose `stale_reads = "serve"`, to the last
    /// verified master on a lane of its own (counted in `stale_reads_total`).
    pub(super) async fn route_read(&mut self) -> Route {
        let stale = !self.conn.is_pinned() && self.ctx.dynamic.load().stale_reads;
        let key = if stale {
            stale_key_in(&self.ctx.topology.load(), &self.state)
        } else {
            None
        };
        let Some(key) = key else {
            return self.route_data().await;
        };
        crate::metrics::stale_read();
        match self.use_lane(&key).await {
            Ok(route) => route,
            Err(_) => self.route_data().await,
        }
    }

    /// The route when the current connection still serves this client's commands: a pinned
    /// one, or the same lane with nothing changed since it was chosen (the common case, which
    /// needs no waiting). `None` when a connection must be chosen.
    pub(super) fn route_current(&self) -> Option<Route> {
        match &self.conn {
            Conn::Pinned { conn, .. } => Some(self.may_send(conn.id())),
            Conn::Shared { lane, key } => {
                // A stale-read lane is only ever chosen for one read at a time.
                let same = self.route_epoch == self.ctx.topology.epoch()
                    && !key.stale
                    && key.db == self.state.db
                    && key.proto == self.state.proto
                    && self
                        .state
                        .user
                        .as_ref()
                        .is_some_and(|u| Arc::ptr_eq(&u.backend, &key.auth));
                (same && !lane.is_closed()).then(|| self.may_send(lane.id()))
            }
            Conn::None | Conn::Borrowed { .. } => None,
        }
    }

    /// Whether sending on `id` must wait (a failed dispatch is pending resolution).
    fn may_send(&self, id: u64) -> Route {
        if self.inbox.has_fault() {
            return Route::Stall;
        }
        let quiet = !self.batch.is_empty() || self.inbox.in_flight() == 0;
        if !quiet && self.inbox.busy_elsewhere(id) {
            return Route::Stall;
        }
        Route::Go
    }

    /// Flushes the batch and tells whether a switch to another connection must wait.
    pub(super) async fn switch_blocked(&mut self) -> bool {
        self.flush_batch().await;
        self.inbox.busy_elsewhere(0)
    }

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
        let to = self.inbox.push_dispatch(Dispatch {
            conn: conn_id,
            expect: single.expect,
            skip: single.skip,
            silent,
            payload: single.payload.clone(),
            cmds: single.cmds,
            attempt: 0,
            started: single.started,
            durability: self.durability(),
        });
        self.conn
            .send(Outgoing {
                payload: single.payload,
                expect: single.expect,
                mode,
                timed: single.timed,
                to,
            })
            .await;
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
