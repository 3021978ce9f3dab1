//! Durable writes on the network lab: the master's site (a) cut off for 15 s and healed while
//! writers push through the proxy replicas of sites a and b, once without durability and once
//! with `[durability] replicas = 1` (site b's replica is the only one, so one acknowledgement
//! means the write is outside site a). Both runs print one table (the same columns as the lab
//! comparison); the durable run must lose no acknowledged write in either site.
//!
//! `LAB_RUNS=5` repeats the pair of runs (each in a fresh lab) and prints every table:
//! `LAB_RUNS=5 cargo test --test lab_durable -- --nocapture`.

mod support;

use std::time::Duration;

use support::lab_cut::{print_table, start_lab, through_proxies, Row};
use support::lab_layout::Layout;

/// One pair of runs with their set-ups.
const LIMIT: Duration = Duration::from_secs(300);

/// What the durable run's proxies add to their configuration.
const DURABLE: &str = "[durability]\nreplicas = 1\ntimeout = \"500ms\"\n";

#[test]
fn durable_writes_survive_the_master_site_cut() {
    let runs: usize = std::env::var("LAB_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut problems = Vec::new();
    for run in 1..=runs {
        let Some(lab) = start_lab("durable_writes_survive_the_master_site_cut", LIMIT) else {
            return;
        };
        let l = Layout::build(lab, &["a", "b"]);
        let mut rows = through_proxies(&l, "proxy");
        let lab = l.into_lab();
        let l = Layout::build_with(lab, &["a", "b"], DURABLE);
        let durable = through_proxies(&l, "durable");
        drop(l);
        problems.extend(durable.iter().filter_map(|r| broken(run, r)));
        rows.extend(durable);
        println!("run {run} of {runs}:");
        print_table(&rows);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What the durable run must never show.
fn broken(run: usize, r: &Row) -> Option<String> {
    (r.lost > 0 || r.old_after > 0).then(|| {
        format!(
            "run {run}, durable, site {}: {} acknowledged writes lost, {} acknowledged by the \
             old master after the promotion",
            r.site, r.lost, r.old_after
        )
    })
}
