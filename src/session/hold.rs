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
//! The episode is a state machine ([`Hold`]: idle, holding, expired) owned by this module:
//! only its methods start and end an episode, and the session's other parts report events to
//! it (a command found no master, a failed dispatch must wait before it goes again, a master
//! is routable again, the session ends). The held-clients gauge counts exactly the sessions
//! that are not idle.
//!
//! [`Recovery`] wraps the episode together with the failed dispatch being resolved (waiting
//! at the front of the inbox for a master, with the topology epoch it started waiting at) and
//! the connection a resend already paused for: all the session knows about recovering, in
//! one value.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::Session;
use crate::resp::reply::ClientError;
use crate::topology::Reason;

/// What a session remembers while it recovers from a failure: its hold episode, the failed
/// dispatch waiting at the front of the inbox for a master, and the failed connection a
/// resend already paused for. Only this module changes it; routing, pinning and recovery
/// report events.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// The hold episode.
    pub(super) hold: Hold,
    /// The failed dispatch being resolved, while it waits for a master.
    resolving: Option<Resolving>,
    /// The failed connection a resend already waited a pause for: the other dispatches it
    /// failed go again without one (one pause per connection lost, not one per dispatch).
    paused_for: Option<u64>,
}

/// A failed dispatch waiting for a master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resolving {
    /// The dispatch.
    id: u64,
    /// The topology epoch when it started waiting.
    since_epoch: u64,
}

impl Recovery {
    /// Dispatch `id` waits for a master, seen first at topology `epoch` unless it was
    /// already waiting; returns the epoch it started waiting at.
    pub(super) fn resolving(&mut self, id: u64, epoch: u64) -> u64 {
        match self.resolving {
            Some(r) if r.id == id => r.since_epoch,
            _ => {
                self.resolving = Some(Resolving {
                    id,
                    since_epoch: epoch,
                });
                epoch
            }
        }
    }

    /// The failed dispatch goes on: sent again, or answered.
    pub(super) fn resolved(&mut self) {
        self.resolving = None;
    }

    /// Whether something waits for a master (so for the topology to change).
    pub(super) fn waiting(&self) -> bool {
        self.hold.active() || self.resolving.is_some()
    }

    /// Whether a resend already paused for failed connection `conn`.
    pub(super) fn paused_for(&self, conn: u64) -> bool {
        self.paused_for == Some(conn)
    }

    /// A resend's pause for failed connection `conn` is over.
    pub(super) fn pause_over(&mut self, conn: u64) {
        self.paused_for = Some(conn);
    }
}

/// One session's hold episode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Commands go to the master.
    #[default]
    Idle,
    /// Commands wait for a master since `since`.
    Holding {
        since: Instant,
        pause: Option<Resend>,
    },
    /// The hold timeout passed (or the cap on held clients was reached): commands fail at
    /// once until a master is routable again. A pause in it is over.
    Expired {
        since: Instant,
        pause: Option<Resend>,
    },
}

/// A failed dispatch that waits before it is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Resend {
    /// The dispatch.
    id: u64,
    /// Until when it waits (`None`: its pause is over).
    until: Option<Instant>,
}

impl Hold {
    /// When the session must wake up: the end of a pause, or the hold timeout.
    pub(super) fn deadline(&self, timeout: Duration) -> Option<Instant> {
        let Hold::Holding { since, pause } = *self else {
            return None;
        };
        let end = since + timeout;
        match pause.and_then(|p| p.until) {
            Some(at) => Some(at.min(end)),
            None => Some(end),
        }
    }

    /// The deadline passed at `now`: the pause is over, and the hold too once the timeout
    /// passed.
    pub(super) fn on_deadline(&mut self, timeout: Duration, now: Instant) {
        let Hold::Holding { since, pause } = self else {
            return;
        };
        if let Some(p) = pause {
            if p.until.is_some_and(|at| at <= now) {
                p.until = None;
            }
        }
        if *since + timeout <= now {
            // The pause is part of the hold and ends with it: an expired hold has no deadline
            // left to wake the session, so a pause outliving it would wait forever.
            *self = Hold::Expired {
                since: *since,
                pause: pause.map(|p| Resend { until: None, ..p }),
            };
        }
    }

    /// Whether an episode is under way (the session counts as held).
    pub(super) fn active(&self) -> bool {
        *self != Hold::Idle
    }

    /// Starts an episode at `now` if none is under way; returns whether it started.
    fn start(&mut self, now: Instant) -> bool {
        if self.active() {
            return false;
        }
        *self = Hold::Holding {
            since: now,
            pause: None,
        };
        true
    }

    /// Fails fast from now on, until the episode ends.
    fn expire(&mut self) {
        if let Hold::Holding { since, pause } = *self {
            *self = Hold::Expired { since, pause };
        }
    }

    /// Makes dispatch `id` wait until `until` (only while holding).
    fn pause(&mut self, id: u64, until: Instant) -> bool {
        let Hold::Holding { pause, .. } = self else {
            return false;
        };
        *pause = Some(Resend {
            id,
            until: Some(until),
        });
        true
    }

    /// Where the pause of dispatch `id` stands at `now`; an ended pause is forgotten as it is
    /// reported.
    fn pause_of(&mut self, id: u64, now: Instant) -> Pause {
        let (Hold::Holding { pause, .. } | Hold::Expired { pause, .. }) = self else {
            return Pause::Absent;
        };
        match *pause {
            Some(p) if p.id == id && p.until.is_some_and(|at| at > now) => Pause::Waiting,
            Some(p) if p.id == id => {
                *pause = None;
                Pause::Over
            }
            _ => Pause::Absent,
        }
    }

    /// Ends the episode; returns when it started, if one was under way.
    fn end(&mut self) -> Option<Instant> {
        let since = match *self {
            Hold::Idle => None,
            Hold::Holding { since, .. } | Hold::Expired { since, .. } => Some(since),
        };
        *self = Hold::Idle;
        since
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

/// The client's error for a command that found no master: the one place a [`Reason`] becomes
/// text for a client (`ClientError` is the wire form, and `resp` knows nothing of topology).
pub(super) fn no_master(why: &Reason) -> ClientError {
    ClientError::NoMaster {
        why: why.to_string(),
    }
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
    pub(super) fn hold_for(&mut self, why: &Reason) -> Wait {
        let fail = || no_master(why);
        if matches!(self.recovery.hold, Hold::Expired { .. }) {
            return Wait::Fail(fail());
        }
        if self.recovery.hold.start(Instant::now()) {
            let held = self.ctx.held.fetch_add(1, Ordering::AcqRel) + 1;
            let m = crate::metrics::hot();
            m.holds.increment(1);
            m.held.increment(1.0);
            if held > self.ctx.dynamic.load().max_held_clients {
                self.recovery.hold.expire();
                return Wait::Fail(fail());
            }
        }
        Wait::Hold
    }

    /// Where the pause of the failed dispatch `id` stands (an ended pause is forgotten as it
    /// is reported).
    pub(super) fn pause_state(&mut self, id: u64) -> Pause {
        self.recovery.hold.pause_of(id, Instant::now())
    }

    /// Makes the failed dispatch `id` wait `pause` before it is sent again to a master that
    /// is still named: a master that just died would fail it again at once, and again,
    /// before the failover task has had time to look at it. The wait is part of the hold (so
    /// bounded by the hold timeout); returns false when the hold cannot take it.
    pub(super) fn start_pause(&mut self, id: u64, why: &Reason, pause: Duration) -> bool {
        match self.hold_for(why) {
            Wait::Hold => self.recovery.hold.pause(id, Instant::now() + pause),
            Wait::Fail(_) => false,
        }
    }

    /// Ends the hold episode (a master is routable again, or the session ends).
    pub(super) fn end_hold(&mut self) {
        if let Some(since) = self.recovery.hold.end() {
            self.ctx.held.fetch_sub(1, Ordering::AcqRel);
            let m = crate::metrics::hot();
            m.held.decrement(1.0);
            m.hold_duration.record(since.elapsed().as_secs_f64());
        }
    }

    /// Ends the hold because a master is routable again, unless a failed dispatch is still
    /// being resolved: the resolution owns the hold then (and the pause in it), and ends it
    /// when the dispatch goes again or gets its answer. Ending it here instead would restart
    /// the pause at every look at the route, and the dispatch would wait forever.
    pub(super) fn master_back(&mut self) {
        if self.recovery.hold.active() && !self.inbox.has_fault() {
            self.end_hold();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    /// A pause set to end after the hold timeout: the hold's expiry ends it too, since an
    /// expired hold has no deadline left to wake the session for it.
    #[test]
    fn expiry_ends_the_pause() {
        let now = Instant::now();
        let mut hold = Hold::default();
        assert!(hold.start(now - Duration::from_secs(3)));
        assert!(hold.pause(7, now + Duration::from_secs(60)));
        hold.on_deadline(TIMEOUT, now);
        assert!(matches!(hold, Hold::Expired { .. }));
        assert_eq!(hold.deadline(TIMEOUT), None);
        assert_eq!(hold.pause_of(7, now), Pause::Over);
        assert_eq!(hold.pause_of(7, now), Pause::Absent);
    }

    /// Idle, then holding with a pause that wakes the session before the timeout; the pause
    /// ends at its deadline while the hold goes on; ending gives the start for the metric.
    #[test]
    fn a_pause_inside_a_hold() {
        let t0 = Instant::now();
        let mut hold = Hold::default();
        assert_eq!(hold.deadline(TIMEOUT), None);
        assert!(!hold.pause(1, t0), "no pause outside a hold");
        assert!(hold.start(t0));
        assert!(!hold.start(t0), "one episode at a time");
        assert_eq!(hold.deadline(TIMEOUT), Some(t0 + TIMEOUT));
        let wake = t0 + Duration::from_millis(100);
        assert!(hold.pause(1, wake));
        assert_eq!(hold.deadline(TIMEOUT), Some(wake));
        assert_eq!(hold.pause_of(1, t0), Pause::Waiting);
        assert_eq!(hold.pause_of(2, t0), Pause::Absent);
        hold.on_deadline(TIMEOUT, wake);
        assert!(matches!(hold, Hold::Holding { .. }));
        assert_eq!(hold.deadline(TIMEOUT), Some(t0 + TIMEOUT));
        assert_eq!(hold.pause_of(1, wake), Pause::Over);
        assert_eq!(hold.end(), Some(t0));
        assert_eq!(hold, Hold::Idle);
        assert_eq!(hold.end(), None);
    }

    /// An expired hold fails fast: no deadline, no new pause, and it stays expired until it
    /// ends.
    #[test]
    fn an_expired_hold_waits_for_its_end() {
        let t0 = Instant::now();
        let mut hold = Hold::default();
        hold.start(t0);
        hold.expire();
        assert!(hold.active());
        assert_eq!(hold.deadline(TIMEOUT), None);
        assert!(!hold.pause(3, t0 + TIMEOUT));
        assert!(!hold.start(t0), "an expired episode is still under way");
        hold.on_deadline(TIMEOUT, t0 + TIMEOUT * 10);
        assert!(matches!(hold, Hold::Expired { .. }));
        assert_eq!(hold.end(), Some(t0));
    }

    /// A failed dispatch keeps the epoch it started waiting at across looks, so "a topology
    /// newer than the refusal" is measured from its own failure; another dispatch starts
    /// from the epoch it is first seen at; once resolved, nothing waits.
    #[test]
    fn a_resolving_dispatch_keeps_its_epoch() {
        let mut r = Recovery::default();
        assert!(!r.waiting());
        assert_eq!(r.resolving(7, 3), 3);
        assert!(r.waiting());
        assert_eq!(r.resolving(7, 5), 3, "the same dispatch: its first epoch");
        assert_eq!(r.resolving(8, 5), 5, "another dispatch: its own epoch");
        r.resolved();
        assert!(!r.waiting());
        assert!(!r.paused_for(4));
        r.pause_over(4);
        assert!(r.paused_for(4));
        assert!(!r.paused_for(5));
    }
}
