//! Dedicated connections: taking one for a blocking command, pinning one while the client
//! holds server-side state, giving it back when that state is gone, and following the
//! topology: a subscriber's subscriptions move to a new master, a client whose state cannot
//! move (MONITOR, tracking) is closed, and a hold ends when a master is back.

use super::batch::Single;
use super::compose::Compose;
use super::route::{Conn, Held, Route, Unroutable};
use super::Session;
use crate::backend::{Dedicated, DedicatedError};
use crate::resp::command::{Channels, Kind};
use crate::resp::reply::ClientError;
use crate::resp::Request;
use crate::topology::{Reason, RouteState};
use std::sync::Arc;

impl Session {
    /// Takes a dedicated connection for the current key, releasing the current connection.
    /// The caller has checked that nothing is in flight.
    pub(super) async fn take_dedicated(&mut self) -> Result<Dedicated, Route> {
        let key = match self.shared_key() {
            Ok(k) => k,
            Err(u) => return Err(self.unroutable(u)),
        };
        self.master_back();
        if let Conn::Borrowed { conn } = &self.conn {
            if *conn.key() == key && !conn.is_closed() {
                if let Conn::Borrowed { conn } = std::mem::take(&mut self.conn) {
                    return Ok(conn);
                }
            }
        }
        self.release_conn();
        match self.ctx.pool.dedicated(&key).await {
            Ok(conn) => Ok(conn),
            Err(DedicatedError::TooMany) => Err(Route::Refuse(ClientError::TooManyPinned)),
            Err(DedicatedError::Conn(e)) => {
                tracing::debug!(client.id = self.id(), error = %e, "dedicated connection failed");
                if let Some(refused) = self.refusal(&e) {
                    return Err(Route::Refuse(refused));
                }
                Err(self.unroutable(Unroutable::Hold(Reason::Unreachable)))
            }
        }
    }

    /// Pins a dedicated connection (the caller sets the reasons).
    pub(super) async fn pin(&mut self) -> Result<(), Route> {
        if self.conn.is_pinned() {
            return Ok(());
        }
        let conn = self.take_dedicated().await?;
        self.conn = Conn::Pinned {
            conn,
            held: Held::default(),
            dirty: false,
        };
        Ok(())
    }

    /// Gives up the current connection: a clean dedicated one returns to the pool.
    pub(super) fn release_conn(&mut self) {
        let needed = self.pins().is_some_and(|p| p.any());
        match std::mem::take(&mut self.conn) {
            Conn::Pinned { conn, dirty, .. } if !needed && !dirty => self.ctx.pool.give_back(conn),
            Conn::Borrowed { conn } => {
                // Before it goes back: another client's CLIENT UNBLOCK must not reach the next
                // borrower.
                self.ctx.pool.give_back(conn);
            }
            // A pinned connection with state (or changed) is closed by dropping it.
            _ => {}
        }
    }

    /// Drops the current connection without returning it (its state is unknown).
    pub(super) fn discard_conn(&mut self) {
        self.conn = Conn::None;
    }

    /// Returns a dedicated connection nobody needs any more, once it is quiet; moves a pinned
    /// client whose master changed while commands were in flight.
    pub(super) async fn release_idle_conn(&mut self) {
        let quiet = self.batch.is_empty() && self.inbox.in_flight() == 0;
        if !quiet {
            return;
        }
        let idle = match &self.conn {
            Conn::Pinned { .. } => self.pins().is_some_and(|p| !p.any()),
            Conn::Borrowed { .. } => true,
            _ => false,
        };
        if idle {
            let was_pinned = self.conn.is_pinned();
            self.release_conn();
            if was_pinned {
                self.inbox.set_limit(self.ctx.limits.output_buffer);
            }
            return;
        }
        let moved = {
            let topo = self.ctx.topology.load();
            matches!((&self.conn, topo.routable_master()), (Conn::Pinned { conn, .. }, Some(m)) if conn.key().node != m.node)
        };
        if moved {
            Box::pin(self.on_topology()).await;
        }
    }

    /// Moves the client's subscriptions to a dedicated connection on the current master:
    /// subscribes again to every channel, pattern and shard channel, dropping the
    /// confirmations (the client already had them). Messages published in between are lost,
    /// which is Redis's own at-most-once promise for pub/sub.
    pub(super) async fn resubscribe(&mut self) {
        let pins = self.pins().unwrap_or_default();
        self.discard_conn();
        let conn = match self.take_dedicated().await {
            Ok(c) => c,
            Err(_) => {
                tracing::info!(
                    client.id = self.id(),
                    "cannot move subscriptions to the new master; closing client"
                );
                self.close();
                return;
            }
        };
        self.conn = Conn::Pinned {
            conn,
            held: Held::default(),
            dirty: false,
        };
        if pins.watch {
            self.watch_broken = true;
        }
        let mut parts = Compose::default();
        let mut frames = 0;
        for (kind, names) in self.subs.lists() {
            if names.is_empty() {
                continue;
            }
            let verb = match kind {
                Channels::Plain => "SUBSCRIBE",
                Channels::Pattern => "PSUBSCRIBE",
                Channels::Shard => "SSUBSCRIBE",
            };
            let mut args: Vec<&[u8]> = vec![verb.as_bytes()];
            args.extend(names.iter().map(|n| n.as_ref()));
            let count = names.len() as u32;
            parts.hidden(
                Request::from_args(&args).bytes(),
                Kind::Subscribe(kind),
                count,
            );
            frames += count;
        }
        if parts.is_empty() {
            return;
        }
        let single = Single::of(parts.finish(), true);
        tracing::info!(
            client.id = self.id(),
            channels = frames,
            "subscriptions moved to the new master"
        );
        self.send_single(single, true).await;
    }
}

/// Following the topology: a hold ends when a master is back, and a pinned connection
/// follows the master (subscriptions move) or ends (state that cannot move).
impl Session {
    /// Whether the session must hear about topology changes now.
    pub(super) fn waits_for_topology(&self) -> bool {
        self.recovery.waiting() || self.conn.is_pinned()
    }

    /// A new topology was published.
    pub(super) async fn on_topology(&mut self) {
        let topo = self.ctx.topology.load();
        if topo.state == RouteState::Verified {
            self.master_back();
        }
        let Some(master) = topo.routable_master() else {
            return;
        };
        let pinned_elsewhere =
            matches!(&self.conn, Conn::Pinned { conn, .. } if conn.key().node != master.node);
        if pinned_elsewhere {
            self.follow_master(Arc::clone(&master.node)).await;
        }
    }

    /// The master changed under a pinned connection.
    async fn follow_master(&mut self, _to: Arc<crate::backend::NodeId>) {
        let Some(pins) = self.pins() else {
            return;
        };
        if pins.monitor || pins.tracking {
            // Server-side state that cannot be rebuilt: the client must reconnect (and a
            // tracking client flush its cache, as the client-side caching contract says).
            tracing::info!(
                client.id = self.id(),
                "master changed under MONITOR or tracking; closing client"
            );
            self.discard_conn();
            self.close();
            return;
        }
        if self.inbox.in_flight() > 0 {
            // Earlier commands are still answered by the old connection; move afterwards (a
            // later topology change or fault brings the session back here).
            return;
        }
        if pins.watch {
            self.watch_broken = true;
        }
        if pins.pubsub {
            self.resubscribe().await;
        } else {
            self.discard_conn();
        }
    }
}
