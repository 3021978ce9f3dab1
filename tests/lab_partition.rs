//! Partitions between sites, on the network lab (`support::netlab`: one network namespace per
//! site, a bridge between them, partitions made with iproute2), as clients of the proxy in
//! each site see them. Layout (`support::lab_layout`): site a holds the master, a Sentinel and
//! a proxy; site b a replica, a Sentinel and a proxy; site c the witness Sentinel (site d, a
//! proxy alone, serves the scenarios of `tests/lab_proxy_cut.rs`: a proxy cut from part of the
//! others). Writers push numbers through each proxy every 5 ms, over the site's control link,
//! and keep a ledger of what was acknowledged when; afterwards the ledgers are compared with
//! what the master holds. Every scenario prints its figures (`[lab ...]` lines) and has its own
//! deadline (the lab's watchdog), so a hang fails the test instead of the run.
//!
//! Where network namespaces cannot be made, each test records itself as NOT RUN
//! (`target/not-run/<test>`), which `scripts/test` reports.

mod support;

use std::time::{Duration, Instant};

use support::failover::{role, wait_for, Monitor, Switches};
use support::lab_layout::{
    check_common, error_counts, longest_wait, secs, sleep_until, Layout, PACE,
};
use support::netlab::{Lab, REDIS_PORT};
use support::writer::{stored, Outcome, Writer};

/// Every scenario's bound.
const LIMIT: Duration = Duration::from_secs(120);

/// The lab itself: sites reach each other's lab addresses and not each other's control links;
/// the test reaches every control link; each partition cuts what it should and its undo
/// restores it.
#[test]
fn lab_isolation() {
    // A namespace left by a run that died (no process has that pid) is swept at the start.
    let stale = "rfp4999999-0-sw";
    let made_stale = std::process::Command::new("ip")
        .args(["netns", "add", stale])
        .status()
        .is_ok_and(|s| s.success());
    let Some(lab) = Lab::try_start(&["a", "b", "c"]) else {
        support::netlab::not_run("lab_isolation");
        return;
    };
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !made_stale || !String::from_utf8_lossy(&listed.stdout).contains(stale),
        "stale namespace {stale} not swept"
    );
    lab.watchdog(LIMIT);
    let servers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|s| lab.redis(s, Default::default()))
        .collect();
    let lab_addr = |s: &str| std::net::SocketAddr::from((lab.site(s).lab_ip, REDIS_PORT));
    let ctl_addr = |s: &str| std::net::SocketAddr::from((lab.site(s).ctl_ip, REDIS_PORT));
    for s in &servers {
        assert_eq!(s.cmd(&["PING"]), support::Frame::Simple("PONG".into()));
    }
    assert!(
        lab.tcp_reaches("a", lab_addr("b")),
        "a reaches b on the lab"
    );
    assert!(
        !lab.tcp_reaches("a", ctl_addr("b")),
        "a reaches b's control link"
    );
    let route = lab.exec(
        "a",
        &["ip", "route", "get", &lab.site("b").ctl_ip.to_string()],
    );
    assert!(
        !route.status.success(),
        "site a has a route to b's control link"
    );
    let default = lab.exec("a", &["ip", "route", "show", "default"]);
    assert!(default.stdout.is_empty(), "site a has a default route");
    let root = std::process::Command::new("ip")
        .args(["-4", "addr", "show", "to", support::netlab::LAB_NET])
        .output()
        .expect("ip addr");
    assert!(
        root.stdout.is_empty(),
        "the test's namespace has a lab address"
    );

    lab.cut("b");
    assert!(
        !lab.tcp_reaches("a", lab_addr("b")),
        "cut: a still reaches b"
    );
    assert!(
        !lab.tcp_reaches("b", lab_addr("c")),
        "cut: b still reaches c"
    );
    assert_eq!(
        servers[1].cmd(&["PING"]),
        support::Frame::Simple("PONG".into())
    );
    lab.heal("b");
    assert!(
        lab.tcp_reaches("a", lab_addr("b")),
        "healed: a does not reach b"
    );

    lab.drop_outgoing("a");
    assert!(
        !lab.tcp_reaches("a", lab_addr("b")),
        "one way: a still reaches b"
    );
    assert!(
        lab.tcp_reaches("a", lab_addr("a")),
        "one way: a lost its own address"
    );
    lab.restore_outgoing("a");
    assert!(
        lab.tcp_reaches("a", lab_addr("b")),
        "restored: a does not reach b"
    );

    lab.separate("a", "b");
    assert!(
        !lab.tcp_reaches("a", lab_addr("b")),
        "separated: a reaches b"
    );
    assert!(
        !lab.tcp_reaches("b", lab_addr("a")),
        "separated: b reaches a"
    );
    assert!(lab.tcp_reaches("a", lab_addr("c")), "separated: a lost c");
    lab.join("a", "b");
    assert!(
        lab.tcp_reaches("b", lab_addr("a")),
        "joined: b does not reach a"
    );
}

/// Site a (the master's) is lost to the others by `partition` for 15 s, then `undo` heals it.
/// Shared by the full cut and the one-way loss: both must end with no write acknowledged by
/// the old master after site b's promotion.
fn master_site_lost(test: &str, label: &str, partition: fn(&Lab), undo: fn(&Lab)) {
    let Some(l) = Layout::start(test, &["a", "b"], LIMIT) else {
        return;
    };
    let switches = Switches::watch(&l.group);
    let monitor = Monitor::start(l.server("a"));
    let key_a = format!("{test}:a");
    let key_b = format!("{test}:b");
    let wa = Writer::start(l.proxy("a"), &key_a, PACE);
    let wb = Writer::start(l.proxy("b"), &key_b, PACE);
    wa.advance(100, Duration::from_secs(10));
    wb.advance(100, Duration::from_secs(10));

    let cut = Instant::now();
    partition(&l.lab);
    let (promoted, new_master) = switches
        .first(Duration::from_secs(30))
        .expect("a +switch-master within 30 s of the cut");
    sleep_until(&l.lab, cut + Duration::from_secs(15));
    undo(&l.lab);
    let healed = Instant::now();
    let demoted = wait_for("the old master demoted", Duration::from_secs(30), || {
        l.lab.check();
        role(l.server("a")).as_deref() == Some("slave")
    });
    // Both writers are acknowledged again after the heal (recorded, not fatal: the figures
    // are printed first).
    let a_resumed = wa.try_advance(50, Duration::from_secs(20));
    let b_resumed = wb.try_advance(50, Duration::from_secs(20));
    let fa = wa.finish();
    let fb = wb.finish();
    l.lab.check();

    let final_addr = l
        .group
        .master_addr()
        .expect("a master named after the heal");
    let final_master = l.server(&l.site_of(&final_addr));
    let held_a = stored(final_master, &key_a);
    let held_b = stored(final_master, &key_b);
    // What MONITOR saw clients (not a replication link: port 6379) push on the old master.
    let on_old: std::collections::HashSet<u64> = monitor
        .client_pushes(&key_a, &[REDIS_PORT])
        .into_iter()
        .filter(|(k, _)| *k == key_a)
        .map(|(_, n)| n)
        .collect();
    let sent_after_promotion = |r: &support::writer::Record| r.sent >= promoted;
    let seen_old_after: Vec<u64> = fa
        .records
        .iter()
        .filter(|r| sent_after_promotion(r) && on_old.contains(&r.n))
        .map(|r| r.n)
        .collect();
    let acked_after: Vec<&support::writer::Record> = fa
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked && r.replied >= promoted)
        .collect();
    let old_acked_after: Vec<u64> = acked_after
        .iter()
        .filter(|r| !held_a.contains(&r.n) || on_old.contains(&r.n))
        .map(|r| r.n)
        .collect();
    let lost_a = fa.lost(&held_a);
    let lost_b = fb.lost(&held_b);
    let last_ack_a = fa
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked && r.replied < healed)
        .map(|r| r.replied)
        .max()
        .unwrap_or(cut);
    let lost_acks: Vec<Instant> = fa
        .records
        .iter()
        .filter(|r| lost_a.contains(&r.n))
        .map(|r| r.replied)
        .collect();
    eprintln!(
        "[lab {label}] promotion (+switch-master to {new_master}) {:.2} s after the cut; heal \
         at {:.2} s; old master demoted {:.2} s after the heal; final master {final_addr}",
        secs(cut, promoted),
        secs(cut, healed),
        secs(healed, demoted),
    );
    eprintln!(
        "[lab {label}] site a: {} acknowledged, {} acknowledged after the promotion by the old \
         master ({} sent after it seen by MONITOR on the old master); {} acknowledged but \
         missing on the final master (acknowledged {:.2}..{:.2} s after the cut); write window \
         (last ack before the heal - cut) {:.2} s",
        fa.acked().len(),
        old_acked_after.len(),
        seen_old_after.len(),
        lost_a.len(),
        lost_acks
            .iter()
            .map(|t| secs(cut, *t))
            .fold(f64::NAN, f64::min),
        lost_acks
            .iter()
            .map(|t| secs(cut, *t))
            .fold(f64::NAN, f64::max),
        secs(cut, last_ack_a),
    );
    eprintln!(
        "[lab {label}] site b: {} acknowledged, {} lost",
        fb.acked().len(),
        lost_b.len()
    );
    for (site, w) in [("a", &fa), ("b", &fb)] {
        eprintln!(
            "[lab {label}] writer {site}: longest wait {}; errors {:?}",
            longest_wait(w, cut),
            error_counts(w)
        );
    }

    let mut problems = Vec::new();
    if new_master != l.lab.redis_addr("b") {
        problems.push(format!("promoted {new_master}, not site b's replica"));
    }
    if !old_acked_after.is_empty() {
        problems.push(format!(
            "{} writes of site a acknowledged by the old master after the promotion (first \
             {:?})",
            old_acked_after.len(),
            &old_acked_after[..old_acked_after.len().min(5)]
        ));
    }
    if lost_acks.iter().any(|t| *t >= promoted) {
        problems.push("site a lost writes acknowledged after the promotion".into());
    }
    // The lease (down-after-milliseconds less a tenth) counts from the last Sentinel poll
    // sent before the cut; the cut instant is taken just before the link goes down.
    let window = LEASE + Duration::from_millis(100);
    if lost_acks.iter().any(|t| *t > cut + window) {
        problems.push(format!(
            "site a lost writes acknowledged later than the lease ({window:?}) after the cut"
        ));
    }
    if !lost_b.is_empty() {
        problems.push(format!("site b lost acknowledged writes: {lost_b:?}"));
    }
    check_common(&mut problems, &[("a", &fa, &held_a), ("b", &fb, &held_b)]);
    if !a_resumed || !b_resumed {
        problems.push(format!(
            "writers not acknowledged again within 20 s of the heal (a: {a_resumed}, b: \
             {b_resumed})"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The write lease the proxies hold under the lab's Sentinels (`down-after-milliseconds` 2000
/// less its margin).
const LEASE: Duration = Duration::from_millis(1800);

/// Site a (master, Sentinel, proxy) cut off from the lab for 15 s, then healed. With no way
/// to know it was outvoted, proxy a may only write while a lease granted by the Sentinel
/// majority lasts (shorter than down-after-milliseconds): no write may be acknowledged by the
/// old master after site b's promotion.
#[test]
fn master_site_cut_off() {
    master_site_lost(
        "master_site_cut_off",
        "cut a",
        |l| l.cut("a"),
        |l| l.heal("a"),
    );
}

/// Site a's outgoing lab traffic dropped for 15 s (what others send arrives, nothing it sends
/// leaves): the Sentinels elsewhere see the master down and promote site b's replica; the same
/// guarantees as the full cut.
#[test]
fn one_way_loss() {
    master_site_lost(
        "one_way_loss",
        "one-way a",
        |l| l.drop_outgoing("a"),
        |l| l.restore_outgoing("a"),
    );
}

/// The witness site c cut off for 8 s (past down-after-milliseconds), then healed: nothing
/// changes for the writers in a and b (no error, nothing lost, no failover).
#[test]
fn witness_lost() {
    let Some(l) = Layout::start("witness_lost", &["a", "b"], LIMIT) else {
        return;
    };
    let switches = Switches::watch(&l.group);
    let wa = Writer::start(l.proxy("a"), "witness:a", PACE);
    let wb = Writer::start(l.proxy("b"), "witness:b", PACE);
    wa.advance(100, Duration::from_secs(10));
    wb.advance(100, Duration::from_secs(10));
    let cut = Instant::now();
    l.lab.cut("c");
    sleep_until(&l.lab, cut + Duration::from_secs(8));
    l.lab.heal("c");
    sleep_until(&l.lab, Instant::now() + Duration::from_secs(2));
    let fa = wa.finish();
    let fb = wb.finish();
    let switched = switches.first(Duration::ZERO);
    let mut problems = Vec::new();
    for (site, w) in [("a", &fa), ("b", &fb)] {
        let lost = w.lost(&stored(l.server("a"), &w.key));
        eprintln!(
            "[lab witness lost] writer {site}: {} acknowledged, {} failures, {} lost, longest \
             wait {} (from the cut)",
            w.acked().len(),
            w.failures().len(),
            lost.len(),
            longest_wait(w, cut)
        );
        if !w.failures().is_empty() {
            problems.push(format!("writer {site}: {}", w.failure_summary(cut)));
        }
        if !lost.is_empty() {
            problems.push(format!("writer {site}: lost {lost:?}"));
        }
    }
    if let Some((_, addr)) = switched {
        problems.push(format!("a failover happened (to {addr})"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
