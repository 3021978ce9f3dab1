//! The topology as metrics: published with every snapshot, so that a dashboard shows what each
//! proxy replica believes (master, epoch, state, every node's health and role).

use std::time::Instant;

use metrics::{counter, gauge, histogram};

use crate::metrics::{
    AUTHORITY_REACHABLE, FAILOVERS, FAILOVER_DURATION, MASTER_INFO, NODE_ROLE, NODE_UP,
    SENTINELS_ANSWERING, STATE, TOPOLOGY_EPOCH, WRITE_LEASE_HELD, WRITE_LEASE_LAPSES,
};
use crate::topology::{Role, RouteState, Topology};

const STATES: [&str; 3] = ["verified", "holding", "no_master"];
const ROLES: [&str; 2] = ["master", "replica"];

/// Publishes `now`'s gauges; `before` is the previous snapshot.
pub(super) fn publish(before: &Topology, now: &Topology) {
    gauge!(TOPOLOGY_EPOCH).set(now.epoch as f64);
    for s in STATES {
        gauge!(STATE, "state" => s).set(if now.state.label() == s { 1.0 } else { 0.0 });
    }
    let label = |t: &Topology| {
        t.verified_master()
            .map(|m| (m.node.endpoint.addr.to_string(), m.node.run_id.to_string()))
    };
    if let Some((node, run_id)) = label(before).filter(|l| Some(l) != label(now).as_ref()) {
        gauge!(MASTER_INFO, "node" => node, "run_id" => run_id).set(0.0);
    }
    if let Some((node, run_id)) = label(now) {
        gauge!(MASTER_INFO, "node" => node, "run_id" => run_id).set(1.0);
    }
    for n in &now.nodes {
        let (site, node) = (n.site.clone(), n.endpoint.addr.to_string());
        gauge!(NODE_UP, "site" => site.clone(), "node" => node.clone()).set(if n.healthy {
            1.0
        } else {
            0.0
        });
        let role = n.seen.as_ref().map(|o| match o.role {
            Role::Master => "master",
            _ => "replica",
        });
        for r in ROLES {
            let v = if role == Some(r) { 1.0 } else { 0.0 };
            gauge!(NODE_ROLE, "site" => site.clone(), "node" => node.clone(), "role" => r).set(v);
        }
    }
    // A node no longer known (dropped by a reload, gone from DNS) must not stay "up".
    for n in before
        .nodes
        .iter()
        .filter(|b| !now.nodes.iter().any(|n| n.endpoint.addr == b.endpoint.addr))
    {
        let (site, node) = (n.site.clone(), n.endpoint.addr.to_string());
        gauge!(NODE_UP, "site" => site.clone(), "node" => node.clone()).set(0.0);
        for r in ROLES {
            gauge!(NODE_ROLE, "site" => site.clone(), "node" => node.clone(), "role" => r).set(0.0);
        }
    }
    gauge!(AUTHORITY_REACHABLE).set(if now.authority.reachable { 1.0 } else { 0.0 });
    gauge!(SENTINELS_ANSWERING).set(now.authority.voters.0 as f64);
    if now.authority.lease.is_some() {
        let held = |t: &Topology| t.master.as_ref().is_some_and(|m| m.lease.valid());
        gauge!(WRITE_LEASE_HELD).set(if held(now) { 1.0 } else { 0.0 });
        let lapsed = |t: &Topology| {
            t.master
                .as_ref()
                .is_some_and(|m| !m.lease.valid() && !m.lease.is_unbounded())
                && t.state == RouteState::Holding
        };
        if lapsed(now) && !lapsed(before) && now.reason.is_lease_lapse() {
            counter!(WRITE_LEASE_LAPSES).increment(1);
        }
    }
}

/// Counts a change of master and how long the proxy had no verified one.
pub(super) fn failover(lost_at: Option<Instant>) {
    counter!(FAILOVERS).increment(1);
    if let Some(at) = lost_at {
        histogram!(FAILOVER_DURATION).record(at.elapsed().as_secs_f64());
    }
}

/// Whether `now` verifies a different master than the one `before` last had.
pub(super) fn master_changed(last_master: &Option<String>, now: &Topology) -> bool {
    now.state == RouteState::Verified
        && now.master.as_ref().is_some_and(|m| {
            last_master
                .as_deref()
                .is_some_and(|l| l != m.node.run_id.as_ref())
        })
}
