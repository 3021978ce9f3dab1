//! Connection state across a planned `SENTINEL FAILOVER`, as clients see it: a subscriber
//! keeps its subscription (Sentinel kills pub/sub clients on the nodes it reconfigures, so the
//! proxy must subscribe again on the new master), a client that WATCHed a key before the
//! switch gets a null EXEC after it (its usual retry path) and can then run a transaction, and
//! clients blocked in BLPOP during the switch are served by a push made after it. Each client
//! keeps one connection to the proxy throughout.

mod support;

use std::time::{Duration, Instant};

use support::failover::{
    sentinel_proxy, try_cmd, wait_for, wait_proxy_writes_to, Cluster, Switches,
};
use support::{Client, Frame, Proxy};

/// The cluster, a proxy over all three nodes (authority "sentinel"), and a `+switch-master`
/// watcher.
fn setup() -> (Cluster, Proxy, Switches) {
    let cluster = Cluster::start();
    let nodes: Vec<String> = cluster.servers().iter().map(|s| s.addr_str()).collect();
    let proxy = sentinel_proxy(&cluster.group, &nodes, "hold_timeout = \"5s\"");
    let switches = Switches::watch(&cluster.group);
    (cluster, proxy, switches)
}

/// Forces a failover; returns when the first `+switch-master` arrived and the new master's
/// address.
fn fail_over(cluster: &Cluster, switches: &Switches) -> (Instant, String) {
    cluster.group.failover();
    let (at, new) = switches
        .first(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no +switch-master\n{}", cluster.group.logs()));
    assert_ne!(new, cluster.master.addr_str());
    (at, new)
}

/// Reads one pub/sub message on a RESP2 subscriber: `(channel, payload)`; panics on anything
/// else (an error, a stray confirmation) or when nothing arrives within `within`.
fn message(c: &mut Client, within: Duration) -> (String, String) {
    c.set_read_timeout(Some(within));
    let frame = c
        .try_read()
        .unwrap_or_else(|e| panic!("no message within {within:?}: {e}"));
    match frame.items() {
        [kind, ch, payload] if *kind == Frame::bulk("message") => (ch.text(), payload.text()),
        _ => panic!("expected a message, got {frame:?}"),
    }
}

/// `INFO clients` field `blocked_clients` of a server.
fn blocked_clients(server: &support::RedisServer) -> Option<u64> {
    match try_cmd(server, &["INFO", "clients"])? {
        Frame::Bulk(b) => String::from_utf8_lossy(&b)
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse().ok()),
        _ => None,
    }
}

/// A subscriber across a planned failover.
/// 1. A master, two replicas, three Sentinels; the proxy (authority "sentinel"). A subscriber
///    SUBSCRIBEs to `news` through the proxy; a publisher, through the proxy, publishes
///    "before": PUBLISH counts one receiver and the subscriber gets it.
/// 2. `SENTINEL FAILOVER`; `+switch-master` names a replica.
/// 3. Writes through the proxy land on the new master, and the new master shows one
///    subscriber on `news` (the proxy subscribed again there; printed: how long after
///    `+switch-master`).
/// 4. The same publisher connection publishes 20 numbered messages: each PUBLISH counts one
///    receiver, and the same subscriber connection receives all 20 in order, with nothing
///    else in between (no error, no repeated confirmation). Messages during the switch are not
///    asserted (pub/sub is at-most-once).
#[test]
fn subscriber_keeps_receiving_after_failover() {
    let (cluster, proxy, switches) = setup();
    let mut sub = proxy.client();
    sub.send(&["SUBSCRIBE", "news"]);
    assert_eq!(
        sub.read(),
        Frame::Array(vec![
            Frame::bulk("subscribe"),
            Frame::bulk("news"),
            Frame::Int(1)
        ])
    );
    let mut publisher = proxy.client();
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "before"]), Frame::Int(1));
    assert_eq!(
        message(&mut sub, Duration::from_secs(5)),
        ("news".into(), "before".into())
    );

    let (switched, new_addr) = fail_over(&cluster, &switches);
    let new_master = cluster.server(&new_addr);
    wait_proxy_writes_to(&proxy, new_master, "pubsub:probe", Duration::from_secs(15));
    let moved = wait_for(
        "the subscription on the new master",
        Duration::from_secs(10),
        || {
            try_cmd(new_master, &["PUBSUB", "NUMSUB", "news"])
                .is_some_and(|f| f.items().get(1) == Some(&Frame::Int(1)))
        },
    );
    eprintln!(
        "[pub/sub] subscription on the new master {:?} after +switch-master",
        moved.saturating_duration_since(switched)
    );

    for i in 0..20 {
        let payload = format!("after-{i}");
        assert_eq!(
            publisher.cmd(&["PUBLISH", "news", &payload]),
            Frame::Int(1),
            "PUBLISH {payload}"
        );
    }
    for i in 0..20 {
        assert_eq!(
            message(&mut sub, Duration::from_secs(5)),
            ("news".into(), format!("after-{i}"))
        );
    }
}

/// WATCH before a planned failover, EXEC after it.
/// 1. A master, two replicas, three Sentinels; the proxy (authority "sentinel"). A client
///    sets `tx:k` to "start" and WATCHes it through the proxy.
/// 2. `SENTINEL FAILOVER`; writes through the proxy land on the new master.
/// 3. The same client: MULTI, SET tx:k "lost" (QUEUED), EXEC answers null (`*-1`); the new
///    master does not hold "lost".
/// 4. The same client: WATCH tx:k, MULTI, SET tx:k "won", EXEC answers `[OK]`; the new master
///    holds "won".
#[test]
fn exec_after_watch_across_failover_answers_null() {
    let (cluster, proxy, switches) = setup();
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "tx:k", "start"]), Frame::ok());
    assert_eq!(c.cmd(&["WATCH", "tx:k"]), Frame::ok());

    let (_, new_addr) = fail_over(&cluster, &switches);
    let new_master = cluster.server(&new_addr);
    wait_proxy_writes_to(&proxy, new_master, "tx:probe", Duration::from_secs(15));

    assert_eq!(c.cmd(&["MULTI"]), Frame::ok());
    assert_eq!(
        c.cmd(&["SET", "tx:k", "lost"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(c.cmd(&["EXEC"]), Frame::Null);
    assert_eq!(new_master.cmd(&["GET", "tx:k"]), Frame::bulk("start"));

    assert_eq!(c.cmd(&["WATCH", "tx:k"]), Frame::ok());
    assert_eq!(c.cmd(&["MULTI"]), Frame::ok());
    assert_eq!(
        c.cmd(&["SET", "tx:k", "won"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(c.cmd(&["EXEC"]), Frame::Array(vec![Frame::ok()]));
    assert_eq!(new_master.cmd(&["GET", "tx:k"]), Frame::bulk("won"));
}

/// Clients blocked in BLPOP during a planned failover.
/// 1. A master, two replicas, three Sentinels; the proxy (authority "sentinel"). Client A
///    sends `BLPOP bl:a 0` (no timeout), client B `BLPOP bl:b 60`, through the proxy; the
///    master shows two blocked clients.
/// 2. `SENTINEL FAILOVER` (the demoted master answers `-UNBLOCKED` to its blocked clients);
///    writes through the proxy land on the new master.
/// 3. Another client LPUSHes `bl:a x` and `bl:b y` through the proxy.
/// 4. A receives `[bl:a, x]` and B `[bl:b, y]` on their own connections within 10 s (printed:
///    how long after `+switch-master`); both lists are empty on the new master afterwards.
#[test]
fn blpop_across_failover_is_served_after_it() {
    let (cluster, proxy, switches) = setup();
    let mut a = proxy.client();
    let mut b = proxy.client();
    a.send(&["BLPOP", "bl:a", "0"]);
    b.send(&["BLPOP", "bl:b", "60"]);
    wait_for(
        "two clients blocked on the master",
        Duration::from_secs(5),
        || blocked_clients(&cluster.master) == Some(2),
    );

    let (switched, new_addr) = fail_over(&cluster, &switches);
    let new_master = cluster.server(&new_addr);
    wait_proxy_writes_to(&proxy, new_master, "bl:probe", Duration::from_secs(15));
    let mut pusher = proxy.client();
    assert!(matches!(pusher.cmd(&["LPUSH", "bl:a", "x"]), Frame::Int(_)));
    assert!(matches!(pusher.cmd(&["LPUSH", "bl:b", "y"]), Frame::Int(_)));

    for (c, key, value) in [(&mut a, "bl:a", "x"), (&mut b, "bl:b", "y")] {
        c.set_read_timeout(Some(Duration::from_secs(10)));
        let reply = c
            .try_read()
            .unwrap_or_else(|e| panic!("{key}: no reply: {e}"));
        assert_eq!(
            reply,
            Frame::Array(vec![Frame::bulk(key), Frame::bulk(value)])
        );
        eprintln!(
            "[BLPOP] {key} served {:?} after +switch-master",
            switched.elapsed()
        );
        assert_eq!(new_master.cmd(&["LLEN", key]), Frame::Int(0));
    }
}

/// A client blocked in BLPOP when its master is demoted by Redis's own `FAILOVER` (nodes
/// authority, no Sentinel: the demoted master answers `-UNBLOCKED` to the blocked client and
/// nobody kills the connection first).
/// 1. A master and one replica behind the proxy (`--nodes`); client A sends `BLPOP bl:u 0`
///    through the proxy; the master shows one blocked client.
/// 2. `FAILOVER TIMEOUT 5000` on the master; the replica reports itself master and writes
///    through the proxy land on it.
/// 3. Another client LPUSHes `bl:u z` through the proxy; A receives `[bl:u, z]` within 10 s
///    on its own connection, and the list is empty on the new master.
#[test]
fn blpop_unblocked_by_demotion_is_reissued() {
    let (master, replicas) = support::replication(1);
    let replica = &replicas[0];
    let proxy = Proxy::start(&[&master, replica]);
    let mut a = proxy.client();
    a.send(&["BLPOP", "bl:u", "0"]);
    wait_for(
        "a client blocked on the master",
        Duration::from_secs(5),
        || blocked_clients(&master) == Some(1),
    );

    assert_eq!(master.cmd(&["FAILOVER", "TIMEOUT", "5000"]), Frame::ok());
    wait_for(
        "the replica reports itself master",
        Duration::from_secs(20),
        || support::failover::role(replica).as_deref() == Some("master"),
    );
    wait_proxy_writes_to(&proxy, replica, "bl:probe", Duration::from_secs(15));
    let mut pusher = proxy.client();
    assert!(matches!(pusher.cmd(&["LPUSH", "bl:u", "z"]), Frame::Int(_)));
    a.set_read_timeout(Some(Duration::from_secs(10)));
    let reply = a
        .try_read()
        .unwrap_or_else(|e| panic!("bl:u: no reply: {e}"));
    assert_eq!(
        reply,
        Frame::Array(vec![Frame::bulk("bl:u"), Frame::bulk("z")])
    );
    assert_eq!(replica.cmd(&["LLEN", "bl:u"]), Frame::Int(0));
}
