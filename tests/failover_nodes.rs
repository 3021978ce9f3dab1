//! Failover without Sentinel (`nodes` authority): the proxy follows the nodes' own ROLE, uses
//! replication-ID succession to settle two claimants, and refuses to write when it cannot tell.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{Client, Frame, Proxy, RedisServer};

/// A writer that INCRs a counter through the proxy on one connection until stopped, and
/// counts what it saw.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    handle: Option<thread::JoinHandle<Client>>,
}

impl Writer {
    fn start(proxy: &Proxy, key: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut c = proxy.client();
        let (s, a, e) = (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&errors));
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match c.cmd(&["INCR", key]) {
                    Frame::Int(n) => a.store(n as u64, Ordering::Relaxed),
                    Frame::Error(err) => e.lock().unwrap().push(err),
                    other => e.lock().unwrap().push(format!("{other:?}")),
                }
            }
            c
        });
        Self {
            stop,
            acked,
            errors,
            handle: Some(handle),
        }
    }

    /// Waits until at least `n` more INCRs were acknowledged.
    fn advance(&self, n: u64) {
        let start = self.acked.load(Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(20);
        while self.acked.load(Ordering::Relaxed) < start + n {
            assert!(
                Instant::now() < until,
                "writer stalled at {}",
                self.acked.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops; returns the last acknowledged value, the errors, and the client (its
    /// connection was never replaced).
    fn finish(mut self) -> (u64, Vec<String>, Client) {
        self.stop.store(true, Ordering::Relaxed);
        let client = self.handle.take().unwrap().join().expect("writer");
        let errors = self.errors.lock().unwrap().clone();
        (self.acked.load(Ordering::Relaxed), errors, client)
    }
}

fn counter(server: &RedisServer, key: &str) -> u64 {
    match server.cmd(&["GET", key]) {
        Frame::Bulk(b) => String::from_utf8_lossy(&b).parse().unwrap(),
        Frame::Null => 0,
        other => panic!("{other:?}"),
    }
}

fn replicated_pair() -> (RedisServer, RedisServer) {
    let master = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&master).start();
    replica.wait_link_up();
    (master, replica)
}

/// Master and replica behind the proxy (nodes authority); a writer INCRs through the proxy;
/// the master is switched to the replica with Redis's own `FAILOVER` (a planned switchover):
/// the writer sees no error, its connection stays the same, no acknowledged INCR is lost, and
/// writes continue on the new master.
#[test]
fn planned_failover_command_loses_nothing() {
    let (master, replica) = replicated_pair();
    let proxy = Proxy::start(&[&master, &replica]);
    let writer = Writer::start(&proxy, "counter");
    writer.advance(200);
    assert_eq!(master.cmd(&["FAILOVER", "TIMEOUT", "5000"]), Frame::ok());
    // Wait until the old replica is master.
    let until = Instant::now() + Duration::from_secs(20);
    while !matches!(replica.cmd(&["ROLE"]), Frame::Array(ref a) if a[0] == Frame::bulk("master")) {
        assert!(Instant::now() < until, "replica never promoted");
        thread::sleep(Duration::from_millis(20));
    }
    writer.advance(200);
    let (acked, errors, mut client) = writer.finish();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    let stored = counter(&replica, "counter");
    assert!(
        stored >= acked,
        "lost acknowledged writes: stored {stored}, acknowledged {acked}"
    );
    assert_eq!(
        client.cmd(&["GET", "counter"]),
        Frame::bulk(&stored.to_string())
    );
}

/// Two masters with unrelated histories behind the proxy: writes are refused with a clear
/// error, not split between them.
#[test]
fn two_unrelated_masters_are_refused() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    let proxy = Proxy::builder().nodes(&[&a, &b]).spawn();
    let mut c = proxy.client();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.cmd(&["SET", "k", "v"]);
        if r.is_error("MASTERDOWN") {
            assert!(format!("{r:?}").contains("refusing"), "{r:?}");
            break;
        }
        assert!(Instant::now() < until, "never refused: {r:?}");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.cmd(&["EXISTS", "k"]), Frame::Int(0));
    assert_eq!(b.cmd(&["EXISTS", "k"]), Frame::Int(0));
}

/// A replica promoted by hand (REPLICAOF NO ONE) while its old master still claims to be
/// master: the promoted node carries the old master's history as `master_replid2`, so the
/// proxy moves writes to it and never back to the old master.
#[test]
fn promoted_replica_wins_over_its_old_master() {
    let (master, replica) = replicated_pair();
    let proxy = Proxy::start(&[&master, &replica]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "before", "1"]), Frame::ok());
    assert_eq!(replica.cmd(&["REPLICAOF", "NO", "ONE"]), Frame::ok());
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.cmd(&["SET", "after", "1"]);
        if r == Frame::ok() && replica.cmd(&["EXISTS", "after"]) == Frame::Int(1) {
            break;
        }
        assert!(Instant::now() < until, "proxy never moved: {r:?}");
        thread::sleep(Duration::from_millis(50));
    }
    for i in 0..50 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), Frame::ok());
    }
    assert_eq!(
        master.cmd(&["EXISTS", "k49"]),
        Frame::Int(0),
        "wrote to the superseded master"
    );
}
