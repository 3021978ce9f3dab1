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

use super::hold::Wait;
use super::state::ClientState;
use super::Session;
use crate::backend::pool::Unavailable;
use crate::backend::ConnError;
use crate::backend::{Dedicated, Lane, LaneUse, NodeId, Outgoing, PoolKey, ReplyMode};
use crate::resp::reply::{ClientError, Proto};
use crate::resp::Request;
use crate::topology::{Reason, RouteState, Topology};
use std::sync::Arc;

/// Server-side state of a pinned connection that only the pin records. Subscriptions and
/// tracking are recorded by the session itself (`subs`, `tracking`), and the pin's reasons
/// are derived from both ([`Session::pins`]), so the two can never disagree.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Held {
    /// Keys are watched on it (WATCH).
    pub(super) watch: bool,
    /// It is in MONITOR mode.
    pub(super) monitor: bool,
}

/// Why a dedicated connection is pinned (several reasons may hold at once), as
/// [`Session::pins`] derives it.
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
    /// A shared lane, chosen on the topology snapshot of `epoch` (a newer snapshot means
    /// the choice must be made again).
    Shared {
        lane: Lane,
        key: PoolKey,
        epoch: u64,
    },
    /// A dedicated connection holding server-side state.
    Pinned {
        conn: Dedicated,
        held: Held,
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

    /// What only the pin records, when pinned.
    pub(super) fn held_mut(&mut self) -> Option<&mut Held> {
        match self {
            Conn::Pinned { held, .. } => Some(held),
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

    /// A slot for one batch if the connection's queue has room now.
    pub(super) fn try_reserve(&self) -> Option<tokio::sync::mpsc::Permit<'_, Outgoing>> {
        match self {
            Conn::Shared { lane, .. } => lane.try_reserve(),
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } => conn.try_reserve(),
            Conn::None => None,
        }
    }

    /// Sends on this connection.
    pub(super) async fn send(&self, out: Outgoing) {
        match self {
            Conn::Shared { lane, .. } => lane.send(out).await,
            Conn::Pinned { conn, .. } | Conn::Borrowed { conn } => conn.send(out).await,
            // Dropping the batch fails its entry as not sent; never reached, since a batch is
            // only built for an existing connection.
            Conn::None => drop(out),
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
            return Err(Unroutable::Refuse(super::hold::no_master(&topo.reason)))
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
            purpose: LaneUse::Any,
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
        purpose: LaneUse::StaleReads,
    })
}

impl Session {
    /// The client's error when the master refused the connection handshake in a way that
    /// will stay (see [`refused_for_good`]). In passthrough mode a client that has not
    /// authenticated gets `NOAUTH` as Redis words it: its own `AUTH` is the remedy.
    pub(super) fn refusal(&self, e: &ConnError) -> Option<ClientError> {
        let refused = refused_for_good(e)?;
        let noauth = matches!(&refused, ClientError::BackendRefused { reply } if reply.trim_start_matches('-').starts_with("NOAUTH"));
        if noauth && self.ctx.dynamic.load().users.checked_by_master() {
            return Some(ClientError::NoAuth);
        }
        Some(refused)
    }
}

/// The client's error when the master refused the connection handshake in a way that will
/// stay (credentials, rights, a database that does not exist), rather than pass (`LOADING`,
/// a master stepping down): the master's own words.
fn refused_for_good(e: &ConnError) -> Option<ClientError> {
    let (reply, own) = match e {
        ConnError::Rejected { reply, .. } => (reply, false),
        ConnError::OwnCredentialsRefused { reply, .. } => (reply, true),
        _ => return None,
    };
    let text = reply.trim_start_matches('-');
    let lasting = ["WRONGPASS", "NOAUTH", "NOPERM", "ERR DB index"]
        .iter()
        .any(|p| text.starts_with(p));
    let reply = reply.clone();
    match (lasting, own) {
        (false, _) => None,
        (true, false) => Some(ClientError::BackendRefused { reply }),
        (true, true) => Some(ClientError::ProxyCredentialsRefused { reply }),
    }
}

/// Why no master can take a command now.
#[derive(Debug)]
pub(super) enum Unroutable {
    /// A change is under way: hold.
    Hold(Reason),
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
    /// Why the dedicated connection is pinned, when one is: what it holds, and the session's
    /// own subscriptions and tracking mode.
    pub(super) fn pins(&self) -> Option<Pins> {
        match &self.conn {
            Conn::Pinned { held, .. } => Some(Pins {
                watch: held.watch,
                pubsub: self.subs.any(),
                tracking: self.tracking.is_some(),
                monitor: held.monitor,
            }),
            _ => None,
        }
    }

    /// Reply mode for a dispatch on the current connection.
    pub(super) fn reply_mode(&self) -> ReplyMode {
        // RESP3 messages are push frames, recognised in any mode; only a RESP2 subscriber's
        // messages look like replies.
        match self.pins() {
            Some(p) if p.monitor => ReplyMode::Monitor,
            Some(_) if self.subs.any() && self.state.proto == Proto::Resp2 => ReplyMode::PubSub,
            _ => ReplyMode::Counted,
        }
    }

    /// The shared-lane key for this client now, or why there is none.
    pub(super) fn shared_key(&self) -> Result<PoolKey, Unroutable> {
        self.target().map(|t| t.key)
    }

    /// The shared-lane key for `req`, or `None` once `req` was answered or stalled as the
    /// reason there is none says.
    pub(super) async fn shared_key_or_answer(
        &mut self,
        req: &Request,
        silent: bool,
    ) -> Option<PoolKey> {
        match self.shared_key() {
            Ok(key) => Some(key),
            Err(u) => {
                let route = self.unroutable(u);
                self.routed(route, req, silent).await;
                None
            }
        }
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
        if let Some(route) = self.route_current(false) {
            return route;
        }
        let Target { key, epoch } = match self.target() {
            Ok(t) => t,
            Err(u) => return self.unroutable(u),
        };
        match self.use_target(&key, epoch).await {
            Ok(route) => route,
            Err(_) if self.node_busy(&key) => Route::Refuse(ClientError::Busy),
            // The master refused the handshake (a wrong backend password, an ACL user without
            // rights): waiting will not change that; the client gets the master's own words.
            Err(Unavailable(e)) => match self.refusal(&e) {
                Some(refused) => Route::Refuse(refused),
                None => self.unroutable(Unroutable::Hold(Reason::Unreachable)),
            },
        }
    }

    /// Makes a shared lane for `key`, read from the snapshot of `epoch`, the current
    /// connection (see [`use_lane`](Self::use_lane)).
    async fn use_target(&mut self, key: &PoolKey, epoch: u64) -> Result<Route, Unavailable> {
        self.master_back();
        self.use_lane(key, epoch).await
    }

    /// Makes a shared lane for `key` the current connection: the current one if it is that
    /// lane, else a new one once everything earlier of this client is answered (`Stall`
    /// until then).
    async fn use_lane(&mut self, key: &PoolKey, epoch: u64) -> Result<Route, Unavailable> {
        if let Conn::Shared {
            lane,
            key: k,
            epoch: e,
        } = &mut self.conn
        {
            if k == key && !lane.is_closed() {
                *e = epoch;
                let id = lane.id();
                return Ok(self.may_send(id));
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
            epoch,
        };
        Ok(Route::Go)
    }

    /// The route for a read: like [`route_data`](Self::route_data), but while the master's
    /// write lease is lapsed and the operator chose `stale_reads = "serve"`, to the last
    /// verified master on a lane of its own (counted in `stale_reads_total`); and for a client
    /// with durable writes and nothing in flight, to a lane that carries no durable write
    /// ([`LaneUse::Reads`]), so that the read never queues behind another client's `WAIT`.
    pub(super) async fn route_read(&mut self) -> Route {
        let stale = !self.conn.is_pinned() && self.ctx.dynamic.load().stale_reads;
        let key = if stale {
            stale_key_in(&self.ctx.topology.load(), &self.state)
        } else {
            None
        };
        if let Some(key) = key {
            crate::metrics::stale_read();
            // Epoch 0: a stale-read lane is never reused for the next command anyway.
            return match self.use_lane(&key, 0).await {
                Ok(route) => route,
                Err(_) => self.route_data().await,
            };
        }
        if let Some(route) = self.route_current(true) {
            return route;
        }
        if self.wants_read_lane() {
            if let Ok(Target { mut key, epoch }) = self.target() {
                key.purpose = LaneUse::Reads;
                if let Ok(route) = self.use_target(&key, epoch).await {
                    return route;
                }
            }
        }
        self.route_data().await
    }

    /// Whether a read now should go to a reads-only lane: the client's writes are durable
    /// and nothing of it is in flight (so switching lanes costs no wait).
    fn wants_read_lane(&self) -> bool {
        self.durability().is_some()
            && !self.conn.is_pinned()
            && self.batch.is_empty()
            && self.inbox.in_flight() == 0
    }

    /// The route when the current connection still serves this client's commands: a pinned
    /// one, or the same lane with nothing changed since it was chosen (the common case, which
    /// needs no waiting). `None` when a connection must be chosen.
    /// `read`: whether the command is a read (a reads-only lane takes nothing else).
    pub(super) fn route_current(&self, read: bool) -> Option<Route> {
        match &self.conn {
            Conn::Pinned { conn, .. } => Some(self.may_send(conn.id())),
            Conn::Shared { lane, key, epoch } => {
                let fits = match key.purpose {
                    LaneUse::Any => !(read && self.wants_read_lane()),
                    LaneUse::Reads => read,
                    // A stale-read lane is only ever chosen for one read at a time.
                    LaneUse::StaleReads => false,
                };
                let same = *epoch == self.ctx.topology.epoch()
                    && fits
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
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
