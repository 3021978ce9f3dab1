//! Writes to a superseded master, and how soon writes reached the new master after a change.
//!
//! A node is **superseded** from the moment the authority ([`crate::authority`]) has named
//! another master after naming it, until the authority names it again. With the bounds of each
//! [`Naming`], the interval is taken as narrow as the answers allow: it starts when the answer
//! naming the other master arrived (the change had certainly happened) and ends when the last
//! answer before the one naming the node again was sent (it had certainly not happened yet).
//! A ledger write that MONITOR shows executed by a node inside one of its intervals counts as
//! a **write to a superseded master**; whether it was also acknowledged to the client is
//! reported beside it. Writes executed while a MONITOR connection was down are not seen, so
//! the count is a lower bound.

use crate::authority::Naming;
use crate::ledger::WriteId;
use crate::monitor::Exec;
use crate::worker::Clock;

/// Examples kept.
const EXAMPLES: usize = 10;

/// A node superseded during `[from_us, to_us)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interval {
    /// Node index.
    pub(crate) node: usize,
    /// Start, µs since the start of the run.
    pub(crate) from_us: i64,
    /// End (`i64::MAX`: until the end of the run).
    pub(crate) to_us: i64,
}

/// Every interval in which a node was superseded.
pub(crate) fn intervals(namings: &[Naming]) -> Vec<Interval> {
    let mut out = Vec::new();
    for (i, n) in namings.iter().enumerate() {
        let (Some(node), Some(next)) = (n.node, namings.get(i + 1)) else {
            continue;
        };
        let from_us = next.certain_us;
        let to_us = namings[i + 2..]
            .iter()
            .find(|m| m.node == Some(node))
            .map_or(i64::MAX, |m| m.earliest_us);
        if to_us > from_us {
            out.push(Interval {
                node,
                from_us,
                to_us,
            });
        }
    }
    out
}

/// One write executed by a superseded master.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct SupersededWrite {
    /// The node.
    pub(crate) node: String,
    /// The key.
    pub(crate) key: u32,
    /// The write.
    pub(crate) write: WriteId,
    /// When the node executed it, s since the start.
    pub(crate) executed_at_s: f64,
    /// Since when the node was superseded, s since the start.
    pub(crate) superseded_since_s: f64,
    /// When the client got `+OK` for it, if it did.
    pub(crate) acked_at_s: Option<f64>,
}

/// The writes executed by superseded masters.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct Findings {
    /// How many.
    pub(crate) writes: u64,
    /// How many of them were acknowledged.
    pub(crate) acknowledged: u64,
    /// Up to ten, earliest first.
    pub(crate) examples: Vec<SupersededWrite>,
}

/// Finds the executions inside an interval. `acked_ms` says when a write was acknowledged.
pub(crate) fn find(
    execs: &[Exec],
    intervals: &[Interval],
    nodes: &[String],
    acked_ms: &dyn Fn(WriteId) -> Option<u32>,
) -> Findings {
    let mut hits: Vec<(&Exec, &Interval)> = execs
        .iter()
        .filter_map(|e| {
            intervals
                .iter()
                .find(|i| i.node == e.node && (i.from_us..i.to_us).contains(&e.at_us))
                .map(|i| (e, i))
        })
        .collect();
    hits.sort_by_key(|(e, _)| e.at_us);
    let mut f = Findings::default();
    for (e, i) in hits {
        let acked = acked_ms(e.id);
        f.writes += 1;
        f.acknowledged += u64::from(acked.is_some());
        if f.examples.len() < EXAMPLES {
            f.examples.push(SupersededWrite {
                node: nodes.get(e.node).cloned().unwrap_or_default(),
                key: e.key,
                write: e.id,
                executed_at_s: e.at_us as f64 / 1e6,
                superseded_since_s: i.from_us as f64 / 1e6,
                acked_at_s: acked.map(|ms| f64::from(ms) / 1e3),
            });
        }
    }
    f
}

/// The first acknowledged write executed by a new master.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct FirstWrite {
    /// Executed, s since the start.
    pub(crate) executed_at_s: f64,
    /// Acknowledged, s since the start.
    pub(crate) acked_at_s: f64,
    /// Acknowledged, ms since the Unix epoch.
    pub(crate) acked_at_unix_ms: i64,
}

/// A change of master seen during the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct MasterChange {
    /// The master named before.
    pub(crate) from: String,
    /// The master named now.
    pub(crate) to: String,
    /// When the authority was first seen naming it, s since the start.
    pub(crate) named_at_s: f64,
    /// The same, ms since the Unix epoch.
    pub(crate) named_at_unix_ms: i64,
    /// The earliest-acknowledged write that the new master executed after the change could
    /// have happened (none if MONITOR saw none).
    pub(crate) first_write: Option<FirstWrite>,
}

/// Every change of master, with the first write acknowledged on the new one.
pub(crate) fn master_changes(
    namings: &[Naming],
    execs: &[Exec],
    clock: &Clock,
    acked_ms: &dyn Fn(WriteId) -> Option<u32>,
) -> Vec<MasterChange> {
    let unix_ms = |us: i64| (clock.start_unix_us + us) / 1000;
    namings
        .windows(2)
        .map(|pair| {
            let (before, now) = (&pair[0], &pair[1]);
            let first = now.node.and_then(|node| {
                execs
                    .iter()
                    .filter(|e| e.node == node && e.at_us >= now.earliest_us)
                    .filter_map(|e| acked_ms(e.id).map(|ms| (ms, e)))
                    .min_by_key(|(ms, _)| *ms)
            });
            MasterChange {
                from: before.addr.clone(),
                to: now.addr.clone(),
                named_at_s: now.certain_us as f64 / 1e6,
                named_at_unix_ms: unix_ms(now.certain_us),
                first_write: first.map(|(ms, e)| FirstWrite {
                    executed_at_s: e.at_us as f64 / 1e6,
                    acked_at_s: f64::from(ms) / 1e3,
                    acked_at_unix_ms: unix_ms(i64::from(ms) * 1000),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(node: usize, earliest_us: i64, certain_us: i64) -> Naming {
        Naming {
            addr: format!("n{node}"),
            node: Some(node),
            earliest_us,
            certain_us,
        }
    }

    fn exec(node: usize, at_us: i64, seq: u64) -> Exec {
        Exec {
            node,
            at_us,
            key: 1,
            id: WriteId { conn: 0, seq },
        }
    }

    #[test]
    fn superseded_from_the_certain_change_until_named_again() {
        let n = vec![
            naming(0, i64::MIN, 10),
            naming(1, 90, 110),
            naming(0, 190, 210),
        ];
        assert_eq!(
            intervals(&n),
            vec![
                Interval {
                    node: 0,
                    from_us: 110,
                    to_us: 190
                },
                Interval {
                    node: 1,
                    from_us: 210,
                    to_us: i64::MAX
                },
            ]
        );
    }

    #[test]
    fn counts_writes_inside_intervals_only() {
        let n = vec![naming(0, i64::MIN, 10), naming(1, 90, 110)];
        let iv = intervals(&n);
        let execs = vec![
            exec(0, 100, 0), // before the change was certain: not counted
            exec(0, 120, 1), // after: counted, acknowledged
            exec(0, 130, 2), // counted, not acknowledged
            exec(1, 140, 3), // the new master: fine
        ];
        let nodes = vec!["n0".to_string(), "n1".to_string()];
        let acked = |id: WriteId| (id.seq != 2).then_some(1u32);
        let f = find(&execs, &iv, &nodes, &acked);
        assert_eq!((f.writes, f.acknowledged), (2, 1));
        assert_eq!(f.examples[0].write.seq, 1);
        assert_eq!(f.examples[0].node, "n0");
        assert_eq!(f.examples[1].acked_at_s, None);
    }

    #[test]
    fn first_acknowledged_write_on_the_new_master() {
        let n = vec![naming(0, i64::MIN, 10), naming(1, 90, 110)];
        let execs = vec![
            exec(1, 50, 0),
            exec(1, 95, 1),
            exec(1, 100, 2),
            exec(0, 120, 3),
        ];
        let acked = |id: WriteId| match id.seq {
            0 => Some(1),
            1 => None,
            2 => Some(3),
            _ => Some(2),
        };
        let clock = Clock {
            start: tokio::time::Instant::now(),
            start_unix_us: 1_000_000,
        };
        let c = master_changes(&n, &execs, &clock, &acked);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].from.as_str(), c[0].to.as_str()), ("n0", "n1"));
        let first = c[0].first_write.clone().unwrap();
        assert_eq!(first.acked_at_s, 0.003);
        assert_eq!(first.acked_at_unix_ms, 1003);
        assert_eq!(c[0].named_at_unix_ms, 1000);
    }
}
