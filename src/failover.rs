//! The single writer of the topology: it reads every node's health reports, decides which node
//! is the master, and publishes a new snapshot (with a higher epoch) when anything that matters
//! changed. When the master changes, the connections to the old one are retired at once, so
//! nothing more is written to it.
//!
//! Authority `nodes` (no Sentinel): the master is the only healthy node that reports itself a
//! writable master. When several do, the one promoted from another's history wins (its
//! `master_replid2` equals the other's `master_replid`: that is what a promotion leaves
//! behind); without such a relation the proxy refuses to choose and holds writes (fail closed).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Endpoint, NodeId, Pool};
use crate::topology::health::{HealthConfig, Monitor, Report};
use crate::topology::probe::Prober;
use crate::topology::{Master, NodeStatus, Observation, RouteState, Topology, TopologyHandle};

/// How the master is chosen among healthy claimants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// This node (index into the candidates) is the master.
    Master(usize),
    /// No node can be used; the reason says why.
    None(String),
}

/// Chooses the master among `(healthy, observation)` pairs, per the `nodes` authority rules.
pub fn select_master(nodes: &[(bool, Option<&Observation>)]) -> Selection {
    let claimants: Vec<(usize, &Observation)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, (healthy, seen))| match seen {
            Some(o) if *healthy && o.writable_master() => Some((i, *o)),
            _ => None,
        })
        .collect();
    match claimants.as_slice() {
        [] => Selection::None("no healthy node reports itself a writable master".into()),
        [(i, _)] => Selection::Master(*i),
        many => successor(many).map_or_else(
            || {
                Selection::None(format!(
                    "{} nodes claim master with no promotion relation between them; refusing to choose",
                    many.len()
                ))
            },
            Selection::Master,
        ),
    }
}

/// The claimant promoted from the history of every other claimant, if exactly one is.
fn successor(claimants: &[(usize, &Observation)]) -> Option<usize> {
    let heirs: Vec<usize> = claimants
        .iter()
        .filter(|(_, m)| {
            claimants.iter().all(|(_, o)| {
                std::ptr::eq(*m, *o) || (!m.replid2.is_empty() && m.replid2 == o.replid)
            })
        })
        .map(|(i, _)| *i)
        .collect();
    match heirs.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// A node the failover task watches.
#[derive(Debug)]
struct Watched {
    endpoint: Endpoint,
    monitor: Monitor,
    last: Option<Report>,
}

/// The failover task.
#[derive(Debug)]
pub struct Failover {
    handle: Arc<TopologyHandle>,
    pool: Arc<Pool>,
    nodes: Vec<Watched>,
    reports: mpsc::Receiver<Report>,
    epoch: u64,
}

impl Failover {
    /// Starts probing `probers`' nodes.
    pub fn new(
        handle: Arc<TopologyHandle>,
        pool: Arc<Pool>,
        probers: Vec<Prober>,
        health: HealthConfig,
    ) -> Self {
        let (tx, reports) = mpsc::channel(64);
        let nodes = probers
            .into_iter()
            .map(|p| Watched {
                endpoint: p.endpoint().clone(),
                monitor: Monitor::spawn(p, health, tx.clone()),
                last: None,
            })
            .collect();
        Self {
            handle,
            pool,
            nodes,
            reports,
            epoch: 0,
        }
    }

    /// Asks every node for an immediate probe (a demotion signal was seen).
    pub fn recheck_all(&self) {
        self.nodes.iter().for_each(|n| n.monitor.recheck());
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                report = self.reports.recv() => match report {
                    Some(r) => self.on_report(r),
                    None => return,
                },
                _ = stop.cancelled() => return,
            }
        }
    }

    fn on_report(&mut self, report: Report) {
        let Some(node) = self
            .nodes
            .iter_mut()
            .find(|n| n.endpoint == report.endpoint)
        else {
            return;
        };
        if report.flipped {
            tracing::info!(
                node = %report.endpoint,
                healthy = report.healthy,
                error = report.error.as_deref().unwrap_or(""),
                "node health changed"
            );
        }
        node.last = Some(report);
        self.decide();
    }

    fn decide(&mut self) {
        let view: Vec<(bool, Option<&Observation>)> = self
            .nodes
            .iter()
            .map(|n| match &n.last {
                Some(r) => (r.healthy, r.seen.as_ref()),
                None => (false, None),
            })
            .collect();
        let (state, master, reason) = match select_master(&view) {
            Selection::Master(i) => {
                let node = &self.nodes[i];
                let Some(seen) = node.last.as_ref().and_then(|r| r.seen.as_ref()) else {
                    return;
                };
                let master = Master {
                    node: Arc::new(NodeId {
                        endpoint: node.endpoint.clone(),
                        run_id: seen.run_id.as_str().into(),
                    }),
                    replid: seen.replid.clone(),
                    version: seen.version.clone(),
                    modules: seen.modules.clone(),
                };
                let why = format!("{} is the only writable master", node.endpoint);
                (RouteState::Verified, Some(Arc::new(master)), why)
            }
            Selection::None(why) => (RouteState::NoMaster, None, why),
        };
        let nodes = self.statuses();
        let current = self.handle.load();
        if !self.material_change(&current, &state, &master, &nodes) {
            return;
        }
        self.epoch = self.epoch.max(current.epoch) + 1;
        if current.master != master {
            let keep = master.as_ref().map(|m| Arc::clone(&m.node));
            self.pool
                .retire_nodes(|n| keep.as_deref().is_some_and(|k| k == n));
            tracing::info!(
                topology.epoch = self.epoch,
                master = master.as_ref().map(|m| m.node.endpoint.to_string()).unwrap_or_default(),
                state = state.label(),
                reason = %reason,
                "topology changed"
            );
        }
        self.handle.publish(Topology {
            epoch: self.epoch,
            state,
            master,
            nodes,
            reason,
        });
    }

    fn statuses(&self) -> Vec<NodeStatus> {
        self.nodes
            .iter()
            .map(|n| NodeStatus {
                endpoint: n.endpoint.clone(),
                healthy: n.last.as_ref().is_some_and(|r| r.healthy),
                seen: n.last.as_ref().and_then(|r| r.seen.clone()),
                error: n.last.as_ref().and_then(|r| r.error.clone()),
            })
            .collect()
    }

    /// Whether a new snapshot is worth publishing: routing changed, or a node's health or
    /// role did (offsets move every round and are not worth a new epoch).
    fn material_change(
        &self,
        current: &Topology,
        state: &RouteState,
        master: &Option<Arc<Master>>,
        nodes: &[NodeStatus],
    ) -> bool {
        if current.epoch == 0 || &current.state != state || &current.master != master {
            return true;
        }
        current.nodes.len() != nodes.len()
            || current.nodes.iter().zip(nodes).any(|(a, b)| {
                a.healthy != b.healthy
                    || a.seen.as_ref().map(|o| (&o.role, &o.run_id))
                        != b.seen.as_ref().map(|o| (&o.role, &o.run_id))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Role;

    fn obs(role: Role, replid: &str, replid2: &str) -> Observation {
        Observation {
            run_id: format!("run-{replid}"),
            version: "7.0.15".into(),
            role,
            replid: replid.into(),
            replid2: replid2.into(),
            offset: 0,
            second_offset: -1,
            loading: false,
            failover_state: "no-failover".into(),
            replicas: 0,
            modules: Vec::new(),
        }
    }

    fn replica() -> Role {
        Role::Replica {
            master: "x:1".into(),
            link_up: true,
        }
    }

    #[test]
    fn unique_healthy_master_wins() {
        let a = obs(Role::Master, "r1", "0");
        let b = obs(replica(), "r1", "0");
        assert_eq!(
            select_master(&[(true, Some(&a)), (true, Some(&b))]),
            Selection::Master(0)
        );
        // An unhealthy master is not used.
        assert!(matches!(
            select_master(&[(false, Some(&a)), (true, Some(&b))]),
            Selection::None(_)
        ));
        // A loading master is not used.
        let mut loading = a.clone();
        loading.loading = true;
        assert!(matches!(
            select_master(&[(true, Some(&loading))]),
            Selection::None(_)
        ));
    }

    #[test]
    fn promoted_node_wins_over_its_old_master() {
        let old = obs(Role::Master, "r1", "0000");
        let new = obs(Role::Master, "r2", "r1");
        assert_eq!(
            select_master(&[(true, Some(&old)), (true, Some(&new))]),
            Selection::Master(1)
        );
    }

    #[test]
    fn unrelated_claimants_fail_closed() {
        let a = obs(Role::Master, "r1", "0000");
        let b = obs(Role::Master, "r9", "0000");
        assert!(matches!(
            select_master(&[(true, Some(&a)), (true, Some(&b))]),
            Selection::None(_)
        ));
    }
}
