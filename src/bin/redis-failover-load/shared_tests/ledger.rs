//! Unit tests of [`crate::ledger`].

use crate::ledger::*;
use crate::outcome::Fate;

fn id(conn: u32, seq: u64) -> WriteId {
    WriteId { conn, seq }
}

fn w(i: WriteId, sent_us: u64, done_us: u64) -> Write {
    Write {
        id: i,
        sent_us,
        done_us,
    }
}

#[test]
fn last_acknowledged_write_must_survive() {
    let mut k = KeyLedger::default();
    k.record(w(id(0, 0), 10, 20), Fate::Acked);
    k.record(w(id(0, 1), 30, 40), Fate::Acked);
    assert!(!k.verdict(&Found::Write(id(0, 1))).lost);
    // The first write finished before the second was sent: finding it means a loss.
    assert!(k.verdict(&Found::Write(id(0, 0))).lost);
    assert!(k.verdict(&Found::Missing).lost);
    assert!(k.verdict(&Found::Foreign).lost);
}

#[test]
fn concurrent_writes_are_both_acceptable() {
    // Two connections write the same key at overlapping times: either order is possible.
    let mut k = KeyLedger::default();
    k.record(w(id(1, 0), 10, 50), Fate::Acked);
    k.record(w(id(0, 0), 20, 40), Fate::Acked);
    assert!(!k.verdict(&Found::Write(id(0, 0))).lost);
    assert!(!k.verdict(&Found::Write(id(1, 0))).lost);
    // Recorded in the other order, the same verdicts.
    let mut k = KeyLedger::default();
    k.record(w(id(0, 0), 20, 40), Fate::Acked);
    k.record(w(id(1, 0), 10, 50), Fate::Acked);
    assert!(!k.verdict(&Found::Write(id(0, 0))).lost);
    assert!(!k.verdict(&Found::Write(id(1, 0))).lost);
}

#[test]
fn unknown_outcomes_after_the_last_ack_are_acceptable() {
    let mut k = KeyLedger::default();
    k.record(w(id(0, 0), 10, 20), Fate::Acked);
    k.record(w(id(0, 1), 30, 35), Fate::Unknown);
    k.record(w(id(0, 2), 40, NEVER), Fate::TimedOut);
    assert!(!k.verdict(&Found::Write(id(0, 0))).lost);
    assert!(!k.verdict(&Found::Write(id(0, 1))).lost);
    assert!(!k.verdict(&Found::Write(id(0, 2))).lost);
    // A later acknowledged write overwrites the unknown one, not the timed-out one.
    k.record(w(id(1, 0), 50, 60), Fate::Acked);
    assert!(k.verdict(&Found::Write(id(0, 1))).lost);
    assert!(k.verdict(&Found::Write(id(0, 0))).lost);
    assert!(!k.verdict(&Found::Write(id(0, 2))).lost);
    assert!(!k.verdict(&Found::Write(id(1, 0))).lost);
}

#[test]
fn keys_without_acknowledged_writes_cannot_lose_any() {
    let mut k = KeyLedger::default();
    k.record(w(id(0, 0), 10, 20), Fate::Unknown);
    k.record(w(id(0, 1), 30, 40), Fate::Refused);
    assert_eq!(k.verdict(&Found::Missing), Verdict::default());
    assert_eq!(k.verdict(&Found::Write(id(0, 0))), Verdict::default());
    let v = k.verdict(&Found::Write(id(0, 1)));
    assert!(v.refused_applied && !v.lost);
    // Refused writes are never acceptable values once something was acknowledged.
    k.record(w(id(0, 2), 50, 60), Fate::Acked);
    let v = k.verdict(&Found::Write(id(0, 1)));
    assert!(v.refused_applied && v.lost);
}

#[test]
fn pruning_keeps_the_ledger_small() {
    let mut k = KeyLedger::default();
    for seq in 0..1000 {
        k.record(w(id(0, seq), seq * 10, seq * 10 + 5), Fate::Acked);
    }
    assert_eq!(k.candidates.len(), 1);
    assert!(!k.verdict(&Found::Write(id(0, 999))).lost);
}

#[test]
fn ledger_check_counts_and_keeps_examples() {
    let l = Ledger::default();
    for key in 0..30u32 {
        l.record(key, w(id(0, key.into()), 1, 2), Fate::Acked);
    }
    l.record(99, w(id(1, 0), 1, 2), Fate::Refused);
    assert_eq!(l.keys().len(), 31);
    assert_eq!(l.fates().acked, 30);
    assert_eq!(l.fates().refused, 1);
    let mut found: Vec<(u32, Found)> = (0..30u32)
        .map(|k| {
            let f = if k < 12 {
                Found::Missing
            } else {
                Found::Write(id(0, k.into()))
            };
            (k, f)
        })
        .collect();
    found.push((99, Found::Write(id(1, 0))));
    found.push((1234, Found::Missing));
    let c = l.check(&found);
    assert_eq!(c.keys_checked, 31);
    assert_eq!(c.lost, 12);
    assert_eq!(c.lost_examples.len(), 10);
    assert_eq!(c.lost_examples[0].expected, Some(id(0, 0)));
    assert_eq!(c.lost_examples[0].found, "nothing");
    assert_eq!(c.refused_applied, 1);
}
