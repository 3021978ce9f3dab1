//! Durable writes, seen from the operator's side: each user's setting judged against the
//! current topology (`topology::durability`), served in `/topology` and logged as a warning
//! whenever the judgement changes (a failover to another site may turn a setting that
//! survived the loss of the master's site into one that does not).

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::session::Dynamic;
use crate::topology::durability::reports;
use crate::topology::TopologyHandle;

/// Logs each warning once, when it appears, until `stop`.
pub(super) fn spawn_warnings(
    topology: Arc<TopologyHandle>,
    dynamic: Arc<ArcSwap<Dynamic>>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut changed = topology.subscribe();
        let mut shown: Vec<String> = Vec::new();
        loop {
            let settings = dynamic.load().users.durabilities();
            let now: Vec<String> = reports(&topology.load(), &settings)
                .into_iter()
                .filter_map(|r| r.warning)
                .collect();
            for w in now.iter().filter(|w| !shown.contains(w)) {
                tracing::warn!("{w}");
            }
            shown = now;
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changed.changed() => if r.is_err() { return },
            }
        }
    });
}
