//! Test fixtures: observations and masters as the probes and the failover task make them
//! (test builds and the `fuzzing` feature only).

use std::sync::Arc;

use super::{Master, Observation, Role};
use crate::backend::{Lease, NodeId};

/// What a probe of a healthy Redis 7.0 node reports.
pub fn observation(role: Role, run_id: &str, replid: &str, replid2: &str) -> Observation {
    Observation {
        run_id: run_id.into(),
        server: "redis",
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
        commands: None,
        learned: None,
    }
}

/// A verified Redis 7.0 master `node` under `lease`.
pub fn master(node: Arc<NodeId>, lease: Arc<Lease>) -> Arc<Master> {
    Arc::new(Master {
        lease,
        node,
        replid: "r".into(),
        version: "7.0.15".into(),
        modules: Vec::new(),
        commands: None,
        learned: None,
    })
}
