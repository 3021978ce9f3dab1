//! The end-of-run report: one [`Report`] value, printed as text (stdout) and serialised as
//! JSON with the same content, and the exit code it implies.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::ledger::{Check, FateCounts};
use crate::stats::{Bucket, Tally, BUCKET};
use crate::superseded::{Findings, MasterChange};

/// Upper bounds (µs) of the compact histogram's buckets; one more bucket holds the rest.
const EDGES_US: [u64; 13] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000,
];
/// Width of the longest histogram bar.
const BAR: u64 = 40;

/// Latency percentiles of successful commands, µs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
    pub(crate) mean: f64,
}

/// One bucket of the compact histogram.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct HistBucket {
    /// Upper bound, µs (none: the rest).
    pub(crate) up_to_us: Option<u64>,
    /// Commands in it.
    pub(crate) count: u64,
}

/// The ledger's part of the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct LedgerReport {
    /// Writes by fate.
    pub(crate) writes: FateCounts,
    /// Where the keys were read back.
    pub(crate) verified_at: Option<String>,
    /// Why they could not be.
    pub(crate) error: Option<String>,
    /// The result.
    pub(crate) check: Option<Check>,
}

/// One MONITOR connection's record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct MonitorStat {
    /// The node.
    pub(crate) node: String,
    /// Ledger writes it saw executed by clients.
    pub(crate) writes_seen: u64,
    /// Reconnections.
    pub(crate) reconnects: u64,
    /// Time without a connection, ms (writes then are not seen).
    pub(crate) blind_ms: u64,
}

/// The superseded-master part of the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct SupersededReport {
    /// "sentinel" or "nodes".
    pub(crate) authority: &'static str,
    /// Writes executed by superseded masters.
    pub(crate) findings: Findings,
    /// Changes of master during the run.
    pub(crate) master_changes: Vec<MasterChange>,
    /// Per node.
    pub(crate) monitors: Vec<MonitorStat>,
}

/// Everything a run reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Report {
    pub(crate) target: String,
    pub(crate) connections: usize,
    pub(crate) pipeline: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) read_share: f64,
    pub(crate) elapsed_s: f64,
    /// Successful commands.
    pub(crate) ops: u64,
    pub(crate) ops_per_sec: f64,
    pub(crate) reads_ok: u64,
    pub(crate) writes_ok: u64,
    pub(crate) latency_us: Latency,
    pub(crate) histogram: Vec<HistBucket>,
    pub(crate) errors_total: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) reconnects: u64,
    pub(crate) connect_failures: u64,
    /// Width of a timeline bucket, ms.
    pub(crate) timeline_bucket_ms: u64,
    /// The run in buckets.
    pub(crate) timeline: Vec<Bucket>,
    pub(crate) ledger: Option<LedgerReport>,
    pub(crate) superseded: Option<SupersededReport>,
    /// The exit code.
    pub(crate) exit_code: u8,
}

/// The figures of a finished run, before the ledger and MONITOR parts are added.
pub(crate) fn from_tally(t: &Tally, elapsed_s: f64) -> (Latency, Vec<HistBucket>, f64) {
    let ops = t.reads_ok + t.writes_ok;
    (
        latency(&t.latency),
        compact(&t.latency),
        ops as f64 / elapsed_s.max(1e-9),
    )
}

fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

fn compact(h: &Histogram<u64>) -> Vec<HistBucket> {
    let mut out = Vec::new();
    let mut low = 0;
    for &edge in &EDGES_US {
        out.push(HistBucket {
            up_to_us: Some(edge),
            count: h.count_between(low, edge.saturating_sub(1)),
        });
        low = edge;
    }
    out.push(HistBucket {
        up_to_us: None,
        count: h.count_between(low, u64::MAX),
    });
    out
}

/// Exit code: 1 when a write was lost, reached a superseded master, or was applied though
/// refused; 3 when the run could not be checked; else 0.
pub(crate) fn exit_code(r: &Report) -> u8 {
    let check = r.ledger.as_ref().and_then(|l| l.check.as_ref());
    let bad_ledger = check.is_some_and(|c| c.lost > 0 || c.refused_applied > 0);
    let superseded = r.superseded.as_ref().is_some_and(|s| s.findings.writes > 0);
    if bad_ledger || superseded {
        return 1;
    }
    let unchecked = r.ledger.as_ref().is_some_and(|l| l.error.is_some());
    if unchecked || r.ops + r.errors_total == 0 {
        return 3;
    }
    0
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// The text report.
pub(crate) fn text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "target {}  connections {}  pipeline {}  reads {:.0}%  rate {}",
        r.target,
        r.connections,
        r.pipeline,
        r.read_share * 100.0,
        r.rate.map_or("open".into(), |x| format!("{x:.0}/s"))
    );
    let _ = writeln!(
        o,
        "ops {} in {:.2} s: {:.0} ops/s ({} reads, {} writes acknowledged)",
        r.ops, r.elapsed_s, r.ops_per_sec, r.reads_ok, r.writes_ok
    );
    let l = &r.latency_us;
    let _ = writeln!(
        o,
        "latency p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    );
    histogram_text(&mut o, &r.histogram);
    let _ = writeln!(
        o,
        "errors {}  reconnects {}  failed connection attempts {}",
        r.errors_total, r.reconnects, r.connect_failures
    );
    for (kind, n) in &r.errors {
        let _ = writeln!(o, "  {n:>8}  {kind}");
    }
    if let Some(l) = &r.ledger {
        ledger_text(&mut o, l);
    }
    if let Some(s) = &r.superseded {
        superseded_text(&mut o, s);
    }
    o
}

fn histogram_text(o: &mut String, buckets: &[HistBucket]) {
    let top = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let first = buckets.iter().position(|b| b.count > 0).unwrap_or(0);
    let last = buckets.iter().rposition(|b| b.count > 0).unwrap_or(0);
    for b in &buckets[first..=last.max(first)] {
        let label = b
            .up_to_us
            .map_or("longer".into(), |u| format!("< {}", ms(u)));
        let bar = "#".repeat(((b.count * BAR).div_ceil(top)) as usize);
        let _ = writeln!(o, "  {label:>13} {:>10}  {bar}", b.count);
    }
}

fn ledger_text(o: &mut String, l: &LedgerReport) {
    let w = &l.writes;
    let _ = writeln!(
        o,
        "writes: {} acknowledged, {} refused, {} outcome unknown, {} timed out",
        w.acked, w.refused, w.unknown, w.timed_out
    );
    if let Some(e) = &l.error {
        let _ = writeln!(o, "ledger: NOT CHECKED: {e}");
    }
    let Some(c) = &l.check else { return };
    let at = l.verified_at.as_deref().unwrap_or("?");
    let _ = writeln!(o, "ledger: {} keys read back from {at}", c.keys_checked);
    let _ = writeln!(
        o,
        "acknowledged writes lost: {} (keys holding neither their last acknowledged write nor a later one of unknown outcome)",
        c.lost
    );
    for e in &c.lost_examples {
        let expected = e.expected.map_or("-".into(), |id| id.to_string());
        let when = e.expected_acked_at_s.unwrap_or_default();
        let _ = writeln!(
            o,
            "  key {}: last acknowledged {expected} (at {when:.3} s), found {}",
            e.key, e.found
        );
    }
    if c.refused_applied > 0 {
        let _ = writeln!(
            o,
            "writes refused as not executed but applied: {}",
            c.refused_applied
        );
        for e in &c.refused_examples {
            let _ = writeln!(o, "  key {}: found {}", e.key, e.found);
        }
    }
}

fn superseded_text(o: &mut String, s: &SupersededReport) {
    let f = &s.findings;
    let _ = writeln!(
        o,
        "writes to a superseded master: {} ({} acknowledged; authority: {}; a node is superseded from the answer naming another master until it is named again)",
        f.writes, f.acknowledged, s.authority
    );
    for e in &f.examples {
        let acked = e.acked_at_s.map_or("not acknowledged".into(), |t| {
            format!("acknowledged at {t:.3} s")
        });
        let _ = writeln!(
            o,
            "  {} executed {} on key {} at {:.3} s, superseded since {:.3} s, {acked}",
            e.node, e.write, e.key, e.executed_at_s, e.superseded_since_s
        );
    }
    for c in &s.master_changes {
        let first = c.first_write.as_ref().map_or("none seen".into(), |w| {
            format!("acknowledged at {:.3} s", w.acked_at_s)
        });
        let _ = writeln!(
            o,
            "master change {} -> {} seen at {:.3} s; first write on the new master {first}",
            c.from, c.to, c.named_at_s
        );
    }
    for m in &s.monitors {
        let _ = writeln!(
            o,
            "  MONITOR {}: {} writes seen, {} reconnects, {} ms without a connection",
            m.node, m.writes_seen, m.reconnects, m.blind_ms
        );
    }
}

/// The timeline bucket width, ms.
pub(crate) fn bucket_ms() -> u64 {
    BUCKET.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Example;
    use crate::ledger::WriteId;

    fn report() -> Report {
        let mut t = Tally::default();
        for us in [50, 150, 150, 700, 3000] {
            t.ok(true, us, std::time::Duration::ZERO);
        }
        t.error("READONLY", std::time::Duration::ZERO);
        let (latency_us, histogram, ops_per_sec) = from_tally(&t, 2.0);
        Report {
            target: "127.0.0.1:1".into(),
            connections: 2,
            pipeline: 1,
            rate: None,
            read_share: 0.0,
            elapsed_s: 2.0,
            ops: 5,
            ops_per_sec,
            reads_ok: 0,
            writes_ok: 5,
            latency_us,
            histogram,
            errors_total: t.error_count(),
            errors: t.errors.clone(),
            reconnects: 0,
            connect_failures: 0,
            timeline_bucket_ms: bucket_ms(),
            timeline: t.timeline.clone(),
            ledger: Some(LedgerReport {
                verified_at: Some("127.0.0.1:1".into()),
                check: Some(Check::default()),
                ..Default::default()
            }),
            superseded: None,
            exit_code: 0,
        }
    }

    #[test]
    fn figures_and_text() {
        let r = report();
        assert_eq!(r.ops_per_sec, 2.5);
        assert_eq!(r.latency_us.p50, 150);
        assert_eq!(r.histogram[0].count, 1);
        assert_eq!(r.histogram[1].count, 2);
        assert_eq!(r.histogram.iter().map(|b| b.count).sum::<u64>(), 5);
        let text = text(&r);
        assert!(text.contains("ops 5 in 2.00 s: 2 ops/s"), "{text}");
        assert!(text.contains("p50 0.150 ms"), "{text}");
        assert!(text.contains("       1  READONLY"), "{text}");
        assert!(text.contains("acknowledged writes lost: 0"), "{text}");
        assert!(
            text.contains("< 0.200 ms          2  ########################################"),
            "{text}"
        );
        assert_eq!(exit_code(&r), 0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["latency_us"]["p50"], 150);
        assert_eq!(json["ledger"]["check"]["lost"], 0);
    }

    #[test]
    fn exit_codes() {
        let mut r = report();
        let check = r.ledger.as_mut().unwrap().check.as_mut().unwrap();
        check.lost = 1;
        check.lost_examples.push(Example {
            key: 3,
            expected: Some(WriteId { conn: 1, seq: 9 }),
            expected_acked_at_s: Some(1.5),
            found: "nothing".into(),
        });
        assert_eq!(exit_code(&r), 1);
        assert!(text(&r).contains("key 3: last acknowledged c1#9 (at 1.500 s), found nothing"));
        let mut r = report();
        r.ledger.as_mut().unwrap().check = None;
        r.ledger.as_mut().unwrap().error = Some("down".into());
        assert_eq!(exit_code(&r), 3);
        assert!(text(&r).contains("ledger: NOT CHECKED: down"));
    }
}
