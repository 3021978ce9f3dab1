//! Tests of the fault-injecting relay of the test support (`support::relay`), in front of a
//! real `redis-server` and without the proxy: it passes, black-holes, stalls, resets, refuses
//! and delays traffic as documented, and closes everything when dropped.

mod support;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::relay::Mode;
use support::{Client, Frame, RedisServer, Relay};

/// Whether a new connection through the relay is closed or reset right away (the reset can
/// already show while connecting).
fn cut_off(relay: &Relay) -> bool {
    match Client::try_connect(relay.addr()) {
        Ok(mut c) => c.closed(Duration::from_secs(5)),
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// The relay forwards both ways and counts its connections.
/// 1. A relay in front of a redis-server; PING, SET and GET through it.
/// 2. Two connections are counted; closing them brings the count back to zero.
/// 3. A 1 MiB value goes through and back intact.
#[test]
fn relay_passes_traffic() {
    let redis = RedisServer::start();
    let relay = Relay::start(redis.addr());
    assert_eq!(relay.mode(), Mode::Pass);
    assert_eq!(relay.target(), redis.addr());
    let mut a = relay.client();
    assert_eq!(a.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(a.cmd(&["SET", "k", "v"]), Frame::ok());
    let mut b = Client::connect(relay.addr());
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(relay.connections(), 2);

    let big = "x".repeat(1 << 20);
    assert_eq!(b.cmd(&["SET", "big", &big]), Frame::ok());
    assert_eq!(a.cmd(&["GET", "big"]), Frame::bulk(&big));

    drop(a);
    drop(b);
    assert!(relay.wait_connections(0, Duration::from_secs(5)));
}

/// A black hole keeps connections open but delivers nothing.
/// 1. A connection through the relay answers PING; then `blackhole()`.
/// 2. A PING on it times out, yet the relay still counts it and the server still has the
///    relay's upstream connection (nothing was closed).
/// 3. A new connection is accepted but its PING times out too; a third connects and sends
///    nothing.
/// 4. `pass()`: the two connections that lost data are reset, the silent one resumes and
///    answers PING, and a fresh connection works.
#[test]
fn relay_blackhole_drops_everything_but_closes_nothing() {
    let redis = RedisServer::start();
    let relay = Relay::start(redis.addr());
    let mut a = relay.client();
    assert_eq!(a.cmd(&["PING"]), Frame::Simple("PONG".into()));

    relay.blackhole();
    a.set_read_timeout(Some(Duration::from_millis(500)));
    a.send(&["PING"]);
    let err = a.try_read().expect_err("a reply crossed the black hole");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    assert_eq!(relay.connections(), 1);
    let clients = redis.cmd(&["INFO", "clients"]).text();
    assert!(clients.contains("connected_clients:2"), "{clients}");

    let mut b = relay.client();
    b.set_read_timeout(Some(Duration::from_millis(300)));
    b.send(&["PING"]);
    assert!(
        b.try_read().is_err(),
        "a new connection crossed the black hole"
    );
    let mut c = relay.client();
    assert!(relay.wait_connections(3, Duration::from_secs(5)));

    relay.pass();
    assert!(
        a.closed(Duration::from_secs(5)),
        "lossy connection a kept open"
    );
    assert!(
        b.closed(Duration::from_secs(5)),
        "lossy connection b kept open"
    );
    c.set_read_timeout(Some(Duration::from_secs(5)));
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(relay.client().cmd(&["GET", "missing"]), Frame::Null);
}

/// A stall holds bytes and delivers them late.
/// 1. `stall()`; a PING through the relay gets no reply within 300 ms.
/// 2. `pass()`; the held PING's reply arrives on the same connection, which keeps working.
#[test]
fn relay_stall_delivers_late() {
    let redis = RedisServer::start();
    let relay = Relay::start(redis.addr());
    let mut a = relay.client();
    assert_eq!(a.cmd(&["PING"]), Frame::Simple("PONG".into()));
    relay.stall();
    a.set_read_timeout(Some(Duration::from_millis(300)));
    a.send(&["INCR", "n"]);
    assert!(a.try_read().is_err(), "a reply crossed a stall");
    relay.pass();
    a.set_read_timeout(Some(Duration::from_secs(5)));
    assert_eq!(a.read(), Frame::Int(1));
    assert_eq!(a.cmd(&["INCR", "n"]), Frame::Int(2));
}

/// Reset and refuse.
/// 1. An idle connection through the relay; `reset()` returns with no connection left and
///    the client reads a connection reset (or end of stream).
/// 2. While resetting, a new connection is reset right after it is accepted.
/// 3. `pass()` restores service for new connections.
/// 4. `refuse()`: a current connection keeps working, a new one is closed at once.
/// 5. `pass()` with the target killed: a new connection is reset.
#[test]
fn relay_reset_and_refuse() {
    let mut redis = RedisServer::start();
    let relay = Relay::start(redis.addr());
    let mut a = relay.client();
    assert_eq!(a.cmd(&["PING"]), Frame::Simple("PONG".into()));

    relay.reset();
    assert_eq!(relay.connections(), 0);
    let err = a.try_read().expect_err("read after reset");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
        ),
        "{err:?}"
    );
    assert!(cut_off(&relay), "a new connection survived reset()");

    relay.pass();
    let mut c = relay.client();
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));

    relay.refuse();
    assert!(cut_off(&relay), "refused connection stayed open");
    assert_eq!(c.cmd(&["SET", "still", "here"]), Frame::ok());
    assert_eq!(relay.connections(), 1);

    relay.pass();
    drop(c);
    redis.kill();
    assert!(
        cut_off(&relay),
        "no target, yet the client stayed connected"
    );
    assert!(relay.wait_connections(0, Duration::from_secs(5)));
}

/// Delay adds latency to every chunk in both directions.
/// 1. `delay(200 ms)`; a PING round trip takes at least 400 ms (one delay each way).
/// 2. A pipeline of 50 INCRs still comes back complete and in order.
/// 3. `pass()`; the relay's mode reads back as Pass.
#[test]
fn relay_delay_adds_latency() {
    let redis = RedisServer::start();
    let relay = Relay::start(redis.addr());
    let mut a = relay.client();
    let d = Duration::from_millis(200);
    relay.delay(d);
    assert_eq!(relay.mode(), Mode::Delay(d));
    let t = Instant::now();
    assert_eq!(a.cmd(&["PING"]), Frame::Simple("PONG".into()));
    let rtt = t.elapsed();
    assert!(rtt >= 2 * d, "round trip {rtt:?} with {d:?} each way");

    let mut batch = Vec::new();
    for _ in 0..50 {
        batch.extend(support::client::encode(&[b"INCR", b"c"]));
    }
    a.send_raw(&batch);
    for i in 1..=50 {
        assert_eq!(a.read(), Frame::Int(i));
    }
    relay.pass();
    assert_eq!(relay.mode(), Mode::Pass);
}

/// Dropping the relay closes everything.
/// 1. A connection through the relay works.
/// 2. Drop the relay: the client sees its connection closed and the port refuses new ones.
#[test]
fn relay_drop_closes_everything() {
    let redis = RedisServer::start();
    let relay = Relay::start(redis.addr());
    let addr = relay.addr();
    let mut a = relay.client();
    assert_eq!(a.cmd(&["PING"]), Frame::Simple("PONG".into()));
    drop(relay);
    assert!(a.closed(Duration::from_secs(5)));
    assert!(TcpStream::connect(addr).is_err());
}
