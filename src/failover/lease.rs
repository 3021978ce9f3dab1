//! How long the authority's word on a master is worth: the write lease's rules, as pure
//! functions of what the Sentinels (or the voting members) answered and when they were asked.
//!
//! **Sentinel.** Sentinel promotes a replica only after the Sentinels that agree the master is
//! down (at least `quorum` of them, the leader among them) each counted `down-after-milliseconds`
//! without a valid answer from it. A Sentinel that named the master, not troubled, in an
//! answer to a query sent at `sent`, while counting `down_count` towards declaring it down,
//! cannot declare it down before `sent - down_count + down_after`. If confirmations come from
//! more Sentinels than can be left out of any quorum (`voters - quorum + 1`, and never fewer
//! than a majority), every quorum that could promote someone includes one of them, so no
//! promotion happens before the `needed`-th latest of their deadlines. The lease runs to that
//! instant, shortened by a margin that covers the way from the lease check to the master.
//!
//! **Nodes** (an orchestrator decides): the operator states how long the orchestrator waits
//! before promoting; a probe that reached a voting member, sent at `sent`, is worth until
//! `sent + lease`, and the lease holds while a majority of the members are worth it.
//!
//! **Active-active** needs no lease: every site is writable by design.

use std::time::{Duration, Instant};

/// What the lease is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The operator's lease length (never used beyond the authority's own limit).
    pub configured: Option<Duration>,
    /// Nodes authority: how long the orchestrator waits before it promotes (no lease when
    /// unset).
    pub promotion_delay: Option<Duration>,
    /// Nodes authority: voting members that hold no data, checked for reachability only.
    pub witnesses: Vec<String>,
}

/// Room kept between the lease's end and the earliest promotion: the time a command may take
/// from the lease check to the master, and Sentinel's timer granularity (100 ms).
pub fn margin(limit: Duration) -> Duration {
    (limit / 10).max(Duration::from_millis(100))
}

/// The lease length under a promotion delay of `limit` (Sentinel's `down-after-milliseconds`,
/// the orchestrator's delay): the configured one, never longer than the limit less the margin.
pub fn length(configured: Option<Duration>, limit: Duration) -> Duration {
    let max = limit.saturating_sub(margin(limit));
    configured.map_or(max, |c| c.min(max))
}

/// Confirmations needed out of `voters` Sentinels whose failover quorum is `quorum`: enough
/// that every set of `quorum` Sentinels includes one, and a majority.
pub fn sentinels_needed(voters: usize, quorum: usize) -> usize {
    let majority = voters / 2 + 1;
    majority.max((voters + 1).saturating_sub(quorum.max(1)))
}

/// One Sentinel's confirmation of the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// When the query was sent.
    pub sent: Instant,
    /// How long that Sentinel had been counting towards declaring the master down.
    pub down_count: Duration,
}

impl Confirmation {
    /// Until when it keeps the lease, for a lease of `length`.
    pub fn until(&self, length: Duration) -> Instant {
        self.sent
            .checked_sub(self.down_count)
            .unwrap_or(self.sent)
            .checked_add(length)
            .unwrap_or(self.sent)
    }
}

/// The instant until which at least `needed` of the deadlines hold (`None`: fewer than
/// `needed` deadlines).
pub fn held_until(mut deadlines: Vec<Instant>, needed: usize) -> Option<Instant> {
    if needed == 0 || deadlines.len() < needed {
        return None;
    }
    deadlines.sort_unstable_by(|a, b| b.cmp(a));
    deadlines.get(needed - 1).copied()
}

/// The deadline a set of Sentinel confirmations supports.
pub fn sentinel_until(
    confirmations: &[Confirmation],
    needed: usize,
    length: Duration,
) -> Option<Instant> {
    held_until(
        confirmations.iter().map(|c| c.until(length)).collect(),
        needed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn length_stays_inside_the_limit() {
        let da = 2000 * MS;
        assert_eq!(length(None, da), 1800 * MS);
        assert_eq!(length(Some(500 * MS), da), 500 * MS);
        assert_eq!(length(Some(5000 * MS), da), 1800 * MS);
        assert_eq!(length(None, 500 * MS), 400 * MS);
        assert_eq!(length(None, 30_000 * MS), 27_000 * MS);
    }

    #[test]
    fn needed_covers_every_quorum() {
        assert_eq!(sentinels_needed(3, 2), 2);
        assert_eq!(sentinels_needed(3, 1), 3);
        assert_eq!(sentinels_needed(5, 3), 3);
        assert_eq!(sentinels_needed(5, 2), 4);
        assert_eq!(sentinels_needed(1, 1), 1);
        assert_eq!(sentinels_needed(4, 3), 3);
    }

    #[test]
    fn deadline_is_the_needed_th_latest() {
        let t = Instant::now();
        let c = |sent_ms: u64, count_ms: u64| Confirmation {
            sent: t + Duration::from_millis(sent_ms),
            down_count: Duration::from_millis(count_ms),
        };
        let len = 1000 * MS;
        // Two of three needed: the second latest.
        let confs = [c(0, 0), c(300, 0), c(200, 0)];
        assert_eq!(sentinel_until(&confs, 2, len), Some(t + 1200 * MS));
        // A Sentinel already counting towards "down" confirms for less.
        let confs = [c(300, 250), c(200, 0)];
        assert_eq!(sentinel_until(&confs, 2, len), Some(t + 1050 * MS));
        assert_eq!(sentinel_until(&confs, 3, len), None);
        assert_eq!(held_until(Vec::new(), 0), None);
    }
}
