//! Counting: a [`Tally`] per worker (owned by it, merged once the run ends) holds the latency
//! histogram of successful commands, the counts of successes and of errors by kind, reconnects,
//! and a timeline of 100 ms buckets; a [`Window`] per worker holds the same for the current
//! second only, shared with the progress line, which empties it every second.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histograms hold (larger values are clamped to it).
const HIST_MAX_US: u64 = 60_000_000;
/// Width of a timeline bucket.
pub(crate) const BUCKET: Duration = Duration::from_millis(100);

/// An empty latency histogram in microseconds, 1 µs to 60 s, three significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// What happened during one 100 ms bucket of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Bucket {
    /// Acknowledged writes.
    pub(crate) writes_ok: u32,
    /// Successful reads.
    pub(crate) reads_ok: u32,
    /// Errors of any kind.
    pub(crate) errors: u32,
}

/// Everything one worker counted over the whole run.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    /// Latency of successful commands, µs.
    pub(crate) latency: Histogram<u64>,
    /// Successful reads.
    pub(crate) reads_ok: u64,
    /// Acknowledged writes.
    pub(crate) writes_ok: u64,
    /// Errors by kind (error code, proxy verdict, timeout, connection lost).
    pub(crate) errors: BTreeMap<String, u64>,
    /// Connections re-established after a failure.
    pub(crate) reconnects: u64,
    /// Connection attempts that failed.
    pub(crate) connect_failures: u64,
    /// The run in 100 ms buckets.
    pub(crate) timeline: Vec<Bucket>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: histogram(),
            reads_ok: 0,
            writes_ok: 0,
            errors: BTreeMap::new(),
            reconnects: 0,
            connect_failures: 0,
            timeline: Vec::new(),
        }
    }
}

impl Tally {
    fn bucket(&mut self, at: Duration) -> &mut Bucket {
        let i = (at.as_millis() / BUCKET.as_millis()) as usize;
        if self.timeline.len() <= i {
            self.timeline.resize(i + 1, Bucket::default());
        }
        &mut self.timeline[i]
    }

    /// A successful command, answered `at` (since the start) after `latency_us`.
    pub(crate) fn ok(&mut self, write: bool, latency_us: u64, at: Duration) {
        self.latency.saturating_record(latency_us.max(1));
        let b = self.bucket(at);
        if write {
            b.writes_ok += 1;
            self.writes_ok += 1;
        } else {
            b.reads_ok += 1;
            self.reads_ok += 1;
        }
    }

    /// A failed command.
    pub(crate) fn error(&mut self, kind: &str, at: Duration) {
        self.bucket(at).errors += 1;
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// Total errors.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into this one.
    pub(crate) fn merge(&mut self, other: &Tally) {
        let _ = self.latency.add(&other.latency);
        self.reads_ok += other.reads_ok;
        self.writes_ok += other.writes_ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.reconnects += other.reconnects;
        self.connect_failures += other.connect_failures;
        if self.timeline.len() < other.timeline.len() {
            self.timeline
                .resize(other.timeline.len(), Bucket::default());
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            mine.writes_ok += theirs.writes_ok;
            mine.reads_ok += theirs.reads_ok;
            mine.errors += theirs.errors;
        }
    }
}

/// The current second of one worker, for the progress line.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// Latency of successful commands this second, µs.
    pub(crate) latency: Histogram<u64>,
    /// Successful commands this second.
    pub(crate) ok: u64,
    /// Errors this second.
    pub(crate) errors: u64,
    /// Reconnects this second.
    pub(crate) reconnects: u64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            latency: histogram(),
            ok: 0,
            errors: 0,
            reconnects: 0,
        }
    }
}

impl Window {
    /// Moves this window's counts into `into` and empties it.
    pub(crate) fn drain_into(&mut self, into: &mut Window) {
        let _ = into.latency.add(&self.latency);
        into.ok += self.ok;
        into.errors += self.errors;
        into.reconnects += self.reconnects;
        self.latency.reset();
        self.ok = 0;
        self.errors = 0;
        self.reconnects = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_and_merges() {
        let mut a = Tally::default();
        a.ok(true, 100, Duration::from_millis(50));
        a.ok(false, 300, Duration::from_millis(250));
        a.error("READONLY", Duration::from_millis(260));
        let mut b = Tally::default();
        b.ok(true, 200, Duration::from_millis(10));
        b.error("READONLY", Duration::from_millis(20));
        b.error("timeout", Duration::from_millis(20));
        b.reconnects = 2;
        a.merge(&b);
        assert_eq!((a.reads_ok, a.writes_ok, a.reconnects), (1, 2, 2));
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.errors["READONLY"], 2);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.timeline.len(), 3);
        assert_eq!(
            a.timeline[0],
            Bucket {
                writes_ok: 2,
                reads_ok: 0,
                errors: 2
            }
        );
        assert_eq!(a.timeline[2].errors, 1);
    }

    #[test]
    fn window_drains() {
        let mut w = Window::default();
        w.latency.saturating_record(5);
        w.ok = 1;
        w.errors = 2;
        let mut into = Window::default();
        w.drain_into(&mut into);
        assert_eq!((into.ok, into.errors, into.latency.len()), (1, 2, 1));
        assert_eq!((w.ok, w.errors, w.latency.len()), (0, 0, 0));
    }
}
