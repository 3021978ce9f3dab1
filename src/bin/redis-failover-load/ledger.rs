//! The write ledger: what each key must hold at the end of the run, and the check of what it
//! does hold.
//!
//! Every write is `SET key value` with a value naming the write ([`WriteId`]). For each write
//! the harness knows when it was sent and when its fate was settled (`done`): the `+OK`, an
//! error, the connection closing, or the reply deadline. Redis executes a command after it was
//! sent and before its reply arrives, so a write `w` whose `done` precedes the sending of an
//! acknowledged write `x` to the same key was certainly executed before `x` and overwritten
//! by it. The final value of a key is therefore acceptable when it comes from a write that is
//! not certainly overwritten, that is one with `done >= floor`, where `floor` is the latest
//! send time of an acknowledged write to that key, and whose outcome was acknowledged or
//! unknown. Writes refused (by Redis, or by the proxy saying "not executed") are never
//! acceptable.
//!
//! Outcomes that are unknown because the connection closed, or because the proxy answered
//! "may have been applied", are assumed to have taken effect, if at all, before the harness
//! learned of them; a timed-out write is assumed to be able to take effect at any later time
//! (its `done` is [`NEVER`]), so it is never excluded.
//!
//! A key holding anything else (nothing, an older write, a value of another run) while some
//! write to it was acknowledged counts as one **acknowledged write lost**. A key holding the
//! value of a write that was reported "not executed" counts as a **refused write applied**.
//! Only the floor, the last acknowledged write and the writes not yet overwritten are kept
//! per key, so the ledger stays as small as the keyspace times the writes in flight.
//!
//! The tests' numbered writers (`tests/support/writer.rs`) judge their writes with this ledger
//! too: each element one of them pushes onto a list is a key written once, so a [`KeyLedger`]
//! of its own says whether it was lost or applied though refused. The tests include this file
//! (through `tests/support/harness.rs`), so it names its one neighbour,
//! [`outcome`](super::outcome), through `super::` and depends on nothing else of the harness.

use std::collections::HashMap;
use std::sync::Mutex;

use smallvec::SmallVec;

use super::outcome::Fate;

/// One write: the connection (worker index) and its sequence number there. Its own type here,
/// not the workload's, so that the tests can include the ledger alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub(crate) struct WriteId {
    /// Worker index (0 for a test's writer, which is one connection).
    pub(crate) conn: u32,
    /// Sequence number of the write on that worker, from 0.
    pub(crate) seq: u64,
}

impl std::fmt::Display for WriteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}#{}", self.conn, self.seq)
    }
}

/// `done` of a write that may take effect at any time.
pub(crate) const NEVER: u64 = u64::MAX;
/// Examples kept of each finding.
const EXAMPLES: usize = 10;
/// Lock shards (keys are spread by number).
const SHARDS: usize = 16;

/// One write as the ledger records it; times in µs since the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Write {
    /// Which write.
    pub(crate) id: WriteId,
    /// When it was sent.
    pub(crate) sent_us: u64,
    /// When its fate was settled ([`NEVER`] for a timeout).
    pub(crate) done_us: u64,
}

/// The state of one key.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyLedger {
    /// The acknowledged write sent last; its send time is the floor.
    last_acked: Option<Write>,
    /// Acknowledged or unknown writes with `done >= floor` (read by the unit tests, which
    /// live in `shared_tests`).
    pub(crate) candidates: SmallVec<[WriteId; 2]>,
    /// Their `done` times, in the same order.
    candidate_done: SmallVec<[u64; 2]>,
    /// Writes refused, kept to recognise one that was applied anyway.
    refused: SmallVec<[WriteId; 1]>,
}

/// What a key held when read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// No value.
    Missing,
    /// A value no write of this run produced.
    Foreign,
    /// The value of this write.
    Write(WriteId),
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Found::Missing => f.write_str("nothing"),
            Found::Foreign => f.write_str("a value this run did not write"),
            Found::Write(id) => write!(f, "write {id}"),
        }
    }
}

/// The verdict on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Verdict {
    /// An acknowledged write is missing.
    pub(crate) lost: bool,
    /// The value comes from a write reported as not executed.
    pub(crate) refused_applied: bool,
}

impl KeyLedger {
    /// Records a write of this key and its fate.
    pub(crate) fn record(&mut self, w: Write, fate: Fate) {
        if fate == Fate::Refused {
            self.refused.push(w.id);
            return;
        }
        if fate == Fate::Acked && self.last_acked.is_none_or(|a| w.sent_us > a.sent_us) {
            self.last_acked = Some(w);
            self.prune(w.sent_us);
        }
        let floor = self.last_acked.map_or(0, |a| a.sent_us);
        if w.done_us >= floor {
            self.candidates.push(w.id);
            self.candidate_done.push(w.done_us);
        }
    }

    /// Drops the candidates settled before `floor`.
    fn prune(&mut self, floor: u64) {
        let mut i = 0;
        while i < self.candidates.len() {
            if self.candidate_done[i] < floor {
                self.candidates.swap_remove(i);
                self.candidate_done.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// The verdict given what the key holds.
    pub(crate) fn verdict(&self, found: &Found) -> Verdict {
        let id = match found {
            Found::Write(id) => Some(*id),
            _ => None,
        };
        let acceptable = id.is_some_and(|id| self.candidates.contains(&id));
        Verdict {
            lost: self.last_acked.is_some() && !acceptable,
            refused_applied: id.is_some_and(|id| self.refused.contains(&id)),
        }
    }

    /// The acknowledged write sent last.
    pub(crate) fn last_acked(&self) -> Option<Write> {
        self.last_acked
    }
}

/// One finding, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Example {
    /// Key number.
    pub(crate) key: u32,
    /// What the key should hold (the last acknowledged write), if any.
    pub(crate) expected: Option<WriteId>,
    /// When that write was acknowledged, seconds since the start.
    pub(crate) expected_acked_at_s: Option<f64>,
    /// What it held.
    pub(crate) found: String,
}

/// The result of the read-back.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct Check {
    /// Keys read back.
    pub(crate) keys_checked: u64,
    /// Keys whose last acknowledged write is missing.
    pub(crate) lost: u64,
    /// Up to ten of them.
    pub(crate) lost_examples: Vec<Example>,
    /// Keys holding a write that was reported as not executed.
    pub(crate) refused_applied: u64,
    /// Up to ten of them.
    pub(crate) refused_examples: Vec<Example>,
}

/// Writes by fate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct FateCounts {
    /// Acknowledged.
    pub(crate) acked: u64,
    /// Refused.
    pub(crate) refused: u64,
    /// Unknown (error saying so, or connection lost).
    pub(crate) unknown: u64,
    /// Unknown (no reply in time).
    pub(crate) timed_out: u64,
}

#[derive(Debug, Default)]
struct Shard {
    keys: HashMap<u32, KeyLedger>,
    fates: FateCounts,
}

/// The ledger of every key, shared by the workers (each record locks one shard briefly).
#[derive(Debug)]
pub(crate) struct Ledger {
    shards: Vec<Mutex<Shard>>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Ledger {
    fn shard(&self, key: u32) -> std::sync::MutexGuard<'_, Shard> {
        let m = &self.shards[key as usize % SHARDS];
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a write of `key` and its fate.
    pub(crate) fn record(&self, key: u32, w: Write, fate: Fate) {
        let mut shard = self.shard(key);
        let f = &mut shard.fates;
        match fate {
            Fate::Acked => f.acked += 1,
            Fate::Refused => f.refused += 1,
            Fate::Unknown => f.unknown += 1,
            Fate::TimedOut => f.timed_out += 1,
        }
        shard.keys.entry(key).or_default().record(w, fate);
    }

    /// Every key written, in order.
    pub(crate) fn keys(&self) -> Vec<u32> {
        let mut keys: Vec<u32> = self
            .shards
            .iter()
            .flat_map(|s| {
                let s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                s.keys.keys().copied().collect::<Vec<_>>()
            })
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Writes by fate, over all keys.
    pub(crate) fn fates(&self) -> FateCounts {
        let mut all = FateCounts::default();
        for s in &self.shards {
            let f = s
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .fates;
            all.acked += f.acked;
            all.refused += f.refused;
            all.unknown += f.unknown;
            all.timed_out += f.timed_out;
        }
        all
    }

    /// Checks what each key holds (`found`, in the order of [`keys`](Self::keys)).
    pub(crate) fn check(&self, found: &[(u32, Found)]) -> Check {
        let mut check = Check::default();
        for (key, f) in found {
            let shard = self.shard(*key);
            let Some(k) = shard.keys.get(key) else {
                continue;
            };
            check.keys_checked += 1;
            let v = k.verdict(f);
            let example = || Example {
                key: *key,
                expected: k.last_acked().map(|w| w.id),
                expected_acked_at_s: k.last_acked().map(|w| w.done_us as f64 / 1e6),
                found: f.to_string(),
            };
            if v.lost {
                check.lost += 1;
                if check.lost_examples.len() < EXAMPLES {
                    check.lost_examples.push(example());
                }
            }
            if v.refused_applied {
                check.refused_applied += 1;
                if check.refused_examples.len() < EXAMPLES {
                    check.refused_examples.push(example());
                }
            }
        }
        check
    }
}
