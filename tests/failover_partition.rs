//! Partitions under the Sentinel authority, as clients see them: the master's site cut off
//! silently and later healed (the old master returns claiming master until Sentinel demotes
//! it), a replica promoted by hand that claims master without Sentinel's vote, and every
//! Sentinel lost at once. Numbered writers push onto lists through the proxy; the tests check
//! that writes only ever go to the master Sentinel authorised, that nothing acknowledged is
//! lost where that is promised, and which errors clients saw.
//!
//! Which writes reached a node is measured with a MONITOR connection opened straight to that
//! node (reopened whenever Sentinel's reconfiguration kills it): every `RPUSH` on a writer's
//! key that MONITOR shows from a client address other than another node's listening port (a
//! replica's link to its master shows the master's port) came from the proxy, since only the
//! writers, through the proxy, push onto those keys.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::failover::{
    role, sentinel_proxy, wait_for, wait_log_line, Cluster, Monitor, Switches,
};
use support::writer::{duplicates, is_proxy_failover_error, stored, Finished, Outcome, Writer};
use support::{Frame, Relay};

/// Every failure is one of the proxy's failover errors (no hang, no other error).
fn assert_proxy_errors_only(w: &Finished) {
    let other: Vec<String> = w
        .failures()
        .iter()
        .filter(|r| !matches!(&r.outcome, Outcome::Error(e) if is_proxy_failover_error(e)))
        .map(|r| format!("#{} {:?}", r.n, r.outcome))
        .collect();
    assert!(
        other.is_empty(),
        "writer {}: failures other than the proxy's failover errors: {other:?}",
        w.key
    );
}

/// The master's site partitioned silently, then healed.
/// 1. A master, two replicas, three Sentinels. The proxy reaches the master only through a
///    relay (its nodes: the relay's address, then the replicas' own), `learn_nodes = false`;
///    it locates the master Sentinel names by run_id. A MONITOR connection is opened straight
///    to the master, and two writers push through the proxy; MONITOR shows their pushes.
/// 2. Partition: the relay black-holes (no packet in either direction, nothing closed) and the
///    master is stopped (SIGSTOP) so the Sentinels see it down.
/// 3. Sentinel promotes a replica (`+switch-master`); the writers are acknowledged again
///    within 5 s of it (printed).
/// 4. Heal: the old master resumes and the relay passes traffic again; the old master claims
///    master until Sentinel demotes it (it reports `slave`); the writers keep going.
/// 5. "writes to superseded master": pushes MONITOR saw on the old master that the writers
///    issued after the partition began (so after the old master stopped being the one
///    Sentinel would authorise, and a fortiori after the new master was verified): must be 0.
/// 6. Every failure is a proxy failover error; once a writer was acknowledged after the
///    promotion every later command succeeded (also while the old master claimed master);
///    nothing acknowledged after the promotion is missing on the new master, nothing is there
///    twice. Acknowledged writes lost from before the partition are printed.
#[test]
fn partitioned_master_is_never_used_again() {
    let cluster = Cluster::start();
    let relay = Relay::start(cluster.master.addr());
    let nodes = vec![
        relay.addr_str(),
        cluster.replicas[0].addr_str(),
        cluster.replicas[1].addr_str(),
    ];
    let proxy = sentinel_proxy(&cluster.group, &nodes, "learn_nodes = false");
    let switches = Switches::watch(&cluster.group);
    let monitor = Monitor::start(&cluster.master);
    let node_ports: Vec<u16> = cluster.servers().iter().map(|s| s.port).collect();
    let writers: Vec<Writer> = (0..2)
        .map(|i| Writer::start(&proxy, &format!("partition:{i}"), Duration::from_millis(1)))
        .collect();
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }
    wait_for(
        "MONITOR on the master shows the writers' pushes",
        Duration::from_secs(5),
        || monitor.client_pushes("partition:", &node_ports).len() >= 100,
    );

    let cut = Instant::now();
    relay.blackhole();
    cluster.master.pause();
    let (switched, new_addr) = switches
        .first(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no +switch-master\n{}", cluster.group.logs()));
    let new_master = cluster.server(&new_addr);
    for w in &writers {
        w.advance(100, Duration::from_secs(30));
    }

    let healed = Instant::now();
    cluster.master.resume();
    relay.pass();
    let demoted = wait_for(
        "Sentinel demotes the old master",
        Duration::from_secs(30),
        || role(&cluster.master).as_deref() == Some("slave"),
    );
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }
    let finished: Vec<Finished> = writers.into_iter().map(Writer::finish).collect();

    let sent_at: HashMap<(String, u64), Instant> = finished
        .iter()
        .flat_map(|w| w.records.iter().map(|r| ((w.key.clone(), r.n), r.sent)))
        .collect();
    let superseded: Vec<(String, u64)> = monitor
        .client_pushes("partition:", &node_ports)
        .into_iter()
        .filter(|k| sent_at.get(k).is_some_and(|t| *t >= cut))
        .collect();
    eprintln!(
        "[partition] +switch-master {:?} after the cut; old master demoted {:?} after the heal; \
         writes to superseded master: {}",
        switched - cut,
        demoted - healed,
        superseded.len()
    );
    // Every check is made, then all failures are reported together.
    let mut problems = Vec::new();
    if !superseded.is_empty() {
        problems.push(format!(
            "writes reached the superseded master: {superseded:?}"
        ));
    }
    for w in &finished {
        assert_proxy_errors_only(w);
        let first = w
            .first_ack_after(switched)
            .expect("an acknowledgement after the promotion");
        let follow = first.saturating_duration_since(switched);
        let late: Vec<String> = w
            .records
            .iter()
            .filter(|r| r.sent >= first && r.outcome != Outcome::Acked)
            .map(|r| format!("#{} {:?}", r.n, r.outcome))
            .collect();
        let held = stored(new_master, &w.key);
        let lost_after: Vec<u64> = w
            .ok_where(|r| r.replied >= switched)
            .into_iter()
            .filter(|n| !held.contains(n))
            .collect();
        let slowest = w.records.iter().max_by_key(|r| r.latency());
        eprintln!(
            "[partition] writer {}: first ack {follow:?} after +switch-master; {} acknowledged; \
             failures {:?}; acknowledged but lost (before the cut): {}; longest reply {:?} \
             (command #{}, sent {:?} after the cut)",
            w.key,
            w.acked().len(),
            w.failure_texts(),
            w.lost(&held).len(),
            w.max_latency(),
            slowest.map_or(0, |r| r.n),
            slowest.map(|r| r.sent.saturating_duration_since(cut)),
        );
        if !late.is_empty() {
            problems.push(format!(
                "writer {}: failures after the proxy followed the promotion: {late:?}",
                w.key
            ));
        }
        if !lost_after.is_empty() {
            problems.push(format!(
                "writer {}: acknowledged after the promotion but missing: {lost_after:?}",
                w.key
            ));
        }
        let dups = duplicates(&held);
        if !dups.is_empty() {
            problems.push(format!("writer {}: applied twice: {dups:?}", w.key));
        }
        if follow >= Duration::from_secs(5) {
            problems.push(format!(
                "writer {}: first acknowledged write {follow:?} after +switch-master (bound 5 s)",
                w.key
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A replica promoted by hand claims master without Sentinel's vote (the Sentinel variant of
/// two claimants).
/// 1. A master, two replicas, three Sentinels; the proxy lists all three nodes (authority
///    "sentinel"). A MONITOR connection is opened straight to replica 0; two writers push.
/// 2. `REPLICAOF NO ONE` on replica 0: two nodes now report themselves master, and the rogue
///    one carries the master's history as `master_replid2` (under the nodes authority it
///    would win by succession), but the Sentinels still name the original master.
/// 3. The writers keep going for 3 s (15 probe intervals).
/// 4. No writer saw an error; every acknowledged number is on the original master; MONITOR
///    saw no push from a client on the rogue node after its promotion (printed as "writes to
///    unauthorised claimant", must be 0).
#[test]
fn hand_promoted_replica_gets_no_writes() {
    let cluster = Cluster::start();
    let nodes: Vec<String> = cluster.servers().iter().map(|s| s.addr_str()).collect();
    let proxy = sentinel_proxy(&cluster.group, &nodes, "");
    let rogue = &cluster.replicas[0];
    let monitor = Monitor::start(rogue);
    let node_ports: Vec<u16> = cluster.servers().iter().map(|s| s.port).collect();
    let writers: Vec<Writer> = (0..2)
        .map(|i| Writer::start(&proxy, &format!("rogue:{i}"), Duration::from_millis(1)))
        .collect();
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }

    let started = Instant::now();
    assert_eq!(rogue.cmd(&["REPLICAOF", "NO", "ONE"]), Frame::ok());
    assert_eq!(role(rogue).as_deref(), Some("master"));
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for w in &writers {
            w.advance(10, Duration::from_secs(10));
        }
    }
    let finished: Vec<Finished> = writers.into_iter().map(Writer::finish).collect();
    let to_rogue = monitor.client_pushes("rogue:", &node_ports);
    eprintln!(
        "[hand-promoted replica] writes to unauthorised claimant: {}",
        to_rogue.len()
    );
    for mut w in finished {
        assert!(
            w.failures().is_empty(),
            "writer {}: {}",
            w.key,
            w.failure_summary(started)
        );
        let held = stored(&cluster.master, &w.key);
        let lost = w.lost(&held);
        assert!(lost.is_empty(), "writer {}: lost {lost:?}", w.key);
        w.assert_same_connection();
    }
    assert!(
        to_rogue.is_empty(),
        "writes reached the node Sentinel did not authorise: {to_rogue:?}"
    );
}

/// Every Sentinel unreachable: from one proxy replica, losing every Sentinel looks exactly like
/// being cut off from them, so the proxy stops writing when its write lease runs out.
/// 1. A master, two replicas, three Sentinels (`down-after-milliseconds` 1000, so the lease is
///    900 ms); the proxy lists the nodes and the Sentinels, probing every 200 ms; two writers
///    push.
/// 2. Every Sentinel is killed.
/// 3. The proxy logs a warning that the authority is unreachable.
/// 4. No write is acknowledged later than the lease after the kill (the window is printed);
///    every failure is the proxy's failover error saying the master could not be confirmed
///    and the command was not executed.
/// 5. The Sentinels come back: the writers are acknowledged again, on the same connections.
/// 6. Every acknowledged number is on the master, none twice.
#[test]
fn sentinels_lost_lapse_the_write_lease() {
    let mut cluster = Cluster::start();
    let nodes: Vec<String> = cluster.servers().iter().map(|s| s.addr_str()).collect();
    let proxy = sentinel_proxy(&cluster.group, &nodes, "hold_timeout = \"500ms\"");
    let writers: Vec<Writer> = (0..2)
        .map(|i| Writer::start(&proxy, &format!("nosentinel:{i}"), Duration::from_millis(1)))
        .collect();
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }

    // Counted from when the last Sentinel is gone: a confirmation by any of them can be
    // renewed until then.
    cluster.group.kill_all();
    let killed = Instant::now();
    let line = wait_log_line(
        &proxy,
        &["authority unreachable from here"],
        Duration::from_secs(10),
    );
    let noticed = killed.elapsed();
    // Well past the lease: every writer now gets errors.
    std::thread::sleep(Duration::from_secs(2));
    let mut fresh = proxy.client();
    match fresh.cmd(&["SET", "nosentinel:new", "1"]) {
        Frame::Error(e) => assert!(
            e.contains("could not be confirmed") && e.contains("not executed (proxy)"),
            "{e}"
        ),
        other => panic!("a write without a lease was answered {other:?}"),
    }
    assert_eq!(cluster.master.cmd(&["GET", "nosentinel:new"]), Frame::Null);

    let back = Instant::now();
    for i in 0..cluster.group.len() {
        cluster.group.restart(i);
    }
    for w in &writers {
        w.advance(50, Duration::from_secs(15));
    }
    let resumed = back.elapsed();

    let lease = Duration::from_millis(900);
    for mut w in writers.into_iter().map(Writer::finish) {
        let late: Vec<u64> = w.ok_where(|r| r.sent > killed + lease && r.replied < back);
        assert!(
            late.is_empty(),
            "writer {}: acknowledged after the lease ran out: {late:?}",
            w.key
        );
        let last_ack = w
            .records
            .iter()
            .filter(|r| r.outcome == Outcome::Acked && r.replied < back)
            .map(|r| r.replied)
            .max()
            .expect("acknowledged before the kill");
        assert_proxy_errors_only(&w);
        assert!(
            w.failure_texts()
                .iter()
                .all(|t| t.contains("could not be confirmed") || t.contains("Sentinel")),
            "writer {}: {:?}",
            w.key,
            w.failure_texts()
        );
        let held = stored(&cluster.master, &w.key);
        assert!(w.lost(&held).is_empty(), "writer {}: lost writes", w.key);
        assert!(duplicates(&held).is_empty(), "writer {}: duplicates", w.key);
        w.assert_same_connection();
        eprintln!(
            "[Sentinels lost] writer {}: {} acknowledged, last {:?} after the kill (lease {lease:?}); {}",
            w.key,
            w.acked().len(),
            last_ack.saturating_duration_since(killed),
            w.failure_summary(killed)
        );
    }
    eprintln!("[Sentinels lost] logged {noticed:?} after the kill: {line}; writes resumed {resumed:?} after the Sentinels came back");
}
