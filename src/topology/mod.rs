//! The proxy's view of the Redis deployment, published as one immutable snapshot.
//!
//! [`Topology`] says which node is the verified master (if any), what state routing is in, and
//! how every node looked at its last probes. Sessions read it once per command with a lock-free
//! load; only the failover task publishes, and a snapshot whose epoch is not higher than the
//! current one is refused, so a late writer can never roll the view back.
//!
//! Submodules: [`probe`] reads one node's state on its own connection, [`health`] runs the
//! probes with hysteresis.

pub mod catalog;
pub mod discovery;
pub mod durability;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fixtures;
pub mod health;
pub mod probe;
pub mod reason;
pub mod sentinel;
pub mod witness;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::backend::{Lease, NodeId};
pub use probe::{Observation, Role};
pub use reason::{Confirmers, Reason, Suspension};

/// Whether commands that need the master can be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteState {
    /// A master is verified: route to it.
    Verified,
    /// A change is under way (a demotion signal, a failover announced): hold commands that
    /// need the master until a master is verified or the hold deadline passes.
    Holding,
    /// No master can be used; `why` says why.
    NoMaster,
}

impl RouteState {
    /// Label for metrics, logs and `/topology`.
    pub fn label(&self) -> &'static str {
        match self {
            RouteState::Verified => "verified",
            RouteState::Holding => "holding",
            RouteState::NoMaster => "no_master",
        }
    }
}

/// The master commands go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Where it is and which process it is.
    pub node: Arc<NodeId>,
    /// Its replication ID when it was verified.
    pub replid: String,
    /// Redis version it reports (echoed in the proxy's HELLO reply).
    pub version: String,
    /// Modules it has loaded (echoed in the proxy's HELLO reply).
    pub modules: Vec<(String, i64)>,
    /// Commands it knows (lower case), when it said.
    pub commands: Option<Arc<std::collections::HashSet<String>>>,
    /// The write lease commands go under (see [`crate::backend::lease`]).
    pub lease: Arc<Lease>,
    /// What it said of the commands the compiled table lacks.
    pub learned: Option<Arc<crate::resp::command::learned::Learned>>,
}

impl Master {
    /// The lease's state, for `/topology`.
    pub fn lease_label(&self) -> &'static str {
        if self.lease.is_unbounded() {
            "not_needed"
        } else if self.lease.valid() {
            "held"
        } else {
            "lapsed"
        }
    }

    /// Whether the master knows command `name`; `None` when its command list is unknown.
    pub fn knows(&self, name: &[u8]) -> Option<bool> {
        let set = self.commands.as_ref()?;
        Some(set.contains(&String::from_utf8_lossy(name).to_ascii_lowercase()))
    }
}

/// How one node looked at its latest probes.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The site it belongs to.
    pub site: String,
    /// The node's name and address.
    pub endpoint: crate::backend::Endpoint,
    /// Passed its recent probes (after hysteresis).
    pub healthy: bool,
    /// Latest observation, if any probe succeeded.
    pub seen: Option<Observation>,
    /// Latest probe error, if the last probe failed.
    pub error: Option<String>,
}

/// A site's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteStatus {
    /// Name.
    pub name: String,
    /// Nodes known (from configuration, DNS, Sentinel).
    pub known: usize,
    /// Nodes passing their probes.
    pub healthy: usize,
    /// Healthy nodes needed.
    pub needed: usize,
}

impl SiteStatus {
    /// Whether the site may take traffic.
    pub fn has_quorum(&self) -> bool {
        self.known > 0 && self.healthy >= self.needed
    }
}

/// The failover authority's state, for readiness and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityStatus {
    /// `nodes`, `sentinel` or `active-active`.
    pub kind: &'static str,
    /// Whether the authority can be consulted from here (a majority of Sentinels answering;
    /// for the others, at least one node answering).
    pub reachable: bool,
    /// Voters answering / configured (Sentinel only).
    pub voters: (usize, usize),
    /// The write lease length in force (`None`: the authority needs none, or it is not
    /// known yet).
    pub lease: Option<std::time::Duration>,
    /// The hold timeout derived from the authority's timing (Sentinel, when none is
    /// configured): long enough for it to promote a replica.
    pub hold: Option<std::time::Duration>,
}

/// Name of the site that holds nodes learned from Sentinel and not configured.
pub const LEARNED_SITE: &str = "learned-from-sentinel";

/// One published view: the routing snapshot every session reads.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Grows with every publication.
    pub epoch: u64,
    /// Routing state.
    pub state: RouteState,
    /// The verified master, when `state` is `Verified` (and the last one while `Holding`).
    pub master: Option<Arc<Master>>,
    /// Every known node.
    pub nodes: Vec<NodeStatus>,
    /// Every site.
    pub sites: Vec<SiteStatus>,
    /// The authority.
    pub authority: AuthorityStatus,
    /// Sentinels known (Sentinel authority).
    pub sentinels: Vec<crate::backend::Endpoint>,
    /// Why the last change happened.
    pub reason: Reason,
}

impl Topology {
    /// The view before the first probe round.
    pub fn initial() -> Self {
        Self {
            epoch: 0,
            state: RouteState::Holding,
            master: None,
            nodes: Vec::new(),
            sites: Vec::new(),
            authority: AuthorityStatus {
                kind: "nodes",
                reachable: false,
                voters: (0, 0),
                lease: None,
                hold: None,
            },
            sentinels: Vec::new(),
            reason: Reason::Starting,
        }
    }

    /// Why a verified master cannot take commands: its write lease lapsed before the failover
    /// task said so (it publishes the lapse with the authority's own words moments later).
    pub fn lapse_reason(&self) -> Reason {
        let master = self
            .master
            .as_ref()
            .map(|m| m.node.endpoint.to_string())
            .unwrap_or_default();
        Reason::LeaseLapsed {
            master,
            by: reason::Confirmers::Authority,
        }
    }

    /// The master this snapshot verified, whatever its lease says now (for comparing
    /// snapshots: a lease revoked since must not hide which master a snapshot named).
    pub fn verified_master(&self) -> Option<&Arc<Master>> {
        match self.state {
            RouteState::Verified => self.master.as_ref(),
            _ => None,
        }
    }

    /// The master to route to, when routing is allowed: verified, and its write lease still
    /// valid (the failover task publishes a lapse, but a session may look before it does).
    pub fn routable_master(&self) -> Option<&Arc<Master>> {
        match self.state {
            RouteState::Verified => self.master.as_ref().filter(|m| m.lease.valid()),
            _ => None,
        }
    }
}

/// Shared handle to the current snapshot.
#[derive(Debug)]
pub struct TopologyHandle {
    current: ArcSwap<Topology>,
    /// Wakes whoever follows the topology; carries nothing (the snapshot says what changed).
    changed: watch::Sender<()>,
    /// A copy of the current snapshot's epoch, written only by `publish` right after the
    /// snapshot: every command compares its lane's epoch with it, and an atomic load is
    /// cheaper than loading the snapshot.
    epoch: std::sync::atomic::AtomicU64,
}

impl TopologyHandle {
    /// A handle holding the initial view.
    pub fn new() -> Arc<Self> {
        let (changed, _) = watch::channel(());
        Arc::new(Self {
            current: ArcSwap::from_pointee(Topology::initial()),
            changed,
            epoch: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The current snapshot (cheap; do not hold it across long waits).
    pub fn load(&self) -> Arc<Topology> {
        self.current.load_full()
    }

    /// The current snapshot's epoch (a cheap check that nothing changed).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Publishes `next` if its epoch is higher than the current one. Only the failover task
    /// calls this.
    pub fn publish(&self, next: Topology) -> bool {
        let epoch = next.epoch;
        let current = self.current.load();
        if epoch <= current.epoch {
            return false;
        }
        self.current.store(Arc::new(next));
        self.epoch
            .store(epoch, std::sync::atomic::Ordering::Release);
        self.changed.send_replace(());
        true
    }

    /// Notified at every publication.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_only_grow() {
        let h = TopologyHandle::new();
        let mut t = Topology::initial();
        t.epoch = 2;
        assert!(h.publish(t.clone()));
        t.epoch = 2;
        assert!(!h.publish(t.clone()));
        t.epoch = 1;
        assert!(!h.publish(t));
        assert_eq!(h.load().epoch, 2);
        assert_eq!(h.epoch(), 2);
    }
}

/// What readiness checks and operators need to know about a snapshot (served by the admin
/// endpoint as JSON): the master, epoch, state, authority and every node and site.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Snapshot epoch.
    pub epoch: u64,
    /// `verified`, `holding` or `no_master`.
    pub state: &'static str,
    /// Why the last change happened.
    pub reason: String,
    /// The master in use (or last in use, while holding).
    pub master: Option<MasterReport>,
    /// The authority.
    pub authority: AuthorityReport,
    /// Sites.
    pub sites: Vec<SiteReport>,
    /// Nodes.
    pub nodes: Vec<NodeReport>,
}

/// The master's identity.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MasterReport {
    /// Address dialed.
    pub address: String,
    /// Name it was found under.
    pub name: String,
    /// Process identity.
    pub run_id: String,
    /// Replication ID when verified.
    pub replid: String,
    /// Redis version.
    pub version: String,
    /// The write lease: `held`, `lapsed` or `not_needed`.
    pub lease: &'static str,
    /// Time left on the lease, in milliseconds (while held).
    pub lease_remaining_ms: Option<u64>,
    /// The authority's epoch the lease was granted under.
    pub lease_epoch: u64,
}

/// The authority's reachability.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuthorityReport {
    /// `nodes`, `sentinel`, `active-active`.
    pub kind: &'static str,
    /// Whether it can be consulted from here.
    pub reachable: bool,
    /// Sentinels answering.
    pub voters_answering: usize,
    /// Sentinels configured.
    pub voters: usize,
    /// Sentinel addresses.
    pub sentinels: Vec<String>,
    /// Write lease length in milliseconds (absent where none is needed).
    pub lease_ms: Option<u64>,
    /// Hold timeout derived from the authority's timing, in milliseconds (absent when
    /// configured).
    pub derived_hold_timeout_ms: Option<u64>,
}

/// One site.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SiteReport {
    /// Name.
    pub name: String,
    /// Nodes known.
    pub known: usize,
    /// Nodes healthy.
    pub healthy: usize,
    /// Healthy nodes needed.
    pub needed: usize,
    /// Whether it takes traffic.
    pub quorum: bool,
}

/// One node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeReport {
    /// Site.
    pub site: String,
    /// Address dialed.
    pub address: String,
    /// Name it was found under.
    pub name: String,
    /// Passing its probes.
    pub healthy: bool,
    /// `master`, `replica`, or what the node says.
    pub role: Option<String>,
    /// Process identity.
    pub run_id: Option<String>,
    /// Replication ID.
    pub replid: Option<String>,
    /// Replication offset.
    pub offset: Option<i64>,
    /// Latest probe error.
    pub error: Option<String>,
}

impl Topology {
    /// The snapshot as a report.
    pub fn report(&self) -> Report {
        Report {
            epoch: self.epoch,
            state: self.state.label(),
            reason: self.reason.to_string(),
            master: self.master.as_ref().map(|m| MasterReport {
                address: m.node.endpoint.addr.to_string(),
                name: m.node.endpoint.name.to_string(),
                run_id: m.node.run_id.to_string(),
                replid: m.replid.clone(),
                version: m.version.clone(),
                lease: m.lease_label(),
                lease_remaining_ms: m
                    .lease
                    .remaining()
                    .filter(|r| !r.is_zero())
                    .map(|r| r.as_millis() as u64),
                lease_epoch: m.lease.epoch(),
            }),
            authority: AuthorityReport {
                kind: self.authority.kind,
                reachable: self.authority.reachable,
                voters_answering: self.authority.voters.0,
                voters: self.authority.voters.1,
                sentinels: self.sentinels.iter().map(|e| e.to_string()).collect(),
                lease_ms: self.authority.lease.map(|l| l.as_millis() as u64),
                derived_hold_timeout_ms: self.authority.hold.map(|h| h.as_millis() as u64),
            },
            sites: self
                .sites
                .iter()
                // The site of nodes learned from Sentinel is shown once it has any.
                .filter(|s| s.known > 0 || s.name != LEARNED_SITE)
                .map(|s| SiteReport {
                    name: s.name.clone(),
                    known: s.known,
                    healthy: s.healthy,
                    needed: s.needed,
                    quorum: s.has_quorum(),
                })
                .collect(),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeReport {
                    site: n.site.clone(),
                    address: n.endpoint.addr.to_string(),
                    name: n.endpoint.name.to_string(),
                    healthy: n.healthy,
                    role: n.seen.as_ref().map(|o| match &o.role {
                        Role::Master => "master".to_string(),
                        Role::Replica { .. } => "replica".to_string(),
                        Role::Other(r) => r.clone(),
                    }),
                    run_id: n.seen.as_ref().map(|o| o.run_id.clone()),
                    replid: n.seen.as_ref().map(|o| o.replid.clone()),
                    offset: n.seen.as_ref().map(|o| o.offset),
                    error: n.error.clone(),
                })
                .collect(),
        }
    }
}
