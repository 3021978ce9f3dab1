//! Whether a node is alive, as its health probes (on their own connections) see it, for the
//! connections that carry commands to it. A node that is slow to reply (a long script answered
//! with `-BUSY` to others, `CLIENT PAUSE`, `DEBUG SLEEP`) but keeps answering its probes is
//! alive: its connections keep waiting for their replies past the reply deadline. A node whose
//! probes fail until it is declared down is not: its connections give up the replies they
//! wait for at once (their outcome is unknown), instead of holding clients until the reply
//! deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The instant probe answers are counted from.
fn base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_nanos()).unwrap_or(u64::MAX)
}

/// One node's liveness.
#[derive(Debug)]
pub struct NodeLiveness {
    /// When a probe last got an answer (0: never).
    answered: AtomicU64,
    /// Cancelled when the node is declared down (replaced by a fresh one when it is back).
    down: Mutex<CancellationToken>,
}

impl NodeLiveness {
    fn new() -> Self {
        base();
        Self {
            answered: AtomicU64::new(0),
            down: Mutex::new(CancellationToken::new()),
        }
    }

    /// Whether a probe got an answer within `within`.
    pub fn answered_within(&self, within: Duration) -> bool {
        let at = self.answered.load(Ordering::Acquire);
        at != 0 && nanos(Instant::now()).saturating_sub(at) <= within.as_nanos() as u64
    }

    /// Cancelled when the node is declared down.
    pub fn down_token(&self) -> CancellationToken {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Every node's liveness, written by the failover task from the probes' reports.
#[derive(Debug, Default)]
pub struct Liveness {
    nodes: Mutex<HashMap<SocketAddr, Arc<NodeLiveness>>>,
}

impl Liveness {
    /// An empty board.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The liveness of the node at `addr`.
    pub fn node(&self, addr: SocketAddr) -> Arc<NodeLiveness> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            nodes
                .entry(addr)
                .or_insert_with(|| Arc::new(NodeLiveness::new())),
        )
    }

    /// A probe round's outcome: whether the node answered, and whether its health (after
    /// hysteresis) just turned down or up.
    pub fn report(&self, addr: SocketAddr, answered: bool, healthy: bool, flipped: bool) {
        let node = self.node(addr);
        if answered {
            node.answered
                .store(nanos(Instant::now()), Ordering::Release);
        }
        if flipped {
            let mut down = node.down.lock().unwrap_or_else(|e| e.into_inner());
            if healthy {
                if down.is_cancelled() {
                    *down = CancellationToken::new();
                }
            } else {
                down.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_downs() {
        let board = Liveness::new();
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let node = board.node(addr);
        assert!(!node.answered_within(Duration::from_secs(60)));
        board.report(addr, true, true, true);
        assert!(node.answered_within(Duration::from_secs(60)));
        let first = node.down_token();
        board.report(addr, false, false, true);
        assert!(first.is_cancelled());
        assert!(node.down_token().is_cancelled(), "down until it is back");
        board.report(addr, true, true, true);
        assert!(!node.down_token().is_cancelled(), "a fresh token once back");
    }
}
