//! Health checking: one task per node probes it on a short interval, each on its own
//! connection, and reports every round to the failover task. A node's health flips only after
//! several consecutive probes agree (`rise` successes, `fall` failures), so one lost packet
//! does not move traffic; the raw observation is reported every round, so a role change is
//! seen at once. A re-check can be requested at any time (a demotion signal from the data
//! path) and runs immediately.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::probe::{Observation, ProbeError, Prober};
use crate::backend::Endpoint;

/// Probe timing and hysteresis.
#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Deadline of one round.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
}

/// One round's outcome for one node, after hysteresis.
#[derive(Debug, Clone)]
pub struct Report {
    /// The node.
    pub endpoint: Endpoint,
    /// Health after hysteresis.
    pub healthy: bool,
    /// Whether `healthy` changed with this round.
    pub flipped: bool,
    /// This round's observation (`None` when the probe failed, or the node was busy).
    pub seen: Option<Observation>,
    /// This round's error (for a busy node: its `-BUSY` reply, while it counts as healthy).
    pub error: Option<String>,
    /// When this round's probe was sent (a reachability confirmation is worth from then).
    pub sent: std::time::Instant,
    /// The node answered `-BUSY` (a long script): alive and busy for this long.
    pub busy_for: Option<Duration>,
}

/// Hysteresis state of one node.
#[derive(Debug, Clone, Copy)]
pub struct Hysteresis {
    /// Whether any probe finished yet: the first one decides at once, so the proxy can serve
    /// as soon as it has seen its nodes once.
    known: bool,
    healthy: bool,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Hysteresis {
    /// Starts unknown (unhealthy); the first probe sets the health, later ones need streaks.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            known: false,
            healthy: false,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// Records one probe outcome; returns whether health flipped. The first outcome always
    /// counts as a change (from unknown), so a node that fails from the start is reported with
    /// its error like one that fails later.
    pub fn observe(&mut self, ok: bool) -> bool {
        if !self.known {
            self.known = true;
            self.healthy = ok;
            return true;
        }
        if ok == self.healthy {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.streak >= needed {
            self.healthy = ok;
            self.streak = 0;
            return true;
        }
        false
    }

    /// Current health.
    pub fn healthy(&self) -> bool {
        self.healthy
    }
}

/// A running probe task for one node.
#[derive(Debug)]
pub struct Monitor {
    /// Wakes the task for an immediate round.
    recheck: Arc<Notify>,
    stop: CancellationToken,
}

impl Monitor {
    /// Starts probing; reports go to `reports`.
    pub fn spawn(mut prober: Prober, cfg: HealthConfig, reports: mpsc::Sender<Report>) -> Self {
        let recheck = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (wake, cancel) = (Arc::clone(&recheck), stop.clone());
        tokio::spawn(async move {
            let mut hyst = Hysteresis::new(cfg.rise, cfg.fall);
            let mut busy = false;
            loop {
                let sent = std::time::Instant::now();
                let result = prober.probe().await;
                // A node running a long script answers `-BUSY` to everything but SCRIPT KILL,
                // FUNCTION KILL and SHUTDOWN NOSAVE: it is alive and still what it was. Counting
                // it down would refuse every command, those that could stop the script
                // included. It passes, and reports no observation: the last one stands.
                let now_busy = matches!(result, Err(ProbeError::Busy(_)));
                if now_busy != busy {
                    busy = now_busy;
                    let node = prober.endpoint();
                    match &result {
                        Err(e) if busy => {
                            tracing::warn!(node = %node, reply = %e, "node busy running a script; kept healthy with its last known state")
                        }
                        _ => tracing::info!(node = %node, "node no longer answers busy"),
                    }
                }
                let ok = result.is_ok() || busy;
                let flipped = hyst.observe(ok);
                let (seen, error) = match result {
                    Ok(o) => (Some(o), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                let report = Report {
                    endpoint: prober.endpoint().clone(),
                    healthy: hyst.healthy(),
                    flipped,
                    seen,
                    error,
                    sent,
                    // Valid until the round after next is overdue: one late round is not
                    // the end.
                    busy_for: now_busy.then(|| cfg.interval * 2 + cfg.timeout),
                };
                if reports.send(report).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(cfg.interval) => {}
                    _ = wake.notified() => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
        Self { recheck, stop }
    }

    /// Probes now instead of at the next interval.
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_only_after_streaks() {
        let mut h = Hysteresis::new(2, 3);
        assert!(h.observe(false), "first probe decides: unhealthy");
        assert!(!h.healthy());
        assert!(!h.observe(true));
        assert!(h.observe(true));
        assert!(h.healthy());
        assert!(!h.observe(false));
        assert!(!h.observe(true), "a success resets the failure streak");
        assert!(!h.observe(false));
        assert!(!h.observe(false));
        assert!(h.observe(false));
        assert!(!h.healthy());
        let mut first_ok = Hysteresis::new(2, 2);
        assert!(first_ok.observe(true));
    }
}
