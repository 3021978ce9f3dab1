//! Backend hiccups short of an outage. A Redis that stops answering without closing anything
//! (SIGSTOP): the proxy's reply deadline (`backend.reply_timeout`) turns the silence into errors
//! instead of hangs, and when Redis comes back, traffic resumes and no late reply from the
//! stalled connection ever reaches a client. A single failed health probe (its connection
//! killed by the server): below `health.fall` it must not interrupt traffic at all.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::client::encode;
use support::{Frame, Proxy, RedisServer};

/// Whether an error says the command was not executed or may have been applied.
fn is_failure_error(f: &Frame) -> bool {
    matches!(f, Frame::Error(e) if e.contains("not executed") || e.contains("may have been applied"))
}

/// Redis paused with SIGSTOP (`reply_timeout = "1s"`):
/// 1. A client stores `old`; Redis is paused.
/// 2. SET k new, a GET from a new client, and a pipeline of 200 GETs each get an error saying
///    not executed / may have been applied, before their read deadline.
/// 3. Redis resumes; polling with a deadline, GET k answers `old` or `new` (the SET may have
///    been applied).
/// 4. 100 SET/GET round trips with fresh values each get exactly their own reply (no late
///    reply from the stalled connection shows up), and Redis holds the last value.
#[test]
fn paused_redis_gives_errors_then_recovers_without_stale_replies() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .config("[backend]\nreply_timeout = \"1s\"\n")
        .nodes(&[&redis])
        .start();
    let mut c = proxy.client();
    c.set_read_timeout(Some(Duration::from_secs(20)));
    assert_eq!(c.cmd(&["SET", "k", "old"]), Frame::ok());

    redis.pause();
    let r = c.cmd(&["SET", "k", "new"]);
    assert!(is_failure_error(&r), "SET while paused: {r:?}");
    let mut fresh = proxy.client();
    fresh.set_read_timeout(Some(Duration::from_secs(20)));
    let r = fresh.cmd(&["GET", "k"]);
    assert!(is_failure_error(&r), "GET while paused: {r:?}");
    let mut pipeline = Vec::new();
    for _ in 0..200 {
        pipeline.extend(encode(&[b"GET", b"k"]));
    }
    fresh.send_raw(&pipeline);
    for i in 0..200 {
        let r = fresh.read();
        assert!(
            is_failure_error(&r),
            "pipelined GET {i} while paused: {r:?}"
        );
    }

    redis.resume();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.cmd(&["GET", "k"]);
        if let Frame::Bulk(v) = &r {
            assert!(v == b"old" || v == b"new", "GET after resume: {r:?}");
            break;
        }
        assert!(is_failure_error(&r), "GET after resume: {r:?}");
        assert!(
            Instant::now() < until,
            "never served after resume: {}",
            proxy.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    for round in 0..100 {
        let v = format!("v{round}");
        assert_eq!(c.cmd(&["SET", "k", &v]), Frame::ok(), "round {round}");
        assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk(&v), "round {round}");
        assert_eq!(fresh.cmd(&["ECHO", &v]), Frame::bulk(&v), "round {round}");
    }
    assert_eq!(redis.cmd(&["GET", "k"]), Frame::bulk("v99"));
}

/// One failed health probe stays below `fall` and must not stop traffic (`pool_size = 1`,
/// probes every 100 ms, `fall = 3`):
/// 1. A client stores a value.
/// 2. Ten times: `CLIENT KILL TYPE normal` on the server drops the proxy's data connection and
///    its probe connection (the next probe fails once, the one after succeeds); for the next
///    400 ms the client GETs the value in a loop.
/// 3. Every GET returns the value: a GET lost with its connection is re-sent (a read), and the
///    node never counts as down since no two probes in a row failed.
#[test]
fn one_failed_probe_does_not_stop_traffic() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .config("[backend]\npool_size = 1\n[health]\ninterval = \"100ms\"\nrise = 1\nfall = 3\n")
        .nodes(&[&redis])
        .start();
    let mut c = proxy.client();
    c.set_read_timeout(Some(Duration::from_secs(15)));
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    let mut killer = redis.client();
    let mut gets = 0;
    for round in 0..10 {
        let killed = killer.cmd(&["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(matches!(killed, Frame::Int(n) if n >= 1), "{killed:?}");
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until {
            let r = c.cmd(&["GET", "k"]);
            assert_eq!(r, Frame::bulk("v"), "round {round}, GET {gets}");
            gets += 1;
            thread::sleep(Duration::from_millis(5));
        }
    }
}
