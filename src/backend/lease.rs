//! The write lease: permission to send commands to one master until an instant.
//!
//! A lease names a master (its identity and the authority's epoch) and carries a deadline that
//! only the failover task moves: it renews the deadline from the authority's confirmations and
//! revokes the lease for good when the authority names someone else. Everything that sends to
//! a master checks the lease at the last moment: sessions before they route a command, and the
//! backend connection right before its bytes reach the socket. A lapsed lease stops writes on
//! its own, with no message needed from the failover task: that is what keeps a proxy replica
//! on the minority side of a partition from writing to a master the majority replaced.
//!
//! Deadlines are kept as nanoseconds since a process-wide base instant, in one atomic, so a
//! check costs one clock read and one load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::NodeId;

/// The instant every lease deadline counts from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `at` as nanoseconds since the process-wide base instant (shared by the lease and the
/// liveness board: one atomic per deadline).
pub(crate) fn to_nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_nanos()).unwrap_or(u64::MAX)
}

/// Now, as [`to_nanos`] counts.
pub(crate) fn now_nanos() -> u64 {
    to_nanos(Instant::now())
}

/// A deadline that means "no lease needed" (active-active, or an authority without one).
const UNBOUNDED: u64 = u64::MAX;

/// Permission to write to one master.
#[derive(Debug)]
pub struct Lease {
    /// The master it is for.
    node: Arc<NodeId>,
    /// The authority's epoch it was granted under (Sentinel's configuration epoch; 0 where the
    /// authority has none).
    epoch: u64,
    until: AtomicU64,
    revoked: AtomicBool,
}

impl PartialEq for Lease {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Lease {}

impl Lease {
    /// A lease that starts lapsed and is valid once [`renew_until`](Self::renew_until) is
    /// called with a future instant.
    pub fn new(node: Arc<NodeId>, epoch: u64) -> Arc<Self> {
        // Touch the base first, so that no deadline is ever computed before it exists.
        base();
        Arc::new(Self {
            node,
            epoch,
            until: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
        })
    }

    /// A lease that never lapses (used where the authority needs none).
    pub fn unbounded(node: Arc<NodeId>) -> Arc<Self> {
        let lease = Self::new(node, 0);
        lease.until.store(UNBOUNDED, Ordering::Release);
        lease
    }

    /// The master it is for.
    pub fn node(&self) -> &Arc<NodeId> {
        &self.node
    }

    /// The authority's epoch it was granted under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether it never lapses.
    pub fn is_unbounded(&self) -> bool {
        self.until.load(Ordering::Acquire) == UNBOUNDED
    }

    /// Extends the deadline to `at` (never shortens it: an earlier confirmation stays true
    /// until its own deadline). A revoked lease stays revoked.
    pub fn renew_until(&self, at: Instant) {
        if !self.revoked.load(Ordering::Acquire) {
            self.until.fetch_max(to_nanos(at), Ordering::AcqRel);
        }
    }

    /// Ends the lease for good (the authority named another master).
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.until.store(0, Ordering::Release);
    }

    /// Whether commands may be sent under it now.
    pub fn valid(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until == UNBOUNDED || (!self.revoked.load(Ordering::Acquire) && now_nanos() < until)
    }

    /// When it lapses (`None`: never, or already revoked).
    pub fn deadline(&self) -> Option<Instant> {
        let until = self.until.load(Ordering::Acquire);
        if until == UNBOUNDED || self.revoked.load(Ordering::Acquire) {
            return None;
        }
        Some(base() + Duration::from_nanos(until))
    }

    /// Time left (zero once lapsed; `None` when unbounded).
    pub fn remaining(&self) -> Option<Duration> {
        if self.is_unbounded() {
            return None;
        }
        Some(self.deadline().map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        }))
    }
}

/// Where new backend connections learn which lease they write under. The failover task
/// publishes the lease of the master in use; a connection to any other node gets no right to
/// write while leases are in force.
#[derive(Debug, Default)]
pub struct LeaseBoard {
    current: ArcSwapOption<Lease>,
    enforced: AtomicBool,
}

impl LeaseBoard {
    /// A board; `enforced` says whether connections need a lease at all.
    pub fn new(enforced: bool) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwapOption::empty(),
            enforced: AtomicBool::new(enforced),
        })
    }

    /// Publishes the lease of the master in use (or none).
    pub fn set(&self, lease: Option<Arc<Lease>>) {
        self.current.store(lease);
    }

    /// The lease a new connection to `node` writes under: `None` when leases are not in force;
    /// a revoked one when `node` holds no lease.
    pub fn for_node(&self, node: &Arc<NodeId>) -> Option<Arc<Lease>> {
        if !self.enforced.load(Ordering::Acquire) {
            return None;
        }
        match self.current.load_full() {
            Some(l) if l.node() == node => Some(l),
            _ => {
                let none = Lease::new(Arc::clone(node), 0);
                none.revoke();
                Some(none)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Endpoint;

    fn node(port: u16) -> Arc<NodeId> {
        Arc::new(NodeId {
            endpoint: Endpoint::plain(([127, 0, 0, 1], port).into(), "n".into()),
            run_id: "r".into(),
        })
    }

    #[test]
    fn starts_lapsed_renews_and_lapses() {
        let l = Lease::new(node(1), 3);
        assert!(!l.valid());
        l.renew_until(Instant::now() + Duration::from_secs(60));
        assert!(l.valid());
        assert!(l.remaining().unwrap() > Duration::from_secs(59));
        // An earlier confirmation never shortens it.
        l.renew_until(Instant::now());
        assert!(l.valid());
        let short = Lease::new(node(1), 3);
        short.renew_until(Instant::now() - Duration::from_millis(1));
        assert!(!short.valid());
        assert_eq!(short.remaining(), Some(Duration::ZERO));
    }

    #[test]
    fn revoked_stays_revoked() {
        let l = Lease::new(node(1), 3);
        l.renew_until(Instant::now() + Duration::from_secs(60));
        l.revoke();
        assert!(!l.valid());
        l.renew_until(Instant::now() + Duration::from_secs(60));
        assert!(!l.valid());
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn unbounded_never_lapses() {
        let l = Lease::unbounded(node(1));
        assert!(l.valid());
        assert!(l.is_unbounded());
        assert_eq!(l.remaining(), None);
    }

    #[test]
    fn board_gives_the_lease_only_to_its_master() {
        let board = LeaseBoard::new(true);
        let (a, b) = (node(1), node(2));
        assert!(!board.for_node(&a).unwrap().valid());
        let l = Lease::new(Arc::clone(&a), 1);
        l.renew_until(Instant::now() + Duration::from_secs(60));
        board.set(Some(Arc::clone(&l)));
        assert!(board.for_node(&a).unwrap().valid());
        assert!(!board.for_node(&b).unwrap().valid());
        assert!(LeaseBoard::new(false).for_node(&a).is_none());
    }
}
