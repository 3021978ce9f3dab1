//! HOLD: what a session does while no master can take its commands.
//!
//! A hold episode starts when the session first finds the topology not routable (a failover
//! is under way, the master refused writes, none is verified yet). Its commands wait, in
//! order, because the first of them stalls and nothing behind it is processed. The episode
//! ends when a master is verified: the stalled command and every failed dispatch waiting at
//! the front of the inbox go to the new master. If that does not happen within the hold
//! timeout, every waiting command gets a clear "not executed" error, and so does every further
//! command until a master is verified again (failing fast instead of queueing behind an
//! outage). A global cap bounds how many clients wait at once; past it, commands fail at once.
//!
//! While pinned, the session also follows the topology to move its subscriptions to a new
//! master, or to close the client when its server-side state cannot move (MONITOR, tracking).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::route::Conn;
use super::Session;
use crate::resp::reply::ClientError;
use crate::topology::RouteState;

/// One session's hold episode.
#[derive(Debug, Default)]
pub(super) struct Hold {
    /// When the episode started (None: not holding).
    since: Option<Instant>,
    /// The hold timeout passed: fail fast until a master is verified.
    expired: bool,
    /// The session counts against the global cap.
    counted: bool,
    /// A failed dispatch (by id) waits until then before it is sent again (`None`: its
    /// pause is over).
    pause: Option<(u64, Option<Instant>)>,
}

impl Hold {
    /// When the session must wake up: the end of a pause, or the hold timeout.
    pub(super) fn deadline(&self, timeout: std::time::Duration) -> Option<Instant> {
        match self.since {
            Some(since) if !self.expired => {
                let end = since + timeout;
                match self.pause {
                    Some((_, Some(at))) => Some(at.min(end)),
                    _ => Some(end),
                }
            }
            _ => None,
        }
    }

    /// The deadline passed: the pause is over, and the hold too once the timeout passed.
    pub(super) fn on_deadline(&mut self, timeout: std::time::Duration) {
        let now = Instant::now();
        if let Some((id, Some(at))) = self.pause {
            if at <= now {
                self.pause = Some((id, None));
            }
        }
        if self.since.is_some_and(|since| since + timeout <= now) {
            self.expired = true;
            // The pause is part of the hold and ends with it: an expired hold has no deadline
            // left to wake the session, so a pause outliving it would wait forever.
            if let Some((id, _)) = self.pause {
                self.pause = Some((id, None));
            }
        }
    }

    pub(super) fn active(&self) -> bool {
        self.since.is_some()
    }
}

/// Where a failed dispatch's pause stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pause {
    /// None was started for it.
    Absent,
    /// It waits.
    Waiting,
    /// It waited: it may go.
    Over,
}

/// What to do with a command that needs a master while none is routable.
#[derive(Debug)]
pub(super) enum Wait {
    /// Keep it (stall) until a master is verified or the hold times out.
    Hold,
    /// Answer it with this error now.
    Fail(ClientError),
}

impl Session {
    /// Starts or continues a hold episode; says whether to keep waiting.
    pub(super) fn hold_for(&mut self, why: &str) -> Wait {
        let fail = || ClientError::NoMaster {
            why: why.to_string(),
        };
        if self.hold.expired {
            return Wait::Fail(fail());
        }
        if self.hold.since.is_none() {
            let held = self.ctx.held.fetch_add(1, Ordering::AcqRel) + 1;
            self.hold.counted = true;
            self.hold.since = Some(Instant::now());
            let m = crate::metrics::hot();
            m.holds.increment(1);
            m.held.increment(1.0);
            if held > self.ctx.dynamic.load().max_held_clients {
                self.hold.expired = true;
                return Wait::Fail(fail());
            }
        }
        Wait::Hold
    }

    /// Where the pause of the failed dispatch `id` stands (an ended pause is forgotten as it
    /// is reported).
    pub(super) fn pause_state(&mut self, id: u64) -> Pause {
        match self.hold.pause {
            Some((p, Some(at))) if p == id && at > Instant::now() => Pause::Waiting,
            Some((p, _)) if p == id => {
                self.hold.pause = None;
                Pause::Over
            }
            _ => Pause::Absent,
        }
    }

    /// Makes the failed dispatch `id` wait `pause` before it is sent again to a master that
    /// is still named: a master that just died would fail it again at once, and again,
    /// before the failover task has had time to look at it. The wait is part of the hold (so
    /// bounded by the hold timeout); returns false when the hold cannot take it.
    pub(super) fn start_pause(&mut self, id: u64, why: &str, pause: std::time::Duration) -> bool {
        match self.hold_for(why) {
            Wait::Hold => {
                self.hold.pause = Some((id, Some(Instant::now() + pause)));
                true
            }
            Wait::Fail(_) => false,
        }
    }

    /// Ends the hold episode (a master is routable again, or the session ends).
    pub(super) fn end_hold(&mut self) {
        if self.hold.counted {
            self.ctx.held.fetch_sub(1, Ordering::AcqRel);
            let m = crate::metrics::hot();
            m.held.decrement(1.0);
            if let Some(since) = self.hold.since {
                m.hold_duration.record(since.elapsed().as_secs_f64());
            }
        }
        self.hold = Hold::default();
    }

    /// Ends the hold because a master is routable again, unless a failed dispatch is still
    /// being resolved: the resolution owns the hold then (and the pause in it), and ends it
    /// when the dispatch goes again or gets its answer. Ending it here instead would restart
    /// the pause at every look at the route, and the dispatch would wait forever.
    pub(super) fn master_back(&mut self) {
        if self.hold.active() && !self.inbox.has_fault() {
            self.end_hold();
        }
    }

    /// Whether the session must hear about topology changes now.
    pub(super) fn waits_for_topology(&self) -> bool {
        self.hold.active() || self.deferred.is_some() || self.conn.is_pinned()
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
        let Some(pins) = self.conn.pins().copied() else {
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
            self.closing = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A pause set to end after the hold timeout: the hold's expiry ends it too, since an
    /// expired hold has no deadline left to wake the session for it.
    #[test]
    fn expiry_ends_the_pause() {
        let timeout = Duration::from_secs(2);
        let now = Instant::now();
        let mut hold = Hold {
            since: Some(now - Duration::from_secs(3)),
            pause: Some((7, Some(now + Duration::from_secs(60)))),
            ..Hold::default()
        };
        hold.on_deadline(timeout);
        assert!(hold.expired);
        assert_eq!(hold.pause, Some((7, None)));
        assert_eq!(hold.deadline(timeout), None);
    }
}
