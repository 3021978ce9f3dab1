//! Turning the gathered facts into a decision and publishing it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decide::{self, Choice, NodeFacts, SentinelFacts, SiteFacts, Vote};
use super::{gauges, Failover, Hold, ANNOUNCE_MAX};
use crate::backend::NodeId;
use crate::config::Authority;
use crate::topology::{
    AuthorityStatus, Master, NodeStatus, Reason, RouteState, SiteStatus, Topology,
};

impl Failover {
    /// Decides and publishes when something material changed.
    pub(super) fn decide(&mut self) {
        let sites = self.site_statuses();
        let addrs: Vec<std::net::SocketAddr> = self.reg.nodes.keys().copied().collect();
        // Owned copies, so that the decision can update the failover's own state meanwhile.
        let seen: Vec<Option<crate::topology::Observation>> =
            self.reg.nodes.values().map(|n| n.seen.clone()).collect();
        let facts: Vec<NodeFacts<'_>> = self
            .reg
            .nodes
            .values()
            .zip(&seen)
            .map(|(n, seen)| NodeFacts {
                healthy: n.last.as_ref().is_some_and(|r| r.healthy),
                site_ok: sites[n.site].has_quorum(),
                seen: seen.as_ref(),
            })
            .collect();
        let current = self.handle.load();
        let choice = match &self.settings.authority {
            // Before every node has had its first probe, a second claimant may be unseen yet.
            Authority::Nodes if self.first_probes_pending() => Choice::Wait(Reason::FirstProbes),
            Authority::Nodes => decide::by_role(&facts),
            Authority::Sentinel { .. } => self.by_sentinels(&facts, &addrs, &current.master),
            Authority::ActiveActive => self.by_preference(&facts, &sites),
        };
        let master = match &choice {
            Choice::Master(i) => self.master_of(*i, &addrs, &facts),
            _ => None,
        };
        let (state, master, reason) = self.overlay_hold(choice, master, &current.master);
        let (state, reason) = match &master {
            Some(m) if state == RouteState::Verified && !m.lease.valid() => {
                (RouteState::Holding, self.lapse_reason(m))
            }
            _ => (state, reason),
        };
        let authority = self.authority_status(&facts);
        self.tell_timing();
        let nodes = self.node_statuses();
        if !material(
            &current,
            &state,
            &master,
            &nodes,
            &sites,
            &authority,
            self.reg.sentinels.len(),
        ) {
            return;
        }
        self.retire_for(&current, &state, &master);
        self.epoch = self.epoch.max(current.epoch) + 1;
        if current.authority.reachable != authority.reachable && current.epoch > 0 {
            log_reachability(&authority);
        }
        if current.state != state
            || current.master.as_ref().map(|m| &m.node) != master.as_ref().map(|m| &m.node)
        {
            tracing::info!(
                topology.epoch = self.epoch,
                state = state.label(),
                master = master.as_ref().map(|m| m.node.endpoint.to_string()).unwrap_or_default(),
                reason = %reason,
                "topology changed"
            );
        }
        let next = Topology {
            epoch: self.epoch,
            state,
            master,
            nodes,
            sites,
            authority,
            sentinels: self
                .reg
                .sentinels
                .values()
                .map(|s| s.endpoint.clone())
                .collect(),
            reason,
        };
        self.account(&current, &next);
        if let Some(m) = next.verified_master() {
            crate::resp::command::learned::install(m.learned.clone());
        }
        self.handle.publish(next);
    }

    /// Metrics for a new snapshot: gauges, and a failover when the verified master changed.
    fn account(&mut self, before: &Topology, now: &Topology) {
        gauges::publish(before, now);
        if gauges::master_changed(&self.last_master, now) {
            gauges::failover(self.lost_at);
        }
        match now.routable_master() {
            Some(m) => {
                self.last_master = Some(m.node.run_id.to_string());
                self.lost_at = None;
            }
            None => {
                self.lost_at.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Applies a suspension: a suspended master is not used until the hold is cleared.
    fn overlay_hold(
        &mut self,
        choice: Choice,
        chosen: Option<Arc<Master>>,
        previous: &Option<Arc<Master>>,
    ) -> (RouteState, Option<Arc<Master>>, Reason) {
        if let Some(h) = &self.hold {
            if h.announced && h.since.elapsed() > ANNOUNCE_MAX && !self.failover_in_progress() {
                self.hold = None;
            }
        }
        match (choice, chosen) {
            (Choice::Master(_), Some(m)) => {
                let blocking = self.hold.as_ref().filter(|h| self.hold_blocks(h, &m.node));
                if let Some(h) = blocking {
                    let why = Reason::Suspended {
                        cause: h.cause.clone(),
                        then: None,
                    };
                    return (RouteState::Holding, Some(m), why);
                }
                self.hold = None;
                let why = Reason::Verified {
                    master: m.node.endpoint.to_string(),
                };
                (RouteState::Verified, Some(m), why)
            }
            (Choice::Refuse(why), _) => (RouteState::NoMaster, None, why),
            (Choice::Wait(why), _) => (
                RouteState::Holding,
                previous.clone(),
                why.after(self.hold.as_ref().map(|h| &h.cause)),
            ),
            (Choice::Master(_), None) => (
                RouteState::Holding,
                previous.clone(),
                Reason::Unobserved.after(self.hold.as_ref().map(|h| &h.cause)),
            ),
        }
    }

    /// Whether `node` stays suspended by `hold`: it is the suspended master and no fresh
    /// evidence cleared it (a probe after a refusal; the end of an announced failover).
    fn hold_blocks(&self, hold: &Hold, node: &Arc<NodeId>) -> bool {
        if hold.master.as_ref() != Some(node) {
            return false;
        }
        if hold.announced {
            return true;
        }
        let probed_since = self
            .reg
            .nodes
            .get(&node.endpoint.addr)
            .and_then(|n| n.seen_at)
            .is_some_and(|at| at > hold.since);
        !probed_since
    }

    /// Whether a configured node has not had its first probe verdict yet.
    fn first_probes_pending(&self) -> bool {
        let learned = self.reg.sites.len() - 1;
        self.reg
            .nodes
            .values()
            .any(|n| n.site != learned && n.last.is_none())
    }

    fn failover_in_progress(&self) -> bool {
        self.reg
            .sentinels
            .values()
            .filter_map(|s| s.last.as_ref().and_then(|(_, v)| v.as_ref().ok()))
            .any(|v| v.flags.contains("failover_in_progress"))
    }

    fn master_of(
        &mut self,
        i: usize,
        addrs: &[std::net::SocketAddr],
        facts: &[NodeFacts<'_>],
    ) -> Option<Arc<Master>> {
        let node = self.reg.nodes.get(&addrs[i])?;
        let seen = facts[i].seen?;
        let id = Arc::new(NodeId {
            endpoint: node.endpoint.clone(),
            run_id: seen.run_id.as_str().into(),
        });
        let lease = self.lease_for(&id, &seen.replid, i, facts, addrs);
        Some(Arc::new(Master {
            node: id,
            replid: seen.replid.clone(),
            version: seen.version.clone(),
            modules: seen.modules.clone(),
            commands: seen.commands.clone(),
            learned: seen.learned.clone(),
            lease,
        }))
    }

    /// Fresh Sentinel answers, as votes.
    pub(super) fn votes(&self) -> Vec<Vote> {
        let fresh = self.settings.interval * 3 + Duration::from_secs(1);
        self.reg
            .sentinels
            .values()
            .filter_map(|s| match &s.last {
                Some((at, Ok(v))) if at.elapsed() <= fresh => Some(Vote {
                    addr: v.addr(),
                    run_id: v.run_id.clone(),
                    epoch: v.epoch,
                    troubled: v.troubled(),
                }),
                _ => None,
            })
            .collect()
    }

    fn by_sentinels(
        &self,
        facts: &[NodeFacts<'_>],
        addrs: &[std::net::SocketAddr],
        current: &Option<Arc<Master>>,
    ) -> Choice {
        let votes = self.votes();
        let cur = current.as_ref().and_then(|m| {
            let i = addrs.iter().position(|a| *a == m.node.endpoint.addr)?;
            Some((i, m.replid.as_str()))
        });
        let sf = SentinelFacts {
            voters: self.reg.voters(),
            current: cur,
        };
        let locate = |v: &Vote| self.locate(&v.addr, &v.run_id, facts, addrs);
        decide::by_sentinels(&votes, facts, sf, locate)
    }

    fn by_preference(&mut self, facts: &[NodeFacts<'_>], sites: &[SiteStatus]) -> Choice {
        let now = Instant::now();
        let configured = sites.len().saturating_sub(1);
        let site_facts: Vec<SiteFacts> = (0..configured)
            .map(|i| {
                let up = sites[i].has_quorum();
                let since = if up {
                    *self.up_since.entry(i).or_insert(now)
                } else {
                    self.up_since.remove(&i);
                    now
                };
                SiteFacts {
                    priority: self.reg.sites[i].priority,
                    up,
                    up_for: now - since,
                    pending: self
                        .reg
                        .nodes
                        .values()
                        .any(|n| n.site == i && n.last.is_none()),
                }
            })
            .collect();
        let chosen =
            decide::by_preference(&site_facts, self.site_in_use, self.settings.failback_after);
        if chosen != self.site_in_use {
            tracing::info!(
                from = self
                    .site_in_use
                    .map(|i| self.reg.sites[i].name.clone())
                    .unwrap_or_default(),
                to = chosen
                    .map(|i| self.reg.sites[i].name.clone())
                    .unwrap_or_default(),
                "active-active site changed"
            );
            self.site_in_use = chosen;
        }
        let Some(site) = chosen else {
            return Choice::Wait(Reason::NoSiteQuorum);
        };
        let node = self
            .reg
            .nodes
            .values()
            .zip(facts)
            .position(|(n, f)| n.site == site && f.healthy && f.seen.is_some());
        match node {
            Some(i) => Choice::Master(i),
            None => Choice::Wait(Reason::SiteWithoutNode {
                site: self.reg.sites[site].name.clone(),
            }),
        }
    }

    fn site_statuses(&self) -> Vec<SiteStatus> {
        self.reg
            .sites
            .iter()
            .enumerate()
            .map(|(i, site)| {
                let nodes = self.reg.nodes.values().filter(|n| n.site == i);
                let known = nodes.clone().count();
                let healthy = nodes
                    .filter(|n| n.last.as_ref().is_some_and(|r| r.healthy))
                    .count();
                SiteStatus {
                    name: site.name.clone(),
                    known,
                    healthy,
                    needed: site.quorum.needed(known),
                }
            })
            .collect()
    }

    fn node_statuses(&self) -> Vec<NodeStatus> {
        self.reg
            .nodes
            .values()
            .map(|n| NodeStatus {
                site: self.reg.sites[n.site].name.clone(),
                endpoint: n.endpoint.clone(),
                healthy: n.last.as_ref().is_some_and(|r| r.healthy),
                seen: n.seen.clone(),
                error: n.last.as_ref().and_then(|r| r.error.clone()),
            })
            .collect()
    }

    fn authority_status(&self, facts: &[NodeFacts<'_>]) -> AuthorityStatus {
        match self.settings.authority {
            Authority::Sentinel { .. } => {
                let answering = self.answering();
                let voters = self.reg.voters();
                AuthorityStatus {
                    kind: "sentinel",
                    reachable: answering > voters / 2,
                    voters: (answering, voters),
                    lease: self.lease_length(),
                    hold: self.derived_hold(),
                }
            }
            Authority::Nodes | Authority::ActiveActive => AuthorityStatus {
                kind: if self.settings.authority == Authority::Nodes {
                    "nodes"
                } else {
                    "active-active"
                },
                reachable: match self.lease_length() {
                    Some(length) => self.members_reachable(length),
                    None => facts.iter().any(|f| f.seen.is_some() && f.healthy),
                },
                voters: (0, 0),
                lease: self.lease_length(),
                hold: None,
            },
        }
    }

    /// Stops connections to a master no longer in use (or suspended).
    fn retire_for(&self, current: &Topology, state: &RouteState, master: &Option<Arc<Master>>) {
        let keep = match state {
            RouteState::Verified => master.as_ref().map(|m| Arc::clone(&m.node)),
            _ => None,
        };
        let was = current.verified_master().map(|m| Arc::clone(&m.node));
        if was.is_some() && was != keep {
            self.pool.retire_nodes(|n| keep.as_deref() == Some(n));
        }
        // A verified master ends the wait for every other node's replies (a hold before it
        // left them time to arrive).
        if let Some(k) = &keep {
            self.pool.supersede(k);
        }
    }
}

/// Losing the authority is worth a warning; regaining it (or reaching it at start) is not.
fn log_reachability(a: &AuthorityStatus) {
    if a.reachable {
        tracing::info!(
            authority = a.kind,
            answering = a.voters.0,
            configured = a.voters.1,
            "authority reachable"
        );
    } else {
        tracing::warn!(
            authority = a.kind,
            answering = a.voters.0,
            configured = a.voters.1,
            "authority unreachable from here; /readyz reports unready"
        );
    }
}

/// Whether a new snapshot is worth publishing: routing changed, or a node's health or role,
/// a site's quorum, or the authority's reachability did (offsets move every round and are not
/// worth a new epoch). An unhealthy node whose probes start or stop failing is worth one too,
/// so `/topology` shows why a node never became healthy (a refused certificate); a healthy
/// node's single failed probe is not.
fn material(
    current: &Topology,
    state: &RouteState,
    master: &Option<Arc<Master>>,
    nodes: &[NodeStatus],
    sites: &[SiteStatus],
    authority: &AuthorityStatus,
    sentinels: usize,
) -> bool {
    if current.epoch == 0
        || &current.state != state
        || current.master.as_ref().map(|m| &m.node) != master.as_ref().map(|m| &m.node)
    {
        return true;
    }
    current.sites != sites
        || current.authority != *authority
        || current.sentinels.len() != sentinels
        || current.nodes.len() != nodes.len()
        || current.nodes.iter().zip(nodes).any(|(a, b)| {
            a.endpoint != b.endpoint
                || a.healthy != b.healthy
                || a.seen.as_ref().map(|o| (&o.role, &o.run_id))
                    != b.seen.as_ref().map(|o| (&o.role, &o.run_id))
                || (!b.healthy && a.error.is_some() != b.error.is_some())
        })
}
