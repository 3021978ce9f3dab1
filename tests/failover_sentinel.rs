//! Failover under the Sentinel authority, as clients see it: numbered writers push onto lists
//! through the proxy on persistent connections while the master is switched by
//! `SENTINEL FAILOVER`, by Redis's own `FAILOVER TO`, or replaced after it is killed. Each test
//! checks what the writers were told against what the new master holds (no acknowledged write
//! lost, none applied twice), which errors they got, whether their connections survived, and
//! prints how long writes were held and how soon after the switch they were served again.

mod support;

use std::time::{Duration, Instant};

use support::failover::{role, sentinel_proxy, wait_for, Cluster, Monitor, Switches};
use support::writer::{duplicates, is_proxy_failover_error, stored, Finished, Writer};
use support::{Frame, Proxy};

/// Checks one finished writer against the list `server` holds: nothing acknowledged is
/// missing, nothing is there twice.
fn assert_nothing_lost(w: &Finished, server: &support::RedisServer) {
    let held = stored(server, &w.key);
    let lost = w.lost(&held);
    // When each lost write was sent and acknowledged, and when the longest-held one waited,
    // from the writer's first command: says whether they slipped past the hold or were
    // acknowledged before it and not yet replicated when the replica was promoted.
    let start = w.records.first().map(|r| r.sent);
    let when = |r: &support::writer::Record| {
        let from = |t: Instant| start.map(|s| t.saturating_duration_since(s));
        format!(
            "#{} sent {:?} replied {:?}",
            r.n,
            from(r.sent),
            from(r.replied)
        )
    };
    let timing: Vec<String> = w
        .records
        .iter()
        .filter(|r| lost.contains(&r.n))
        .map(when)
        .collect();
    let longest = w
        .records
        .iter()
        .max_by_key(|r| r.replied - r.sent)
        .map(when);
    assert!(
        lost.is_empty(),
        "writer {}: {} acknowledged writes missing on {}: {lost:?}; {timing:?}; held longest: \
         {longest:?}",
        w.key,
        lost.len(),
        server.addr()
    );
    let dups = duplicates(&held);
    assert!(dups.is_empty(), "writer {}: applied twice: {dups:?}", w.key);
}

/// Planned `SENTINEL FAILOVER` under load.
/// 1. A master, two replicas and three Sentinels; the proxy started with the quick-start flags
///    `--sentinels` and `--master-name` (nodes learned from the Sentinels), probing every
///    200 ms, hold timeout 5 s.
/// 2. Two writers push numbers through the proxy, each on one connection.
/// 3. `SENTINEL FAILOVER`; the first `+switch-master` names a replica; the writers keep being
///    acknowledged afterwards, also after the old master reports itself a replica.
/// 4. No writer saw an error; every acknowledged number is on the new master, none twice; each
///    writer's connection is the same proxy client (same `CLIENT ID`).
/// 5. Prints the longest reply latency (time held) and the time from `+switch-master` to the
///    first acknowledged write after it.
#[test]
fn planned_sentinel_failover_loses_nothing() {
    let cluster = Cluster::start();
    let proxy = Proxy::builder()
        .config("[failover]\nhold_timeout = \"5s\"\n[health]\ninterval = \"200ms\"\ntimeout = \"500ms\"\n")
        .args(&[
            "--sentinels",
            &cluster.group.addrs().join(","),
            "--master-name",
            cluster.group.name(),
        ])
        .start();
    let switches = Switches::watch(&cluster.group);
    let writers: Vec<Writer> = (0..2)
        .map(|i| Writer::start(&proxy, &format!("planned:{i}"), Duration::from_millis(1)))
        .collect();
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }

    let asked = Instant::now();
    cluster.group.failover();
    let (switched, new_addr) = switches
        .first(Duration::from_secs(20))
        .expect("no +switch-master within 20 s");
    let new_master = cluster.server(&new_addr);
    assert_ne!(new_addr, cluster.master.addr_str());
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }
    wait_for(
        "the old master reports itself a replica",
        Duration::from_secs(20),
        || role(&cluster.master).as_deref() == Some("slave"),
    );
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }

    for w in writers {
        let mut w = w.finish();
        let first = w
            .first_ack_after(switched)
            .expect("an ack after the switch");
        eprintln!(
            "[planned SENTINEL FAILOVER] writer {}: {} acknowledged; {}; held (max reply \
             latency) {:?}; +switch-master {:?} after the request; first ack {:?} after \
             +switch-master",
            w.key,
            w.acked().len(),
            w.failure_summary(asked),
            w.max_latency(),
            switched - asked,
            first.saturating_duration_since(switched)
        );
        assert!(
            w.failures().is_empty(),
            "writer {}: {}",
            w.key,
            w.failure_summary(asked)
        );
        assert_nothing_lost(&w, new_master);
        w.assert_same_connection();
    }
}

/// Redis's own `FAILOVER TO <replica>` run behind Sentinel's back, under load, with the
/// Sentinel authority. Sentinel does not follow `FAILOVER` (it keeps naming the old master,
/// later fails over on its own); the proxy follows its authority, so it must never write to
/// the node that promoted itself while Sentinel does not name it.
/// 1. A master, two replicas and three Sentinels; the proxy lists the three nodes and the
///    Sentinels (authority "sentinel"), probing every 200 ms, hold timeout 5 s. A MONITOR on
///    the target replica records the writes clients send it.
/// 2. Two writers push numbers through the proxy.
/// 3. `FAILOVER TO <replica 0> TIMEOUT 5000` on the master; the replica reports itself master;
///    the writers keep going for 5 s more.
/// 4. Until a Sentinel names it (`+switch-master`), the target received no write from a
///    client; every error the writers got says the command was not executed (safe to retry);
///    nothing acknowledged is missing on the target or there twice; the writers' connections
///    are the same proxy clients.
#[test]
fn failover_command_behind_sentinels_back_gets_no_writes() {
    let cluster = Cluster::start();
    let nodes: Vec<String> = cluster.servers().iter().map(|s| s.addr_str()).collect();
    let node_ports: Vec<u16> = cluster.servers().iter().map(|s| s.port).collect();
    let proxy = sentinel_proxy(&cluster.group, &nodes, "hold_timeout = \"5s\"");
    let switches = Switches::watch(&cluster.group);
    let writers: Vec<Writer> = (0..2)
        .map(|i| {
            Writer::start(
                &proxy,
                &format!("failover-to:{i}"),
                Duration::from_millis(1),
            )
        })
        .collect();
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }

    let target = &cluster.replicas[0];
    let monitor = Monitor::start(target);
    let asked = Instant::now();
    assert_eq!(
        cluster.master.cmd(&[
            "FAILOVER",
            "TO",
            "127.0.0.1",
            &target.port.to_string(),
            "TIMEOUT",
            "5000"
        ]),
        Frame::ok()
    );
    let promoted = wait_for(
        "the target replica reports itself master",
        Duration::from_secs(20),
        || role(target).as_deref() == Some("master"),
    );
    std::thread::sleep(Duration::from_secs(5));
    let named_at = switches
        .first(Duration::from_millis(1))
        .filter(|(_, addr)| *addr == target.addr_str())
        .map(|(t, _)| t);
    let unauthorised: Vec<(String, u64)> = monitor
        .seen()
        .into_iter()
        .filter(|s| named_at.is_none_or(|t| s.at < t))
        .filter(|s| {
            let port = s.client.rsplit(':').next().and_then(|p| p.parse().ok());
            !port.is_some_and(|p: u16| node_ports.contains(&p))
        })
        .filter_map(|s| match s.args.as_slice() {
            [cmd, key, n] if cmd.eq_ignore_ascii_case("RPUSH") => {
                Some((key.clone(), n.parse().ok()?))
            }
            _ => None,
        })
        .collect();
    eprintln!(
        "[FAILOVER TO under sentinel] promotion seen {:?} after the request; Sentinel named the \
         target: {}; client writes the target received before that: {}",
        promoted - asked,
        named_at.is_some(),
        unauthorised.len()
    );
    assert!(
        unauthorised.is_empty(),
        "the proxy wrote to a master Sentinel does not name: {unauthorised:?}"
    );
    for w in writers {
        let mut w = w.finish();
        eprintln!(
            "[FAILOVER TO under sentinel] writer {}: {} acknowledged; {}",
            w.key,
            w.acked().len(),
            w.failure_summary(asked)
        );
        for f in w.failures() {
            assert!(
                matches!(&f.outcome, support::writer::Outcome::Error(e) if e.contains("not executed")),
                "writer {}: {:?}",
                w.key,
                f.outcome
            );
        }
        assert_nothing_lost(&w, target);
        w.assert_same_connection();
    }
}

/// Master killed (SIGKILL); Sentinel promotes a replica.
/// 1. A master, two replicas and three Sentinels; the proxy lists the three nodes and the
///    Sentinels, probing every 200 ms, hold timeout 6 s (longer than the promotion takes).
/// 2. Two writers push numbers through the proxy; the master is killed.
/// 3. The first `+switch-master` (any Sentinel) names a replica; the proxy acknowledges a
///    write within 3 s of it (the measured time is printed).
/// 4. No writer hung (20 s read guard); every error is one of the proxy's own, and none is
///    "not executed": a command that never reached the dead master is held (not sent again and
///    again to it) and served by the new one. Only the write in flight when the master died
///    may get "may have been applied" (one per writer at most).
/// 5. Once a writer got its first acknowledgement after the promotion, every later command of
///    it succeeded; nothing acknowledged after the promotion is missing on the new master and
///    nothing is there twice. Acknowledged writes lost from before the kill (asynchronous
///    replication) are counted and printed, not asserted.
#[test]
fn killed_master_is_followed_after_promotion() {
    let mut cluster = Cluster::start();
    let nodes: Vec<String> = cluster.servers().iter().map(|s| s.addr_str()).collect();
    let proxy = sentinel_proxy(&cluster.group, &nodes, "hold_timeout = \"6s\"");
    let switches = Switches::watch(&cluster.group);
    let writers: Vec<Writer> = (0..2)
        .map(|i| Writer::start(&proxy, &format!("killed:{i}"), Duration::from_millis(1)))
        .collect();
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }

    let killed = Instant::now();
    cluster.master.kill();
    let (switched, new_addr) = switches
        .first(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no +switch-master\n{}", cluster.group.logs()));
    for w in &writers {
        w.advance(50, Duration::from_secs(15));
    }
    let finished: Vec<Finished> = writers.into_iter().map(Writer::finish).collect();
    let new_master = cluster.server(&new_addr);

    for w in &finished {
        let failures = w.failures();
        assert!(
            failures
                .iter()
                .all(|r| matches!(&r.outcome, support::writer::Outcome::Error(e) if is_proxy_failover_error(e))),
            "writer {}: errors other than the proxy's failover errors: {:?}",
            w.key,
            w.failure_texts()
        );
        let first = w
            .first_ack_after(switched)
            .expect("an acknowledgement after the promotion");
        let follow = first.saturating_duration_since(switched);
        let late: Vec<String> = w
            .records
            .iter()
            .filter(|r| r.sent >= first && r.outcome != support::writer::Outcome::Acked)
            .map(|r| format!("#{} {:?}", r.n, r.outcome))
            .collect();
        assert!(
            late.is_empty(),
            "writer {}: failures after the proxy followed the promotion: {late:?}",
            w.key
        );
        let held = stored(new_master, &w.key);
        let lost_after = w
            .ok_where(|r| r.replied >= switched)
            .into_iter()
            .filter(|n| !held.contains(n))
            .collect::<Vec<_>>();
        assert!(
            lost_after.is_empty(),
            "writer {}: acknowledged after the promotion but missing: {lost_after:?}",
            w.key
        );
        let dups = duplicates(&held);
        assert!(dups.is_empty(), "writer {}: applied twice: {dups:?}", w.key);
        let lost = w.lost(&held);
        let not_executed = failures
            .iter()
            .filter(|r| matches!(&r.outcome, support::writer::Outcome::Error(e) if e.contains("not executed")))
            .count();
        eprintln!(
            "[master killed] writer {}: +switch-master {:?} after the kill; first ack {:?} after \
             +switch-master; {} acknowledged; errors: {} not executed, {} may have been applied; \
             acknowledged but lost (before the kill): {}; longest reply {:?}",
            w.key,
            switched - killed,
            follow,
            w.acked().len(),
            not_executed,
            failures.len() - not_executed,
            lost.len(),
            w.max_latency()
        );
        assert!(
            not_executed == 0 && failures.len() <= 1,
            "writer {}: commands failed although the hold outlasted the promotion: {:?}",
            w.key,
            w.failure_texts()
        );
        assert!(
            follow < Duration::from_secs(3),
            "writer {}: first acknowledged write {follow:?} after +switch-master (bound 3 s)",
            w.key
        );
    }
}
