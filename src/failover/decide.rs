//! Who is the master, as pure functions of what the probes and the Sentinels reported. No
//! I/O, no clock: the failover task gathers the facts and applies the answer.
//!
//! - `nodes`: the only healthy node reporting itself a writable master; between two claimants
//!   the one promoted from the other's history (its `master_replid2` is the other's
//!   `master_replid`); otherwise nobody (fail closed).
//! - `sentinel`: the master named at the highest configuration epoch among reachable
//!   Sentinels. Sentinel reaches a new epoch only through a majority vote, so that answer is
//!   the authorised one; it is used once a majority of the configured Sentinels name it at that
//!   epoch, or once the node itself proves it was promoted from the history the proxy was
//!   writing to. With no Sentinel reachable, the choice stays on the master it verified, but
//!   writes to it stop when its write lease runs out (see [`super::lease`]): from one proxy
//!   replica, Sentinels that died look exactly like Sentinels cut off by a partition.
//! - `active-active`: sites in priority order; traffic stays on its site while that site has
//!   quorum, moves to the best site with quorum when it loses it, and returns to a preferred
//!   site only after that site has been healthy for the failback grace period.

use std::time::Duration;

use crate::topology::{Observation, Reason};

/// One node, as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    /// Passed its recent probes.
    pub healthy: bool,
    /// Its site has quorum.
    pub site_ok: bool,
    /// Latest observation.
    pub seen: Option<&'a Observation>,
}

impl NodeFacts<'_> {
    fn writable(&self) -> Option<&Observation> {
        self.seen
            .filter(|o| self.healthy && self.site_ok && o.writable_master())
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// This node (index) is the master.
    Master(usize),
    /// Nobody, and a change is expected: hold.
    Wait(Reason),
    /// Nobody, and waiting will not help (ambiguity): refuse at once.
    Refuse(Reason),
}

/// `nodes` authority.
pub fn by_role(nodes: &[NodeFacts<'_>]) -> Choice {
    let mut claimants: Vec<(usize, &Observation)> = Vec::new();
    for (i, o) in nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.writable().map(|o| (i, o)))
    {
        // The same process reached under two addresses (configured and learned from
        // Sentinel, or through two names) is one claimant.
        if !claimants.iter().any(|(_, c)| c.run_id == o.run_id) {
            claimants.push((i, o));
        }
    }
    match claimants.as_slice() {
        [] => Choice::Wait(Reason::NoWritableMaster),
        [(i, _)] => Choice::Master(*i),
        many => successor(many).map_or_else(
            || Choice::Refuse(Reason::RivalMasters { count: many.len() }),
            Choice::Master,
        ),
    }
}

/// The claimant promoted from the history of every other claimant, if exactly one is.
fn successor(claimants: &[(usize, &Observation)]) -> Option<usize> {
    let heirs: Vec<usize> = claimants
        .iter()
        .filter(|(i, m)| {
            claimants
                .iter()
                .all(|(j, o)| i == j || promoted_from(m, &o.replid))
        })
        .map(|(i, _)| *i)
        .collect();
    match heirs.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Whether `node` was promoted from the history `replid` (a promotion keeps the old
/// replication ID as `master_replid2`).
pub fn promoted_from(node: &Observation, replid: &str) -> bool {
    !replid.is_empty() && node.replid2 == replid
}

/// What one Sentinel said in its latest round (only fresh answers are passed in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The master's address as that Sentinel names it.
    pub addr: String,
    /// Its run_id (may be empty).
    pub run_id: String,
    /// Configuration epoch.
    pub epoch: u64,
    /// Sentinel considers the master down or failing over.
    pub troubled: bool,
}

/// What the sentinel decision needs besides the votes.
#[derive(Debug, Clone, Copy)]
pub struct SentinelFacts<'a> {
    /// Configured Sentinels (voters), reachable or not.
    pub voters: usize,
    /// Index of the master in use and its replication ID, if any.
    pub current: Option<(usize, &'a str)>,
}

/// `sentinel` authority. `locate` maps a Sentinel-named address / run_id to a node index.
pub fn by_sentinels(
    votes: &[Vote],
    nodes: &[NodeFacts<'_>],
    facts: SentinelFacts<'_>,
    locate: impl Fn(&Vote) -> Option<usize>,
) -> Choice {
    let quorum = facts.voters / 2 + 1;
    let Some(top) = votes.iter().map(|v| v.epoch).max() else {
        return keep_current(nodes, facts, Reason::NoSentinel);
    };
    let at_top: Vec<&Vote> = votes.iter().filter(|v| v.epoch == top).collect();
    // The leader of a failover reports the old address at the new epoch, flagged as failing
    // over, until it has reconfigured the replicas; the others already name the promoted
    // node. Only Sentinels that are not in the middle of a change can disagree for real.
    let settled: Vec<&Vote> = at_top.iter().copied().filter(|v| !v.troubled).collect();
    let Some(&named) = settled.first() else {
        return Choice::Wait(Reason::SentinelFailingOver {
            master: at_top[0].addr.to_string(),
        });
    };
    if settled.iter().any(|v| v.addr != named.addr) {
        return Choice::Refuse(Reason::SentinelsDisagree { epoch: top });
    }
    if at_top.iter().any(|v| v.troubled && v.addr == named.addr) {
        return Choice::Wait(Reason::SentinelFailingOver {
            master: named.addr.to_string(),
        });
    }
    let at_top = settled;
    let Some(i) = locate(named) else {
        return Choice::Wait(Reason::NamedUnprobed {
            master: named.addr.to_string(),
            epoch: top,
        });
    };
    let Some(seen) = nodes[i].writable() else {
        return Choice::Wait(Reason::NamedNotReady {
            master: named.addr.to_string(),
            epoch: top,
        });
    };
    if at_top.len() >= quorum {
        return Choice::Master(i);
    }
    match facts.current {
        Some((cur, _)) if cur == i => Choice::Master(i),
        Some((_, replid)) if promoted_from(seen, replid) => Choice::Master(i),
        _ => Choice::Wait(Reason::TooFewSentinels {
            naming: at_top.len(),
            quorum,
            master: named.addr.to_string(),
            epoch: top,
        }),
    }
}

fn keep_current(nodes: &[NodeFacts<'_>], facts: SentinelFacts<'_>, why: Reason) -> Choice {
    match facts.current {
        Some((i, _)) if nodes[i].writable().is_some() => Choice::Master(i),
        _ => Choice::Wait(why),
    }
}

/// One site for the active-active decision.
#[derive(Debug, Clone, Copy)]
pub struct SiteFacts {
    /// Priority (lower is preferred).
    pub priority: u32,
    /// Has quorum now.
    pub up: bool,
    /// How long it has had quorum without interruption.
    pub up_for: Duration,
    /// Some of its nodes have not had their first probe yet.
    pub pending: bool,
}

/// `active-active` authority: returns the site index to send traffic to.
pub fn by_preference(
    sites: &[SiteFacts],
    current: Option<usize>,
    failback_after: Duration,
) -> Option<usize> {
    let mut order: Vec<usize> = (0..sites.len()).collect();
    order.sort_by_key(|&i| (sites[i].priority, i));
    match current.filter(|&c| sites.get(c).is_some_and(|s| s.up)) {
        Some(c) => {
            // Fail back only to a preferred site that has been healthy for the grace period.
            let better = order
                .iter()
                .take_while(|&&i| i != c)
                .find(|&&i| sites[i].up && sites[i].up_for >= failback_after);
            Some(better.copied().unwrap_or(c))
        }
        // Nothing in use (start-up, or every site was lost): the most preferred site that is
        // up, but not before every site preferred to it has had its first verdict; otherwise
        // whichever site answers first would take the traffic, and proxies would disagree.
        None => order
            .into_iter()
            .find(|&i| sites[i].up || sites[i].pending)
            .filter(|&i| sites[i].up),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
