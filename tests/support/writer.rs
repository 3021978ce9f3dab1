//! Numbered writers for the failover tests. A [`Writer`] runs on its own thread with one
//! persistent connection to the proxy and sends `RPUSH <key> <n>` for n = 1, 2, 3, ... one at a
//! time, recording for each command when it was sent, when its reply arrived and what the reply
//! was. Afterwards [`Finished`] compares what the writer was told with what a server holds:
//! acknowledged values missing from the list are lost writes, values present twice were
//! applied twice. Which writes count as lost is the load harness's ledger's call
//! ([`super::harness::ledger`]), and what an error says of a write its classification's
//! ([`super::harness::outcome`]): the tests and `redis-failover-load` judge alike. A reply
//! that does not arrive within the read timeout (a hang) ends the writer and is reported as
//! [`Outcome::Broken`], so a test never waits forever. A writer
//! started with [`Writer::start_reconnecting`] opens a new connection instead and goes on (for
//! endpoints such as HAProxy that close clients' connections when a server goes down).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{Client, Frame};
use super::harness::ledger::{Found, KeyLedger, Verdict, Write, WriteId};
use super::harness::outcome::{classify_error, proxy_failover_fate, Fate};
use super::procs::{Proxy, RedisServer};

/// What one command got.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `RPUSH` answered with the list length.
    Acked,
    /// An error reply, as the client saw it.
    Error(String),
    /// Any other reply (never expected).
    Unexpected(String),
    /// No reply: the connection failed or the read timed out (the writer stops, unless it
    /// reconnects).
    Broken(String),
}

/// One numbered command.
#[derive(Debug, Clone)]
pub struct Record {
    /// The number pushed.
    pub n: u64,
    /// When the command was written.
    pub sent: Instant,
    /// When its reply was read (or the read failed).
    pub replied: Instant,
    /// What came back.
    pub outcome: Outcome,
}

impl Record {
    /// Reply latency.
    pub fn latency(&self) -> Duration {
        self.replied - self.sent
    }

    /// What became of the write, in the ledger's terms: an error reply is judged by the load
    /// harness's own rule (a Redis error, or the proxy's "not executed", refused it; the
    /// proxy's "may have been applied" leaves it unknown).
    pub fn fate(&self) -> Fate {
        match &self.outcome {
            Outcome::Acked => Fate::Acked,
            Outcome::Error(e) => classify_error(e).1,
            // A reply RPUSH never gives, a broken connection or a hang: the command may have
            // run. (A hang ends the writer, so whether it could still run later does not
            // matter to the list check, where each element is written once.)
            Outcome::Unexpected(_) | Outcome::Broken(_) => Fate::Unknown,
        }
    }
}

/// How long a writer waits for one reply before it calls the connection hung.
pub const READ_GUARD: Duration = Duration::from_secs(20);

/// A running writer.
#[derive(Debug)]
pub struct Writer {
    key: String,
    client_id: i64,
    started: Instant,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// When the command awaiting its reply was sent (none between commands).
    waiting: Arc<Mutex<Option<Instant>>>,
    records: Arc<Mutex<Vec<Record>>>,
    handle: Option<JoinHandle<Option<Client>>>,
}

impl Writer {
    /// Connects to `proxy` and starts pushing numbers onto `key`, pausing `pace` after each
    /// acknowledged command (and 20 ms after an error, as a client backing off would).
    pub fn start(proxy: &Proxy, key: &str, pace: Duration) -> Self {
        Self::spawn(proxy.client(), None, key, pace)
    }

    /// Like [`start`](Self::start) through whatever listens at `addr`; when the connection
    /// breaks, the break is recorded and a new connection is opened (every 100 ms until one
    /// is), so a proxy that drops its clients on a server change is measured to the end.
    pub fn start_reconnecting(addr: SocketAddr, key: &str, pace: Duration) -> Self {
        Self::spawn(Client::connect(addr), Some(addr), key, pace)
    }

    fn spawn(mut c: Client, reconnect: Option<SocketAddr>, key: &str, pace: Duration) -> Self {
        let client_id = match c.cmd(&["CLIENT", "ID"]) {
            Frame::Int(id) => id,
            other => panic!("CLIENT ID through the proxy: {other:?}"),
        };
        c.set_read_timeout(Some(READ_GUARD));
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let waiting = Arc::new(Mutex::new(None));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (s, a, f, w, r, k) = (
            Arc::clone(&stop),
            Arc::clone(&acked),
            Arc::clone(&failed),
            Arc::clone(&waiting),
            Arc::clone(&records),
            key.to_string(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("writer-{key}"))
            .spawn(move || {
                let mut n = 0u64;
                while !s.load(Ordering::Relaxed) {
                    n += 1;
                    let sent = Instant::now();
                    *w.lock().unwrap() = Some(sent);
                    let reply = c
                        .try_send_raw(&super::client::encode_strs(&["RPUSH", &k, &n.to_string()]))
                        .and_then(|()| c.try_read());
                    let replied = Instant::now();
                    *w.lock().unwrap() = None;
                    let outcome = match reply {
                        Ok(Frame::Int(_)) => Outcome::Acked,
                        Ok(Frame::Error(e)) => Outcome::Error(e),
                        Ok(other) => Outcome::Unexpected(format!("{other:?}")),
                        Err(e) => Outcome::Broken(e.to_string()),
                    };
                    let pause = match &outcome {
                        Outcome::Acked => {
                            a.fetch_add(1, Ordering::Relaxed);
                            pace
                        }
                        _ => {
                            f.fetch_add(1, Ordering::Relaxed);
                            Duration::from_millis(20)
                        }
                    };
                    let broken = matches!(outcome, Outcome::Broken(_));
                    r.lock().unwrap().push(Record {
                        n,
                        sent,
                        replied,
                        outcome,
                    });
                    if broken {
                        let addr = reconnect?;
                        // The same back-off as after an error reply: an endpoint that accepts
                        // and closes at once (HAProxy with no server up) is not hammered.
                        std::thread::sleep(Duration::from_millis(20));
                        c = loop {
                            if s.load(Ordering::Relaxed) {
                                return None;
                            }
                            if let Ok(c) = Client::try_connect(addr) {
                                c.set_read_timeout(Some(READ_GUARD));
                                break c;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        };
                        continue;
                    }
                    std::thread::sleep(pause);
                }
                Some(c)
            })
            .expect("writer thread");
        Self {
            key: key.to_string(),
            client_id,
            started,
            stop,
            acked,
            failed,
            waiting,
            records,
            handle: Some(handle),
        }
    }

    /// The list key it pushes onto.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Acknowledged commands so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Commands that got anything but an acknowledgement so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// How long the command in flight has been waiting for its reply (`None` between
    /// commands).
    pub fn in_flight(&self) -> Option<Duration> {
        self.waiting.lock().unwrap().map(|t| t.elapsed())
    }

    /// Waits until `more` further commands are acknowledged; panics after `within`.
    pub fn advance(&self, more: u64, within: Duration) {
        if !self.try_advance(more, within) {
            let last = self.records.lock().unwrap().last().cloned();
            panic!(
                "writer {} stalled at {} acknowledged; last record {last:?}",
                self.key,
                self.acked()
            );
        }
    }

    /// Waits until `more` further commands are acknowledged; false when `within` passed
    /// first (or the writer stopped).
    pub fn try_advance(&self, more: u64, within: Duration) -> bool {
        let want = self.acked() + more;
        let until = Instant::now() + within;
        while self.acked() < want {
            let running = self.handle.as_ref().is_some_and(|h| !h.is_finished());
            if Instant::now() > until || !running {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// A copy of the records so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Stops after the command in progress; returns everything it saw.
    pub fn finish(mut self) -> Finished {
        self.stop.store(true, Ordering::Relaxed);
        let client = self
            .handle
            .take()
            .expect("writer running")
            .join()
            .expect("writer thread panicked");
        Finished {
            key: self.key.clone(),
            client_id: self.client_id,
            started: self.started,
            records: self.records.lock().unwrap().clone(),
            client,
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A stopped writer's account.
#[derive(Debug)]
pub struct Finished {
    /// The list key.
    pub key: String,
    /// `CLIENT ID` the proxy gave the connection when it started.
    pub client_id: i64,
    /// When the writer started (the ledger's times count from it).
    pub started: Instant,
    /// Every command, in order.
    pub records: Vec<Record>,
    /// The connection, unless it broke.
    pub client: Option<Client>,
}

impl Finished {
    /// Numbers acknowledged.
    pub fn acked(&self) -> Vec<u64> {
        self.ok_where(|_| true)
    }

    /// Numbers acknowledged whose command passes `f`.
    pub fn ok_where(&self, f: impl Fn(&Record) -> bool) -> Vec<u64> {
        self.records
            .iter()
            .filter(|r| r.outcome == Outcome::Acked && f(r))
            .map(|r| r.n)
            .collect()
    }

    /// Every record that is not an acknowledgement.
    pub fn failures(&self) -> Vec<&Record> {
        self.records
            .iter()
            .filter(|r| r.outcome != Outcome::Acked)
            .collect()
    }

    /// Error texts with their numbers (for messages).
    pub fn failure_texts(&self) -> Vec<String> {
        self.failures()
            .iter()
            .map(|r| format!("#{} {:?}", r.n, r.outcome))
            .collect()
    }

    /// The failures in short: how many, over which span of send times relative to `origin`,
    /// and each distinct error text with its count.
    pub fn failure_summary(&self, origin: Instant) -> String {
        let failures = self.failures();
        let (Some(first), Some(last)) = (failures.first(), failures.last()) else {
            return "no failures".into();
        };
        let mut texts: Vec<(String, usize)> = Vec::new();
        for r in &failures {
            let t = match &r.outcome {
                Outcome::Error(e) => e.clone(),
                other => format!("{other:?}"),
            };
            match texts.iter_mut().find(|(x, _)| *x == t) {
                Some((_, n)) => *n += 1,
                None => texts.push((t, 1)),
            }
        }
        format!(
            "{} failures, sent from {:?} to {:?} after the reference instant: {texts:?}",
            failures.len(),
            first.sent.saturating_duration_since(origin),
            last.sent.saturating_duration_since(origin),
        )
    }

    /// Acknowledged numbers missing from `stored`.
    pub fn lost(&self, stored: &[u64]) -> Vec<u64> {
        self.verdicts(stored)
            .filter(|(_, v)| v.lost)
            .map(|(n, _)| n)
            .collect()
    }

    /// Numbers in `stored` whose command was refused (an error said it was not executed).
    pub fn refused_applied(&self, stored: &[u64]) -> Vec<u64> {
        self.verdicts(stored)
            .filter(|(_, v)| v.refused_applied)
            .map(|(n, _)| n)
            .collect()
    }

    /// The ledger's verdict on each command, in order, given the list `stored`. An element
    /// pushed onto a list is never overwritten, so each number is a key written once: a
    /// [`KeyLedger`] of its own judges it against whether the list holds it.
    fn verdicts<'a>(&'a self, stored: &[u64]) -> impl Iterator<Item = (u64, Verdict)> + 'a {
        let held: std::collections::HashSet<u64> = stored.iter().copied().collect();
        let us = |t: Instant| t.saturating_duration_since(self.started).as_micros() as u64;
        self.records.iter().map(move |r| {
            let id = WriteId { conn: 0, seq: r.n };
            let mut element = KeyLedger::default();
            let write = Write {
                id,
                sent_us: us(r.sent),
                done_us: us(r.replied),
            };
            element.record(write, r.fate());
            let found = if held.contains(&r.n) {
                Found::Write(id)
            } else {
                Found::Missing
            };
            (r.n, element.verdict(&found))
        })
    }

    /// Longest reply latency among all commands.
    pub fn max_latency(&self) -> Duration {
        self.records
            .iter()
            .map(Record::latency)
            .max()
            .unwrap_or_default()
    }

    /// When the first command acknowledged after `t` got its reply.
    pub fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.records
            .iter()
            .filter(|r| r.outcome == Outcome::Acked && r.replied >= t)
            .map(|r| r.replied)
            .min()
    }

    /// Panics unless the connection survived: the same proxy client answers `CLIENT ID` with
    /// the id it had at the start.
    pub fn assert_same_connection(&mut self) {
        let id = self.client_id;
        let key = self.key.clone();
        let c = self
            .client
            .as_mut()
            .unwrap_or_else(|| panic!("writer {key} lost its connection"));
        assert_eq!(
            c.cmd(&["CLIENT", "ID"]),
            Frame::Int(id),
            "writer {key}: not the same proxy connection"
        );
    }
}

/// The numbers held in list `key` on `server` (read straight from it).
pub fn stored(server: &RedisServer, key: &str) -> Vec<u64> {
    match server.cmd(&["LRANGE", key, "0", "-1"]) {
        Frame::Array(items) => items
            .iter()
            .map(|f| f.text().parse().expect("numeric list item"))
            .collect(),
        other => panic!("LRANGE {key} on {}: {other:?}", server.addr()),
    }
}

/// Values present more than once (a write applied twice), each once, in the order their
/// second copies appear. Only a list shows this: the load harness's SETs overwrite each other.
pub fn duplicates(stored: &[u64]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut twice = std::collections::HashSet::new();
    stored
        .iter()
        .copied()
        .filter(|n| !seen.insert(*n) && twice.insert(*n))
        .collect()
}

/// Whether `text` is one of the proxy's own failover errors: the command was not executed
/// (`MASTERDOWN ... (proxy)`), or its outcome is unknown (`... may have been applied (proxy)`).
pub fn is_proxy_failover_error(text: &str) -> bool {
    proxy_failover_fate(text).is_some()
}
