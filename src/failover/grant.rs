//! The failover task's side of the write lease: it gives each chosen master a lease, renews it
//! from every fresh confirmation (see [`super::lease`] for the rules), revokes it when the
//! authority names another master, and publishes it to the backend pools so that new
//! connections write only under it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decide::NodeFacts;
use super::lease::{self, Confirmation};
use super::Failover;
use crate::backend::{Lease, NodeId};
use crate::config::Authority;
use crate::topology::{Confirmers, Master, Reason};

/// What a Sentinel promotion takes beyond `down-after-milliseconds`, at most (see
/// [`Failover::derived_hold`]), with room for the proxy to verify the new master.
const PROMOTION_TIME: Duration = Duration::from_secs(3);

impl Failover {
    /// The lease for master `node` with history `replid`: the current one if it is for the
    /// same process and history, else a new one (the old one is revoked for good). Renewed
    /// from the latest confirmations before it is returned.
    pub(super) fn lease_for(
        &mut self,
        node: &Arc<NodeId>,
        replid: &str,
        index: usize,
        facts: &[NodeFacts<'_>],
        addrs: &[std::net::SocketAddr],
    ) -> Arc<Lease> {
        let same = self
            .lease
            .as_ref()
            .filter(|(l, r)| l.node() == node && r == replid)
            .map(|(l, _)| Arc::clone(l));
        let lease = match same {
            Some(l) => l,
            None => {
                let l = self.new_lease(node);
                if let Some((old, _)) = self.lease.replace((Arc::clone(&l), replid.to_string())) {
                    old.revoke();
                }
                self.leases.set(Some(Arc::clone(&l)));
                l
            }
        };
        self.renew(&lease, index, facts, addrs);
        lease
    }

    /// A lease for a newly chosen master.
    fn new_lease(&self, node: &Arc<NodeId>) -> Arc<Lease> {
        if self.lease_needed() {
            Lease::new(Arc::clone(node), self.top_epoch().unwrap_or(0))
        } else {
            Lease::unbounded(Arc::clone(node))
        }
    }

    /// Whether the authority in force needs a lease.
    pub(super) fn lease_needed(&self) -> bool {
        match self.settings.authority {
            Authority::Sentinel { .. } => true,
            Authority::Nodes => self.settings.lease.promotion_delay.is_some(),
            Authority::ActiveActive => false,
        }
    }

    /// The lease length in force (`None`: no lease, or not known yet).
    pub(super) fn lease_length(&self) -> Option<Duration> {
        let limit = match self.settings.authority {
            Authority::Sentinel { .. } => self.down_after()?,
            Authority::Nodes => self.settings.lease.promotion_delay?,
            Authority::ActiveActive => return None,
        };
        Some(lease::length(self.settings.lease.configured, limit))
    }

    /// The hold timeout sessions use when none is configured (Sentinel): long enough for the
    /// Sentinels to promote a replica. A promotion takes `down-after-milliseconds` to declare
    /// the master down, then about two seconds to agree, elect a leader and promote (measured
    /// 1.2 to 2 s on loopback); a failover that takes longer than `failover-timeout` is
    /// abandoned, so waiting beyond that would not help.
    pub(super) fn derived_hold(&self) -> Option<Duration> {
        if self.settings.hold_timeout.is_some() {
            return None;
        }
        let down_after = self.down_after()?;
        let failover_timeout = self
            .views()
            .filter_map(|(_, v)| v.failover_timeout)
            .min()
            .unwrap_or(PROMOTION_TIME);
        Some(down_after + failover_timeout.min(PROMOTION_TIME))
    }

    /// Says once (and again when it changes) what the Sentinels' timing means for the lease
    /// and the hold; warns when a configured hold cannot outlast a promotion.
    pub(super) fn tell_timing(&mut self) {
        let Some(down_after) = self.down_after() else {
            return;
        };
        let told = (down_after, self.lease_length());
        if self.told_timing == Some(told) {
            return;
        }
        self.told_timing = Some(told);
        let lease = told.1.map(|l| format!("{l:?}")).unwrap_or_default();
        match (self.settings.hold_timeout, self.derived_hold()) {
            (Some(hold), _) if hold <= down_after => tracing::warn!(
                hold_timeout = ?hold,
                down_after = ?down_after,
                lease = %lease,
                "hold_timeout is shorter than the Sentinels' down-after-milliseconds: commands held during a failover will fail before any replica can be promoted"
            ),
            (Some(hold), _) => {
                tracing::info!(hold_timeout = ?hold, down_after = ?down_after, lease = %lease, "Sentinel timing read; write lease in force")
            }
            (None, derived) => tracing::info!(
                hold_timeout = ?derived.unwrap_or_default(),
                down_after = ?down_after,
                lease = %lease,
                "Sentinel timing read; write lease in force; hold_timeout derived from down-after-milliseconds (not configured)"
            ),
        }
    }

    /// The shortest `down-after-milliseconds` the Sentinels reported.
    pub(super) fn down_after(&self) -> Option<Duration> {
        self.views().filter_map(|(_, v)| v.down_after).min()
    }

    /// Every Sentinel's latest good answer, with when its query was sent.
    pub(super) fn views(
        &self,
    ) -> impl Iterator<Item = (Instant, &crate::topology::sentinel::MasterView)> + '_ {
        self.reg.sentinels.values().filter_map(|s| match &s.last {
            Some((sent, Ok(v))) => Some((*sent, v)),
            _ => None,
        })
    }

    /// The highest configuration epoch among the fresh answers.
    pub(super) fn top_epoch(&self) -> Option<u64> {
        self.votes().iter().map(|v| v.epoch).max()
    }

    /// Extends `lease` as far as the latest confirmations allow.
    fn renew(
        &self,
        lease: &Lease,
        index: usize,
        facts: &[NodeFacts<'_>],
        addrs: &[std::net::SocketAddr],
    ) {
        if lease.is_unbounded() {
            return;
        }
        let Some(length) = self.lease_length() else {
            return;
        };
        self.pace(length);
        let until = match self.settings.authority {
            Authority::Sentinel { .. } => self.sentinel_until(index, facts, addrs, length),
            Authority::Nodes => self.members_until(length),
            Authority::ActiveActive => None,
        };
        if let Some(until) = until {
            lease.renew_until(until);
        }
    }

    /// Confirmations by Sentinels that name node `index`, untroubled, at the top epoch.
    fn sentinel_until(
        &self,
        index: usize,
        facts: &[NodeFacts<'_>],
        addrs: &[std::net::SocketAddr],
        length: Duration,
    ) -> Option<Instant> {
        let top = self.top_epoch()?;
        let quorum = self
            .views()
            .filter_map(|(_, v)| v.quorum)
            .min()
            .unwrap_or(1);
        let needed = lease::sentinels_needed(self.reg.voters(), quorum);
        let confirmations: Vec<Confirmation> = self
            .views()
            .filter(|(_, v)| v.epoch == top && !v.troubled())
            .filter(|(_, v)| self.locate(&v.addr(), &v.run_id, facts, addrs) == Some(index))
            .map(|(sent, v)| Confirmation {
                sent,
                down_count: v.down_count,
            })
            .collect();
        lease::sentinel_until(&confirmations, needed, length)
    }

    /// The nodes authority: probes and witness checks that reached a majority of the voting
    /// members (configured nodes and witnesses).
    fn members_until(&self, length: Duration) -> Option<Instant> {
        let learned = self.reg.sites.len() - 1;
        let nodes = self
            .reg
            .nodes
            .values()
            .filter(|n| n.site != learned)
            .filter_map(|n| n.last.as_ref().filter(|r| r.error.is_none()))
            .map(|r| r.sent);
        let witnesses = self
            .reg
            .witnesses
            .values()
            .filter_map(|w| w.last.filter(|c| c.reached))
            .map(|c| c.sent);
        let deadlines = nodes
            .chain(witnesses)
            .filter_map(|sent| sent.checked_add(length))
            .collect();
        lease::held_until(deadlines, self.reg.members() / 2 + 1)
    }

    /// Whether a majority of the voting members answered a probe sent within the lease.
    pub(super) fn members_reachable(&self, length: Duration) -> bool {
        self.members_until(length)
            .is_some_and(|until| until > Instant::now())
    }

    /// Asks the Sentinels often enough that one slow answer does not lapse the lease.
    fn pace(&self, length: Duration) {
        if let Some(pace) = &self.sentinel_pace {
            let ms = u64::try_from((length / 4).as_millis())
                .unwrap_or(u64::MAX)
                .max(50);
            pace.store(ms, Ordering::Relaxed);
        }
    }

    /// Node index for a master that a Sentinel names by address and run_id.
    pub(super) fn locate(
        &self,
        addr: &str,
        run_id: &str,
        facts: &[NodeFacts<'_>],
        addrs: &[std::net::SocketAddr],
    ) -> Option<usize> {
        if !run_id.is_empty() {
            let by_run = facts
                .iter()
                .position(|f| f.seen.is_some_and(|o| o.run_id == run_id));
            if by_run.is_some() {
                return by_run;
            }
        }
        addrs
            .iter()
            .position(|a| a.to_string() == addr)
            .or_else(|| {
                self.reg
                    .nodes
                    .values()
                    .position(|n| n.endpoint.name.as_ref() == addr)
            })
    }

    /// Why the master in use cannot be confirmed (the text clients read when a held command
    /// finally fails).
    pub(super) fn lapse_reason(&self, master: &Master) -> Reason {
        let by = match self.settings.authority {
            Authority::Sentinel { .. } => Confirmers::Sentinels {
                answering: self.answering(),
                voters: self.reg.voters(),
            },
            _ => Confirmers::Voters,
        };
        Reason::LeaseLapsed {
            master: master.node.endpoint.to_string(),
            by,
        }
    }

    /// Sentinels whose latest good answer came from a query sent within the lease (or the
    /// freshness window before a lease length is known).
    pub(super) fn answering(&self) -> usize {
        let window = self
            .lease_length()
            .unwrap_or(self.settings.interval * 3 + Duration::from_secs(1));
        self.views()
            .filter(|(sent, _)| sent.elapsed() <= window)
            .count()
    }

    /// When the failover task must look again: the moment the lease lapses.
    pub(super) fn lease_deadline(&self) -> Option<Instant> {
        let (lease, _) = self.lease.as_ref()?;
        lease.deadline().filter(|d| *d > Instant::now())
    }
}
