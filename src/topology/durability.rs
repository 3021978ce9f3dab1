//! Whether a durable-writes setting can do what it is for: keep an acknowledged write when the
//! master's whole site is lost. `WAIT` counts replicas in any site, so that takes more
//! replicas than the master's own site holds; and a setting asking for more replicas than
//! exist can never be met (every write is answered "not confirmed"). Judged from one
//! snapshot, for `/topology` and for the warnings the proxy logs when the answer changes.

use crate::config::Durability;

use super::{Role, Topology};

/// A setting judged against a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DurabilityReport {
    /// The proxy user it belongs to.
    pub user: String,
    /// Replicas that must acknowledge a write.
    pub replicas: u32,
    /// How long a write waits for them, in milliseconds.
    pub timeout_ms: u64,
    /// The master's site (absent while no master is known).
    pub master_site: Option<String>,
    /// Replicas in the master's own site.
    pub replicas_in_master_site: usize,
    /// Replicas in other sites.
    pub replicas_elsewhere: usize,
    /// Whether an acknowledged write survives the loss of the master's whole site.
    pub survives_site_loss: bool,
    /// What is wrong, in one line (absent when nothing is).
    pub warning: Option<String>,
}

/// Every setting of `settings` (user, durability) judged against `topo`.
pub fn reports(topo: &Topology, settings: &[(String, Durability)]) -> Vec<DurabilityReport> {
    settings.iter().map(|(u, d)| assess(topo, u, *d)).collect()
}

/// Judges `d` (of `user`) against `topo`.
pub fn assess(topo: &Topology, user: &str, d: Durability) -> DurabilityReport {
    let master_site = topo.master.as_ref().and_then(|m| {
        topo.nodes
            .iter()
            .find(|n| n.endpoint.addr == m.node.endpoint.addr)
            .map(|n| n.site.clone())
    });
    let replicas = topo
        .nodes
        .iter()
        .filter(|n| matches!(n.seen.as_ref().map(|o| &o.role), Some(Role::Replica { .. })));
    let (mut home, mut away) = (0, 0);
    for n in replicas {
        if Some(&n.site) == master_site.as_ref() {
            home += 1;
        } else {
            away += 1;
        }
    }
    let wanted = d.replicas as usize;
    let warning = match &master_site {
        None => None,
        Some(_) if wanted > home + away => Some(format!(
            "durability for user {user:?} asks for {wanted} replica(s) but {} are known: every write will be answered as not confirmed",
            home + away
        )),
        Some(site) if wanted <= home => Some(format!(
            "durability for user {user:?} asks for {wanted} replica(s) and the master's site {site:?} has {home} of its own: an acknowledged write may be lost with that whole site (ask for more than {home})"
        )),
        Some(_) => None,
    };
    DurabilityReport {
        user: user.to_string(),
        replicas: d.replicas,
        timeout_ms: d.timeout_ms(),
        survives_site_loss: master_site.is_some() && wanted > home && wanted <= home + away,
        master_site,
        replicas_in_master_site: home,
        replicas_elsewhere: away,
        warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Endpoint, Lease, NodeId};
    use crate::topology::fixtures::{master, observation};
    use crate::topology::{Master, NodeStatus};
    use std::sync::Arc;
    use std::time::Duration;

    fn endpoint(addr: &str) -> Endpoint {
        Endpoint::plain(addr.parse().unwrap(), addr.into())
    }

    fn node(site: &str, addr: &str, master: bool) -> NodeStatus {
        let role = if master {
            Role::Master
        } else {
            Role::Replica {
                master: "x:1".into(),
                link_up: true,
            }
        };
        NodeStatus {
            site: site.into(),
            endpoint: endpoint(addr),
            healthy: true,
            seen: Some(observation(role, addr, "r", "")),
            error: None,
        }
    }

    fn master_at(addr: &str) -> Arc<Master> {
        let node = Arc::new(NodeId {
            endpoint: endpoint(addr),
            run_id: addr.into(),
        });
        master(Arc::clone(&node), Lease::unbounded(node))
    }

    fn d(replicas: u32) -> Durability {
        Durability {
            replicas,
            timeout: Duration::from_millis(200),
        }
    }

    fn topo() -> Topology {
        let mut t = Topology::initial();
        t.nodes = vec![
            node("a", "10.0.0.1:6379", true),
            node("a", "10.0.0.2:6379", false),
            node("b", "10.0.1.1:6379", false),
        ];
        t.master = Some(master_at("10.0.0.1:6379"));
        t
    }

    #[test]
    fn one_replica_with_one_at_home_does_not_survive_the_site() {
        let r = assess(&topo(), "default", d(1));
        assert_eq!((r.replicas_in_master_site, r.replicas_elsewhere), (1, 1));
        assert!(!r.survives_site_loss);
        assert!(r.warning.unwrap().contains("has 1 of its own"));
    }

    #[test]
    fn two_replicas_survive_and_three_are_too_many() {
        let r = assess(&topo(), "default", d(2));
        assert!(r.survives_site_loss && r.warning.is_none());
        let r = assess(&topo(), "default", d(3));
        assert!(!r.survives_site_loss);
        assert!(r.warning.unwrap().contains("2 are known"));
    }
}
