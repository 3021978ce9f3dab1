//! Whether a node is alive, as its health probes (on their own connections) see it, for the
//! connections that carry commands to it. A node that is slow to reply (a long script answered
//! with `-BUSY` to others, `CLIENT PAUSE`, `DEBUG SLEEP`) but keeps answering its probes is
//! alive: its connections keep waiting for their replies past the reply deadline. A node whose
//! probes fail until it is declared down is not: its connections give up the replies they
//! wait for at once (their outcome is unknown), instead of holding clients until the reply
//! deadline. A node whose probes answer `-BUSY` is running a long script: alive, and refusing
//! new connections' handshakes while it lasts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::lease::{now_nanos, to_nanos};

/// One node's liveness.
#[derive(Debug)]
pub struct NodeLiveness {
    /// When a probe last got an answer, `-BUSY` included (0: never).
    answered: AtomicU64,
    /// Until when the node counts as busy running a script (0: not busy).
    busy_until: AtomicU64,
    /// Cancelled when the node is declared down (replaced by a fresh one when it is back).
    down: Mutex<CancellationToken>,
}

impl NodeLiveness {
    fn new() -> Self {
        Self {
            answered: AtomicU64::new(0),
            busy_until: AtomicU64::new(0),
            down: Mutex::new(CancellationToken::new()),
        }
    }

    /// Whether a probe got an answer within `within`.
    pub fn answered_within(&self, within: Duration) -> bool {
        let at = self.answered.load(Ordering::Acquire);
        at != 0 && now_nanos().saturating_sub(at) <= within.as_nanos() as u64
    }

    /// Whether the latest probes found the node busy running a script.
    pub fn is_busy(&self) -> bool {
        now_nanos() < self.busy_until.load(Ordering::Acquire)
    }

    /// Cancelled when the node is declared down.
    pub fn down_token(&self) -> CancellationToken {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One probe round, as the liveness board needs it.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// The node answered the probe.
    pub answered: bool,
    /// It answered `-BUSY`: busy for this long.
    pub busy_for: Option<Duration>,
    /// Health after hysteresis.
    pub healthy: bool,
    /// Whether `healthy` changed with this round.
    pub flipped: bool,
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

    /// A probe round's outcome: whether the node answered, for how long it counts as busy
    /// (it answered `-BUSY`), and whether its health (after hysteresis) just turned down or up.
    pub fn report(&self, addr: SocketAddr, round: Round) {
        let node = self.node(addr);
        let now = Instant::now();
        if round.answered || round.busy_for.is_some() {
            node.answered.store(to_nanos(now), Ordering::Release);
        }
        let busy_until = round.busy_for.map_or(0, |d| to_nanos(now + d));
        node.busy_until.store(busy_until, Ordering::Release);
        let (healthy, flipped) = (round.healthy, round.flipped);
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
        let round = |answered, healthy, busy_for| Round {
            answered,
            busy_for,
            healthy,
            flipped: true,
        };
        assert!(!node.answered_within(Duration::from_secs(60)));
        board.report(addr, round(true, true, None));
        assert!(node.answered_within(Duration::from_secs(60)));
        let first = node.down_token();
        board.report(addr, round(false, false, None));
        assert!(first.is_cancelled());
        assert!(node.down_token().is_cancelled(), "down until it is back");
        board.report(addr, round(true, true, None));
        assert!(!node.down_token().is_cancelled(), "a fresh token once back");
    }

    #[test]
    fn busy_lasts_until_the_next_probe_is_due() {
        let board = Liveness::new();
        let addr: SocketAddr = ([127, 0, 0, 1], 2).into();
        let node = board.node(addr);
        let busy = |busy_for| Round {
            answered: false,
            busy_for,
            healthy: true,
            flipped: false,
        };
        assert!(!node.is_busy());
        board.report(addr, busy(Some(Duration::from_secs(10))));
        assert!(node.is_busy());
        assert!(
            node.answered_within(Duration::from_secs(1)),
            "a busy node answers"
        );
        board.report(addr, busy(None));
        assert!(!node.is_busy());
        board.report(addr, busy(Some(Duration::ZERO)));
        assert!(
            !node.is_busy(),
            "a report past its validity no longer counts"
        );
    }
}
