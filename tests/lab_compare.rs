//! The proxy and HAProxy side by side on the network lab, in one run: the master's site (a) is
//! cut off for 15 s and healed, once with writers going through the proxy replicas of sites a
//! and b, once with writers going through an HAProxy in each of sites a and b, configured with
//! the commonly documented `role:master` check against both Redis nodes' lab addresses (the
//! template in `scripts/lib/haproxy-redis.cfg`, which `scripts/bench-failover` uses too). Both
//! scenarios run in the same lab, each from a fresh start (master in a, replica in b, fresh
//! Sentinels); the test prints one table between `=== lab comparison ===` markers, which
//! `scripts/bench-failover --lab` shows.
//!
//! Ignored by default (two minutes, root only): `cargo test --test lab_compare -- --ignored
//! --nocapture`. It fails only when the proxy breaks its guarantees (a write acknowledged by
//! the old master after the promotion); HAProxy's figures are measured, not judged.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::failover::wait_for;
use support::lab_cut::{cut_master_site, print_table, start_lab, through_proxies};
use support::lab_layout::{Layout, PACE};
use support::netlab::Lab;
use support::writer::Writer;

/// Both scenarios together, with the set-ups.
const LIMIT: Duration = Duration::from_secs(300);
/// HAProxy's port in its site.
const HAPROXY_PORT: u16 = 6380;
/// The shared HAProxy configuration, with `@BIND@` for the listening address.
const HAPROXY_TEMPLATE: &str = include_str!("../scripts/lib/haproxy-redis.cfg");

/// HAProxy running in a site of the lab; killed on drop.
struct HaProxy {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl HaProxy {
    /// HAProxy in site `site` in front of the Redis nodes of `nodes` (site names, by lab
    /// address); returns once it has marked the replica down and a write goes through.
    fn start(lab: &Lab, site: &str, nodes: &[&str]) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = HAPROXY_TEMPLATE.replace("@BIND@", &format!("0.0.0.0:{HAPROXY_PORT}"));
        for n in nodes {
            cfg.push_str(&format!("  server redis-{n} {}\n", lab.redis_addr(n)));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("haproxy.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.site(site).ns, "haproxy", "-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("haproxy must be installed (scripts/install-deps haproxy)");
        let h = HaProxy {
            child,
            addr: SocketAddr::from((lab.site(site).ctl_ip, HAPROXY_PORT)),
            dir,
        };
        // HAProxy takes every server as up until its first check: no write may reach the
        // replica, so wait until it was marked down.
        wait_for(
            "HAProxy marks the replica down",
            Duration::from_secs(15),
            || h.log().matches("is DOWN").count() >= nodes.len() - 1,
        );
        wait_for("a write through HAProxy", Duration::from_secs(10), || {
            support::Client::try_connect(h.addr)
                .map(|mut c| c.cmd(&["SET", "compare:ready", "1"]) == support::Frame::ok())
                .unwrap_or(false)
        });
        h
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The master's site cut off for 15 s: through the proxy, then through HAProxy, in one lab.
#[test]
#[ignore = "two minutes on the network lab (root); run by scripts/bench-failover --lab"]
fn master_site_cut_proxy_and_haproxy() {
    let Some(lab) = start_lab("lab_compare", LIMIT) else {
        return;
    };
    let l = Layout::build(lab, &["a", "b"]);
    let mut rows = through_proxies(&l, "proxy");
    let lab = l.into_lab();

    let l = Layout::build(lab, &[]);
    let haproxies: Vec<(&str, HaProxy)> = ["a", "b"]
        .into_iter()
        .map(|s| (s, HaProxy::start(&l.lab, s, &["a", "b"])))
        .collect();
    let addr_of = |site: &str| {
        haproxies
            .iter()
            .find(|(s, _)| *s == site)
            .map(|(_, h)| h.addr)
            .expect("an HAProxy in the site")
    };
    rows.extend(cut_master_site(&l, "haproxy", &|site, key| {
        Writer::start_reconnecting(addr_of(site), key, PACE)
    }));
    drop(haproxies);
    drop(l);

    print_table(&rows);
    let broken: Vec<String> = rows
        .iter()
        .filter(|r| r.target == "proxy" && (r.old_after > 0 || (r.site == "b" && r.lost > 0)))
        .map(|r| {
            format!(
                "proxy site {}: {} acknowledged by the old master after the promotion, {} lost",
                r.site, r.old_after, r.lost
            )
        })
        .collect();
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
