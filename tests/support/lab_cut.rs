//! The master's site cut off and healed on the network lab's layout, with a writer in sites a
//! and b, summed up as one table row per site: what the lab comparison
//! (`tests/lab_compare.rs`: the proxy against HAProxy) and the durable-writes scenario
//! (`tests/lab_durable.rs`: the proxy with and without durability) print.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::failover::{role, wait_for, Monitor, Switches};
use super::lab_layout::{error_counts, secs, sleep_until, Layout, PACE};
use super::netlab::{Lab, REDIS_PORT};
use super::writer::{stored, Finished, Outcome, Writer};

/// How long site a stays cut off.
pub const CUT: Duration = Duration::from_secs(15);

/// One line of the table: what one site's writer saw through one target.
pub struct Row {
    pub target: &'static str,
    pub site: &'static str,
    /// +switch-master, from the cut.
    pub promotion: f64,
    pub acked: usize,
    /// Acknowledged after the promotion by the old master.
    pub old_after: usize,
    /// Acknowledged, missing on the final master.
    pub lost: usize,
    pub errors: usize,
    pub kinds: Vec<(String, usize)>,
    pub longest: Duration,
    /// The last acknowledgement during the cut, from the cut.
    pub last_in_cut: Option<f64>,
}

/// A fresh lab with sites a, b, c and d, bounded by `limit`; `None` (after recording `test`
/// as not run) where namespaces cannot be made.
pub fn start_lab(test: &str, limit: Duration) -> Option<Lab> {
    let Some(lab) = Lab::try_start(&["a", "b", "c", "d"]) else {
        super::netlab::not_run(test);
        return None;
    };
    lab.watchdog(limit);
    Some(lab)
}

/// [`cut_master_site`] with the writers going through the layout's proxies in sites a and b.
pub fn through_proxies(l: &Layout, target: &'static str) -> Vec<Row> {
    cut_master_site(l, target, &|site, key| {
        Writer::start(l.proxy(site), key, PACE)
    })
}

/// Cuts site a off for [`CUT`] and heals it, with a writer in sites a and b started by `start`
/// (site, key); one row per site.
pub fn cut_master_site(
    l: &Layout,
    target: &'static str,
    start: &dyn Fn(&str, &str) -> Writer,
) -> Vec<Row> {
    let switches = Switches::watch(&l.group);
    let monitor = Monitor::start(l.server("a"));
    let prefix = format!("compare:{target}:");
    let sites = ["a", "b"];
    let writers: Vec<Writer> = sites
        .iter()
        .map(|s| start(s, &format!("{prefix}{s}")))
        .collect();
    for w in &writers {
        w.advance(100, Duration::from_secs(10));
    }
    let cut = Instant::now();
    l.lab.cut("a");
    let (promoted, new_master) = switches
        .first(Duration::from_secs(30))
        .expect("a +switch-master within 30 s of the cut");
    sleep_until(&l.lab, cut + CUT);
    l.lab.heal("a");
    let healed = Instant::now();
    wait_for("the old master demoted", Duration::from_secs(30), || {
        l.lab.check();
        role(l.server("a")).as_deref() == Some("slave")
    });
    for w in &writers {
        // Recorded in the table either way: a writer that never resumes shows no errors
        // after the heal but its longest wait.
        let _ = w.try_advance(50, Duration::from_secs(20));
    }
    let finished: Vec<Finished> = writers.into_iter().map(Writer::finish).collect();
    l.lab.check();
    eprintln!(
        "[compare {target}] promoted {new_master} {:.2} s after the cut",
        secs(cut, promoted)
    );

    let final_addr = l.group.master_addr().expect("a master after the heal");
    let final_master = l.server(&l.site_of(&final_addr));
    // Pushes by clients (not the replication link from port 6379) seen on the old master.
    let on_old: HashSet<(String, u64)> = monitor
        .client_pushes(&prefix, &[REDIS_PORT])
        .into_iter()
        .collect();
    sites
        .iter()
        .zip(&finished)
        .map(|(site, w)| {
            let held = stored(final_master, &w.key);
            let held_set: HashSet<u64> = held.iter().copied().collect();
            let old_after = w
                .records
                .iter()
                .filter(|r| r.outcome == Outcome::Acked && r.replied >= promoted)
                .filter(|r| !held_set.contains(&r.n) || on_old.contains(&(w.key.clone(), r.n)))
                .count();
            let last_in_cut = w
                .records
                .iter()
                .filter(|r| r.outcome == Outcome::Acked && r.replied >= cut && r.replied < healed)
                .map(|r| secs(cut, r.replied))
                .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
            Row {
                target,
                site,
                promotion: secs(cut, promoted),
                acked: w.acked().len(),
                old_after,
                lost: w.lost(&held).len(),
                errors: w.failures().len(),
                kinds: error_counts(w),
                longest: w.max_latency(),
                last_in_cut,
            }
        })
        .collect()
}

/// Prints the table between markers (scripts/bench-failover --lab shows that part).
pub fn print_table(rows: &[Row]) {
    println!("=== lab comparison ===");
    println!(
        "Site a (master, Sentinel, writer's endpoint) cut off for {} s, then healed; site b: \
         replica, Sentinel, writer's endpoint; site c: Sentinel.",
        CUT.as_secs()
    );
    println!(
        "{:<8} {:>4} {:>10} {:>7} {:>14} {:>11} {:>7} {:>12} {:>12}",
        "target",
        "site",
        "promotion",
        "acked",
        "old master",
        "acked lost",
        "errors",
        "longest wait",
        "last ack in"
    );
    println!(
        "{:<8} {:>4} {:>10} {:>7} {:>14} {:>11} {:>7} {:>12} {:>12}",
        "", "", "(s)", "", "after promo.", "", "", "(s)", "cut (s)"
    );
    for r in rows {
        println!(
            "{:<8} {:>4} {:>10.2} {:>7} {:>14} {:>11} {:>7} {:>12.3} {:>12}",
            r.target,
            r.site,
            r.promotion,
            r.acked,
            r.old_after,
            r.lost,
            r.errors,
            r.longest.as_secs_f64(),
            r.last_in_cut
                .map_or("none".to_string(), |t| format!("{t:.2}"))
        );
    }
    for r in rows.iter().filter(|r| !r.kinds.is_empty()) {
        let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{n} x {k}")).collect();
        println!("  {} {}: {}", r.target, r.site, kinds.join("; "));
    }
    println!(
        "promotion: first +switch-master after the cut; old master after promo.: writes \
         acknowledged after it that the old master executed (MONITOR) or the final master \
         lacks; acked lost: acknowledged writes missing on the final master; longest wait: \
         the longest one command waited for its reply; last ack in cut: the last \
         acknowledgement during the cut."
    );
    println!("=== end of lab comparison ===");
}
