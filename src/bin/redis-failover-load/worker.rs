//! One connection's load loop. A worker owns its connection, its [`Tally`] and its sequence of
//! writes: it sends DEPTH commands at once, reads their replies under the reply deadline,
//! counts each outcome, hands each write's fate to the [`Ledger`], and reconnects (after
//! [`BACKOFF_MIN`], doubling up to [`BACKOFF_MAX`]) when the connection fails or a reply is
//! missing. Stopping is checked between pipelines, so a pipeline in flight is always settled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{sleep, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::ledger::{Ledger, Write, NEVER};
use crate::net::{Conn, Dialer, NetError};
use crate::outcome::{self, Fate, Outcome};
use crate::stats::{Tally, Window};
use crate::workload::{Op, Workload};

/// First wait before reconnecting.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest wait before reconnecting.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Ack time of a write that was not acknowledged, in an [`AckLog`].
const NOT_ACKED: u32 = u32::MAX;

/// The run's time base: µs since the start, and the wall clock at the start (MONITOR times
/// are wall-clock times).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// The start.
    pub(crate) start: Instant,
    /// The start as µs since the Unix epoch.
    pub(crate) start_unix_us: i64,
}

impl Clock {
    /// A start `lead` from now (time for the watchers to connect before the first command).
    pub(crate) fn starting_in(lead: Duration) -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| (d + lead).as_micros() as i64);
        Self {
            start: Instant::now() + lead,
            start_unix_us: unix,
        }
    }

    /// `t` as µs since the start (0 before it).
    pub(crate) fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_micros() as u64
    }

    /// A Unix time in µs as µs since the start (negative: before it).
    pub(crate) fn us_of_unix(&self, unix_us: i64) -> i64 {
        unix_us - self.start_unix_us
    }
}

/// When each write of one worker was acknowledged (ms since the start), by sequence number.
/// Kept only when the nodes are watched, to tell which writes executed on a superseded
/// master had been acknowledged.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckLog {
    acked_ms: Vec<u32>,
}

impl AckLog {
    /// When write `seq` was acknowledged.
    pub(crate) fn acked_ms(&self, seq: u64) -> Option<u32> {
        self.acked_ms
            .get(seq as usize)
            .copied()
            .filter(|&t| t != NOT_ACKED)
    }

    fn set(&mut self, seq: u64, ms: u32) {
        let i = seq as usize;
        if self.acked_ms.len() <= i {
            self.acked_ms.resize(i + 1, NOT_ACKED);
        }
        self.acked_ms[i] = ms;
    }
}

/// What a worker needs, shared with the others.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    /// Its index (the `conn` of its writes).
    pub(crate) index: u32,
    /// The target.
    pub(crate) addr: String,
    /// Commands per pipeline.
    pub(crate) depth: usize,
    /// Reply deadline.
    pub(crate) reply_timeout: Duration,
    /// Time between pipelines under a fixed rate.
    pub(crate) period: Option<Duration>,
    /// Commands this worker may send (under --requests).
    pub(crate) budget: Option<u64>,
    /// What to send.
    pub(crate) workload: Arc<Workload>,
    /// How to connect.
    pub(crate) dialer: Dialer,
    /// Where write fates go.
    pub(crate) ledger: Option<Arc<Ledger>>,
    /// Whether to keep an [`AckLog`].
    pub(crate) log_acks: bool,
    /// The current second, read by the progress line.
    pub(crate) window: Arc<Mutex<Window>>,
    /// Time base.
    pub(crate) clock: Clock,
    /// Set when the run must end.
    pub(crate) stop: CancellationToken,
}

/// What a worker hands back.
#[derive(Debug, Default)]
pub(crate) struct Finished {
    /// Its counts.
    pub(crate) tally: Tally,
    /// Its acknowledgement times.
    pub(crate) acks: AckLog,
}

/// One settled command of a pipeline, for the window.
#[derive(Debug, Clone, Copy)]
struct Settled {
    latency_us: Option<u64>,
}

/// The worker's own mutable state.
#[derive(Debug)]
struct Run {
    w: Worker,
    done: Finished,
    rng: fastrand::Rng,
    next_seq: u64,
    sent: u64,
}

impl Worker {
    /// Runs until stopped or out of budget.
    pub(crate) async fn run(self) -> Finished {
        let mut run = Run {
            rng: fastrand::Rng::with_seed(u64::from(self.index) ^ fastrand::u64(..)),
            w: self,
            done: Finished::default(),
            next_seq: 0,
            sent: 0,
        };
        run.drive().await;
        run.done
    }
}

impl Run {
    async fn drive(&mut self) {
        let mut ticker = self.w.period.map(|p| {
            let mut t = tokio::time::interval(p);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        while let Some(mut conn) = self.connect().await {
            loop {
                if self.finished() {
                    return;
                }
                if let Some(t) = ticker.as_mut() {
                    tokio::select! {
                        _ = t.tick() => {}
                        _ = self.w.stop.cancelled() => return,
                    }
                }
                if let Err(e) = self.pipeline(&mut conn).await {
                    tracing::debug!(worker = self.w.index, error = %e, "connection failed");
                    self.done.tally.reconnects += 1;
                    self.lock_window().reconnects += 1;
                    break;
                }
            }
        }
    }

    fn finished(&self) -> bool {
        self.w.stop.is_cancelled() || self.w.budget.is_some_and(|b| self.sent >= b)
    }

    /// Connects, retrying with backoff; `None` once stopped.
    async fn connect(&mut self) -> Option<Conn> {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.finished() {
                return None;
            }
            match self.w.dialer.connect(&self.w.addr).await {
                Ok(c) => return Some(c),
                Err(e) => {
                    self.done.tally.connect_failures += 1;
                    tracing::debug!(worker = self.w.index, error = %e, "connect failed");
                }
            }
            tokio::select! {
                _ = sleep(backoff) => {}
                _ = self.w.stop.cancelled() => return None,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Sends one pipeline and settles every command in it; `Err` when the connection must be
    /// replaced.
    async fn pipeline(&mut self, conn: &mut Conn) -> Result<(), NetError> {
        let n = match self.w.budget {
            Some(b) => (b - self.sent).min(self.w.depth as u64) as usize,
            None => self.w.depth,
        };
        let ops: Vec<Op> = (0..n).map(|_| self.pick()).collect();
        let mut frames = BytesMut::new();
        for op in &ops {
            frames.extend_from_slice(&self.w.workload.frame(*op));
        }
        self.sent += n as u64;
        let sent_at = Instant::now();
        let deadline = sent_at + self.w.reply_timeout;
        let mut settled = Vec::with_capacity(n);
        let failure = match conn.send(&frames, deadline).await {
            Err(e) => Some((0, e)),
            Ok(()) => {
                self.replies(conn, &ops, sent_at, deadline, &mut settled)
                    .await
            }
        };
        let result = match failure {
            Some((i, e)) => {
                for op in &ops[i..] {
                    settled.push(self.fail(*op, sent_at, &e));
                }
                Err(e)
            }
            None => Ok(()),
        };
        self.update_window(&settled);
        result
    }

    /// Reads the replies of `ops`; on failure, the index of the first command left without a
    /// reply and why.
    async fn replies(
        &mut self,
        conn: &mut Conn,
        ops: &[Op],
        sent_at: Instant,
        deadline: Instant,
        settled: &mut Vec<Settled>,
    ) -> Option<(usize, NetError)> {
        for (i, op) in ops.iter().enumerate() {
            match conn.reply(deadline).await {
                Ok(frame) => {
                    let outcome = outcome::classify(&frame, matches!(op, Op::Write { .. }));
                    settled.push(self.settle(*op, sent_at, Instant::now(), outcome));
                }
                Err(e) => return Some((i, e)),
            }
        }
        None
    }

    fn pick(&mut self) -> Op {
        let op = self
            .w
            .workload
            .pick(&mut self.rng, self.w.index, self.next_seq);
        if matches!(op, Op::Write { .. }) {
            self.next_seq += 1;
        }
        op
    }

    /// Counts one reply.
    fn settle(&mut self, op: Op, sent: Instant, now: Instant, outcome: Outcome) -> Settled {
        let at = now.saturating_duration_since(self.w.clock.start);
        let latency_us = now.saturating_duration_since(sent).as_micros() as u64;
        let write = matches!(op, Op::Write { .. });
        let (fate, latency) = match outcome {
            Outcome::Ok => {
                self.done.tally.ok(write, latency_us, at);
                (Fate::Acked, Some(latency_us))
            }
            Outcome::Failed { kind, fate } => {
                self.done.tally.error(&kind, at);
                (fate, None)
            }
        };
        self.ledger(op, sent, now, fate);
        Settled {
            latency_us: latency,
        }
    }

    /// Counts a command whose reply will never come.
    fn fail(&mut self, op: Op, sent: Instant, e: &NetError) -> Settled {
        let now = Instant::now();
        let (kind, fate) = match e {
            NetError::Timeout => (outcome::TIMEOUT, Fate::TimedOut),
            _ => (outcome::CONNECTION_LOST, Fate::Unknown),
        };
        self.done
            .tally
            .error(kind, now.saturating_duration_since(self.w.clock.start));
        self.ledger(op, sent, now, fate);
        Settled { latency_us: None }
    }

    fn ledger(&mut self, op: Op, sent: Instant, now: Instant, fate: Fate) {
        let Op::Write { key, id } = op else { return };
        if self.w.log_acks && fate == Fate::Acked {
            let ms = self.w.clock.us(now) / 1000;
            self.done
                .acks
                .set(id.seq, u32::try_from(ms).unwrap_or(NOT_ACKED - 1));
        }
        if let Some(ledger) = &self.w.ledger {
            let done_us = if fate == Fate::TimedOut {
                NEVER
            } else {
                self.w.clock.us(now)
            };
            let write = Write {
                id,
                sent_us: self.w.clock.us(sent),
                done_us,
            };
            ledger.record(key, write, fate);
        }
    }

    fn lock_window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.w
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update_window(&self, settled: &[Settled]) {
        let mut win = self.lock_window();
        for s in settled {
            match s.latency_us {
                Some(us) => {
                    win.latency.saturating_record(us.max(1));
                    win.ok += 1;
                }
                None => win.errors += 1,
            }
        }
    }
}
