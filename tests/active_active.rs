//! The active-active authority, as clients see it: three sites, each one standalone writable
//! node, in priority order. Writes go to the preferred site with quorum; when it loses quorum
//! they move to the next one; when it comes back they return only after it has stayed healthy
//! for the failback grace period. One client connection writes throughout, and every write is
//! looked up on each site's node directly to see where it landed.

mod support;

use std::time::{Duration, Instant};

use support::failover::{strip_ansi, try_cmd, wait_for};
use support::{Client, Frame, Proxy, RedisServer};

/// Where a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    /// On this site (index).
    Site(usize),
    /// Refused with this kind of error.
    Error,
}

/// Writes `SET aa:<n> <n>` through `c` and finds which site holds it. Panics on an error that
/// is not one of the proxy's "not executed" / "may have been applied" errors, and when the
/// write is acknowledged but not found on exactly one site.
fn write(c: &mut Client, sites: &[&RedisServer], n: u64) -> Landed {
    let key = format!("aa:{n}");
    match c.cmd(&["SET", &key, &n.to_string()]) {
        f if f == Frame::ok() => {}
        Frame::Error(e) if support::writer::is_proxy_failover_error(&e) => return Landed::Error,
        other => panic!("SET {key}: {other:?}"),
    }
    let on: Vec<usize> = sites
        .iter()
        .enumerate()
        .filter(|(_, s)| try_cmd(s, &["EXISTS", &key]) == Some(Frame::Int(1)))
        .map(|(i, _)| i)
        .collect();
    match on.as_slice() {
        [i] => Landed::Site(*i),
        _ => panic!("{key} acknowledged but found on sites {on:?}"),
    }
}

/// How many lines of the proxy's log report `node` healthy.
fn healthy_lines(proxy: &Proxy, node: &str) -> usize {
    strip_ansi(&proxy.log())
        .lines()
        .filter(|l| {
            l.contains("node health changed")
                && l.contains(&format!("node={node} "))
                && l.contains("healthy=true")
        })
        .count()
}

/// A proxy over sites a, b, c (priorities 0, 1, 2; one node each, quorum 1) with the
/// active-active authority, probing every 100 ms (timeout 1 s, rise 2, fall 2).
fn three_sites(a: &str, b: &str, c: &str, failback_after: &str) -> support::ProxyBuilder {
    Proxy::builder().config(&format!(
        r#"
[failover]
authority = "active-active"
failback_after = "{failback_after}"

[health]
interval = "100ms"
timeout = "1s"
rise = 2
fall = 2

[[sites]]
name = "a"
priority = 0
nodes = ["{a}"]
quorum = 1

[[sites]]
name = "b"
priority = 1
nodes = ["{b}"]
quorum = 1

[[sites]]
name = "c"
priority = 2
nodes = ["{c}"]
quorum = 1
"#
    ))
}

/// Preferred site lost, then back: traffic moves, and returns only after the grace period.
/// 1. Sites a (priority 0), b (1), c (2), one standalone node each, quorum 1; the proxy with
///    `authority = "active-active"`, `failback_after = "3s"`, probes every 100 ms (rise 2,
///    fall 2). One client connection writes through the proxy throughout.
/// 2. Writes until one lands on a (within 10 s), then 20 writes: every one lands on a.
/// 3. a's node is killed. Writes (errors allowed, only the proxy's failover errors) until one
///    lands on b within 10 s (printed: how long after the kill); then 20 writes all land on b.
/// 4. a's node is restarted on the same port; once the proxy logs it healthy again, 5 writes
///    at once all land on b (no immediate failback).
/// 5. Writes every 50 ms, without error, each on a or b, until one lands on a within 15 s;
///    that happens no sooner than 1.5 s after the proxy logged a healthy (grace 3 s, minus
///    slack for the log polling; the real figure is printed); then 20 writes all land on a.
/// 6. Nothing ever lands on c.
#[test]
fn preferred_site_loses_quorum_and_traffic_fails_back_after_grace() {
    let mut a = RedisServer::start();
    let b = RedisServer::start();
    let c = RedisServer::start();
    let proxy = three_sites(&a.addr_str(), &b.addr_str(), &c.addr_str(), "3s").start();
    let a_addr = a.addr_str();
    let mut client = proxy.client();
    client.set_read_timeout(Some(Duration::from_secs(20)));
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        n
    };

    // At startup the first site to answer may take the traffic until the preferred one has
    // served its grace (see the startup test below): wait for a.
    wait_for("a write landing on site a", Duration::from_secs(10), || {
        write(&mut client, &[&a, &b, &c], next()) == Landed::Site(0)
    });
    for _ in 0..20 {
        let landed = write(&mut client, &[&a, &b, &c], next());
        assert_eq!(landed, Landed::Site(0));
    }

    let killed = Instant::now();
    a.kill();
    let moved = wait_for("a write landing on site b", Duration::from_secs(10), || {
        let landed = write(&mut client, &[&a, &b, &c], next());
        assert_ne!(landed, Landed::Site(2), "a write went to site c");
        landed == Landed::Site(1)
    });
    eprintln!(
        "[active-active] preferred site lost: writes on site b {:?} after the kill",
        moved - killed
    );
    for _ in 0..20 {
        assert_eq!(write(&mut client, &[&a, &b, &c], next()), Landed::Site(1));
    }

    let before = healthy_lines(&proxy, &a_addr);
    a.restart();
    let up = wait_for(
        "the proxy logs site a's node healthy again",
        Duration::from_secs(10),
        || healthy_lines(&proxy, &a_addr) > before,
    );
    for _ in 0..5 {
        assert_eq!(
            write(&mut client, &[&a, &b, &c], next()),
            Landed::Site(1),
            "traffic returned to a before the grace period"
        );
    }
    let back = wait_for(
        "a write landing on site a again",
        Duration::from_secs(15),
        || {
            let landed = write(&mut client, &[&a, &b, &c], next());
            assert!(
                matches!(landed, Landed::Site(0) | Landed::Site(1)),
                "failback write: {landed:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
            landed == Landed::Site(0)
        },
    );
    let grace = back - up;
    eprintln!(
        "[active-active] failback: writes on site a {grace:?} after its node was logged healthy \
         (failback_after 3 s)"
    );
    assert!(
        grace >= Duration::from_millis(1500),
        "traffic returned {grace:?} after recovery, before the 3 s grace"
    );
    for _ in 0..20 {
        assert_eq!(write(&mut client, &[&a, &b, &c], next()), Landed::Site(0));
    }
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Int(0), "writes reached site c");
}

/// At startup the preferred site takes the traffic even when another site answers first.
/// 1. Sites a, b, c as above, `failback_after = "15s"`; a is reached through a relay that
///    delays every chunk by 50 ms, so b's or c's probes pass first. a is never down.
/// 2. The proxy starts (its readiness write may land anywhere); one client writes every
///    50 ms until a write lands on a: that must happen within 5 s of the start, far below the
///    15 s failback grace, since a never lost quorum (printed: the time and how many writes
///    landed on b and on c first).
/// 3. The next 20 writes all land on a; none of the client's writes landed on c (b may have
///    taken some before a's first probes passed).
#[test]
fn preferred_site_takes_traffic_at_startup() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    let c = RedisServer::start();
    let relay = support::Relay::start(a.addr());
    relay.delay(Duration::from_millis(50));
    let started = Instant::now();
    let proxy = three_sites(&relay.addr_str(), &b.addr_str(), &c.addr_str(), "15s").start();
    let mut client = proxy.client();
    let mut n = 0u64;
    let (mut on_b, mut on_c, mut errors) = (0, 0, 0);
    let on_a = wait_for("a write landing on site a", Duration::from_secs(20), || {
        n += 1;
        let landed = write(&mut client, &[&a, &b, &c], n);
        match landed {
            Landed::Site(0) => return true,
            Landed::Site(1) => on_b += 1,
            Landed::Site(_) => on_c += 1,
            Landed::Error => errors += 1,
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    let took = on_a - started;
    eprintln!(
        "[active-active] startup: writes on the preferred site {took:?} after the proxy started; \
         before that {on_b} landed on b, {on_c} on c, {errors} failed"
    );
    assert!(
        took < Duration::from_secs(5),
        "the preferred site, never down, got traffic only {took:?} after startup \
         (before that {on_b} writes landed on b, {on_c} on c)"
    );
    for _ in 0..20 {
        n += 1;
        assert_eq!(write(&mut client, &[&a, &b, &c], n), Landed::Site(0));
    }
    assert_eq!(on_c, 0, "writes landed on site c, the least preferred");
}
