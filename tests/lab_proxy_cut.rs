//! A proxy cut from part of the other sites on the network lab (`support::netlab`), with the
//! layout of `tests/lab_partition.rs` (`support::lab_layout`): site d holds a proxy alone,
//! cut from the Sentinels of b and c but not the master, or from the master's site but not
//! the Sentinel majority. A writer pushes numbers through proxy d every 5 ms over the site's
//! control link; the proxy must hold, then refuse with its own error (never acknowledge what
//! it cannot vouch for), and serve again after the heal with nothing acknowledged lost. Every
//! scenario prints its figures (`[lab ...]` lines) and has its own deadline (the lab's
//! watchdog), so a hang fails the test instead of the run.
//!
//! Where network namespaces cannot be made, each test records itself as NOT RUN
//! (`target/not-run/<test>`), which `scripts/test` reports.

mod support;

use std::time::{Duration, Instant};

use support::failover::Switches;
use support::lab_layout::{
    check_common, error_counts, longest_wait, secs, sleep_until, Layout, HOLD, PACE,
};
use support::netlab::Lab;
use support::writer::{stored, Outcome, Writer};

/// Every scenario's bound.
const LIMIT: Duration = Duration::from_secs(120);

/// Polls `/readyz` of `proxy` until `want(status)`; when it first did, or `None` by `within`.
fn wait_readyz(
    lab: &Lab,
    proxy: &support::Proxy,
    want: impl Fn(u16) -> bool,
    within: Duration,
) -> Option<Instant> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        lab.check();
        if want(proxy.admin_get("/readyz").0) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A proxy in site d cut from the Sentinels of b and c (not from the master nor Sentinel a)
/// for 12 s: it cannot confirm the master with a majority, so it goes unready and refuses
/// writes with its own error after the hold; no failover happens; after the heal it writes
/// again and nothing acknowledged is lost.
#[test]
fn proxy_cut_from_sentinels_not_master() {
    let Some(l) = Layout::start("proxy_cut_from_sentinels_not_master", &["d"], LIMIT) else {
        return;
    };
    let switches = Switches::watch(&l.group);
    let w = Writer::start(l.proxy("d"), "nosentinels:d", PACE);
    w.advance(100, Duration::from_secs(10));
    let cut = Instant::now();
    l.lab.separate("d", "b");
    l.lab.separate("d", "c");
    let unready = wait_readyz(&l.lab, l.proxy("d"), |s| s != 200, Duration::from_secs(12));
    sleep_until(&l.lab, cut + Duration::from_secs(12));
    l.lab.join("d", "b");
    l.lab.join("d", "c");
    let healed = Instant::now();
    let ready = wait_readyz(&l.lab, l.proxy("d"), |s| s == 200, Duration::from_secs(15));
    let resumed = w.try_advance(50, Duration::from_secs(15));
    let f = w.finish();
    let refused_during = f
        .records
        .iter()
        .filter(|r| r.sent >= cut && r.replied < healed && r.outcome != Outcome::Acked)
        .count();
    let acked_late = f
        .records
        .iter()
        .filter(|r| {
            r.outcome == Outcome::Acked
                && r.replied >= cut + HOLD + Duration::from_secs(3)
                && r.replied < healed
        })
        .count();
    let held = stored(l.server("a"), &f.key);
    let lost = f.lost(&held);
    eprintln!(
        "[lab proxy cut from Sentinels] unready {:?} s after the cut; ready again {:?} s after \
         the heal; {} refused during the cut; {} acknowledged later than hold + 3 s into the \
         cut; {} lost; longest wait {} (from the cut); errors {:?}",
        unready.map(|t| secs(cut, t)),
        ready.map(|t| secs(healed, t)),
        refused_during,
        acked_late,
        lost.len(),
        longest_wait(&f, cut),
        error_counts(&f)
    );
    let mut problems = Vec::new();
    if unready.is_none() {
        problems.push("proxy d stayed ready while cut from the Sentinel majority".to_string());
    }
    if refused_during == 0 || acked_late > 0 {
        problems.push(format!(
            "proxy d kept writing without a Sentinel majority ({acked_late} acknowledged after \
             the hold)"
        ));
    }
    if ready.is_none() || !resumed {
        problems.push("proxy d did not serve again after the heal".to_string());
    }
    if !lost.is_empty() {
        problems.push(format!("lost {lost:?}"));
    }
    if let Some((_, addr)) = switches.first(Duration::ZERO) {
        problems.push(format!("a failover happened (to {addr})"));
    }
    check_common(&mut problems, &[("d", &f, &held)]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A proxy in site d cut from site a only (the master and Sentinel a) for 10 s; the Sentinels
/// still reach the master, so no failover happens. The proxy holds, then refuses with its own
/// error within the hold; after the heal it resumes; nothing acknowledged is lost.
#[test]
fn proxy_cut_from_master_not_sentinels() {
    let Some(l) = Layout::start("proxy_cut_from_master_not_sentinels", &["d"], LIMIT) else {
        return;
    };
    let switches = Switches::watch(&l.group);
    let w = Writer::start(l.proxy("d"), "nomaster:d", PACE);
    w.advance(100, Duration::from_secs(10));
    let cut = Instant::now();
    l.lab.separate("d", "a");
    sleep_until(&l.lab, cut + Duration::from_secs(10));
    l.lab.join("d", "a");
    let healed = Instant::now();
    let resumed = w.try_advance(50, Duration::from_secs(15));
    let f = w.finish();
    let first_ack = f.first_ack_after(healed);
    let held = stored(l.server("a"), &f.key);
    let lost = f.lost(&held);
    eprintln!(
        "[lab proxy cut from master] first ack {:?} s after the heal; {} failures; {} lost; \
         longest wait {} (from the cut); errors {:?}",
        first_ack.map(|t| secs(healed, t)),
        f.failures().len(),
        lost.len(),
        longest_wait(&f, cut),
        error_counts(&f)
    );
    let mut problems = Vec::new();
    if !resumed {
        problems.push("proxy d did not write again after the heal".to_string());
    }
    if f.max_latency() > HOLD + Duration::from_secs(2) {
        problems.push(format!(
            "a command waited {:?} (hold {HOLD:?})",
            f.max_latency()
        ));
    }
    if !lost.is_empty() {
        problems.push(format!("lost {lost:?}"));
    }
    if let Some((_, addr)) = switches.first(Duration::ZERO) {
        problems.push(format!("a failover happened (to {addr})"));
    }
    check_common(&mut problems, &[("d", &f, &held)]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
