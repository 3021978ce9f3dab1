//! The layout the lab's partition tests share: four sites on the network lab. Site a holds the
//! master, a Sentinel and a proxy; site b a replica, a Sentinel and a proxy; site c a Sentinel
//! only (the witness); site d nothing but, when asked for, a proxy of its own (to cut a proxy
//! from some of the others without cutting the master). Every node and Sentinel is named in
//! the test's DNS server (`redis-a.lab.test.`, `sentinel-c.lab.test.`, ...), and each proxy is
//! configured by those names, asking the DNS server over its site's control link. It also
//! holds the writers' pace, a sleep that minds the lab's deadline, and the checks every
//! scenario makes on the writers' ledgers.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::dns::DnsServer;
use super::netlab::{redis_name, sentinel_name, Lab, REDIS_PORT, SENTINEL_PORT};
use super::procs::{Proxy, RedisServer};
use super::sentinel::{Group, GroupOptions};
use super::writer::{duplicates, is_proxy_failover_error, Finished, Outcome};

/// Sentinel `down-after-milliseconds` in the lab.
pub const DOWN_AFTER_MS: u64 = 2000;
/// The proxies' `hold_timeout`.
pub const HOLD: Duration = Duration::from_secs(6);
/// A writer's pause after each acknowledged command.
pub const PACE: Duration = Duration::from_millis(5);

/// The running layout. Fields drop in order: proxies, Sentinels, servers, DNS, and the lab
/// last (it kills whatever is left in its namespaces).
#[derive(Debug)]
pub struct Layout {
    /// Proxies by site name.
    pub proxies: Vec<(String, Proxy)>,
    /// Sentinels of sites a, b and c, in that order.
    pub group: Group,
    /// The master (site a) and the replica (site b) at the start.
    pub servers: Vec<(String, RedisServer)>,
    /// The DNS server every proxy asks.
    pub dns: DnsServer,
    /// The lab.
    pub lab: Lab,
}

/// The proxy configuration for a proxy in site `site`.
pub fn proxy_toml(lab: &Lab, dns: &DnsServer, site: &str) -> String {
    let name_list = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let node = |s: &str| vec![format!("{}:{REDIS_PORT}", redis_name(s))];
    let sentinel = |s: &str| vec![format!("{}:{SENTINEL_PORT}", sentinel_name(s))];
    format!(
        r#"
[failover]
authority = "sentinel"
master_name = "mymaster"
hold_timeout = "{hold}s"
# Sentinel names nodes by lab address; the proxy probes only the names below.
learn_nodes = false

[health]
interval = "200ms"
timeout = "500ms"

[dns]
nameservers = ["{ns}"]
min_ttl = "1s"
max_ttl = "10s"

[[sites]]
name = "a"
nodes = [{na}]
sentinels = [{sa}]

[[sites]]
name = "b"
nodes = [{nb}]
sentinels = [{sb}]

[[sites]]
name = "c"
sentinels = [{sc}]
"#,
        hold = HOLD.as_secs(),
        ns = lab.nameserver(site, dns),
        na = name_list(&node("a")),
        sa = name_list(&sentinel("a")),
        nb = name_list(&node("b")),
        sb = name_list(&sentinel("b")),
        sc = name_list(&sentinel("c")),
    )
}

impl Layout {
    /// Builds the layout with proxies in `proxy_sites`; `None` (after recording `test` as not
    /// run) where the lab cannot be made. The lab's watchdog bounds the test at `limit`.
    pub fn start(test: &str, proxy_sites: &[&str], limit: Duration) -> Option<Layout> {
        Self::start_with(test, proxy_sites, limit, "")
    }

    /// [`start`](Self::start), with `extra` appended to every proxy's configuration.
    pub fn start_with(
        test: &str,
        proxy_sites: &[&str],
        limit: Duration,
        extra: &str,
    ) -> Option<Layout> {
        let Some(lab) = Lab::try_start(&["a", "b", "c", "d"]) else {
            super::netlab::not_run(test);
            return None;
        };
        lab.watchdog(limit);
        Some(Self::build_with(lab, proxy_sites, extra))
    }

    /// Builds the layout on `lab` (made with sites a, b, c and d, and either fresh or given
    /// back by [`into_lab`](Self::into_lab)), with proxies in `proxy_sites`.
    pub fn build(lab: Lab, proxy_sites: &[&str]) -> Layout {
        Self::build_with(lab, proxy_sites, "")
    }

    /// [`build`](Self::build), with `extra` appended to every proxy's configuration.
    pub fn build_with(lab: Lab, proxy_sites: &[&str], extra: &str) -> Layout {
        let dns = DnsServer::start_on(Ipv4Addr::UNSPECIFIED);
        lab.publish(&dns);
        let master = lab.redis("a", Default::default());
        let replica = lab.replica("b", "a");
        let group = lab.sentinels(
            &["a", "b", "c"],
            "a",
            &["b"],
            GroupOptions {
                down_after_ms: DOWN_AFTER_MS,
                // Two Sentinels outside the lost site may split their votes; the next
                // election waits twice this, which must stay well inside a 15 s cut.
                failover_timeout_ms: 4_000,
                ..Default::default()
            },
        );
        let proxies = proxy_sites
            .iter()
            .map(|s| {
                let toml = format!("{}\n{extra}", proxy_toml(&lab, &dns, s));
                (s.to_string(), lab.proxy(s, &toml))
            })
            .collect();
        Layout {
            proxies,
            group,
            servers: vec![("a".into(), master), ("b".into(), replica)],
            dns,
            lab,
        }
    }

    /// Stops everything but the lab and gives the lab back, healed by the caller, for a
    /// second scenario from the same start (a fresh master in site a, fresh Sentinels).
    pub fn into_lab(self) -> Lab {
        let Layout {
            proxies,
            group,
            servers,
            dns,
            lab,
        } = self;
        // The same order as the fields drop in: clients of a server go before it.
        drop(proxies);
        drop(group);
        drop(servers);
        drop(dns);
        lab
    }

    /// The proxy in site `site`.
    pub fn proxy(&self, site: &str) -> &Proxy {
        &self
            .proxies
            .iter()
            .find(|(s, _)| s == site)
            .unwrap_or_else(|| panic!("no proxy in site {site}"))
            .1
    }

    /// The `redis-server` in site `site`.
    pub fn server(&self, site: &str) -> &RedisServer {
        &self
            .servers
            .iter()
            .find(|(s, _)| s == site)
            .unwrap_or_else(|| panic!("no redis-server in site {site}"))
            .1
    }

    /// The site whose `redis-server` is at lab address `addr` (`ip:port`).
    pub fn site_of(&self, addr: &str) -> String {
        self.servers
            .iter()
            .map(|(s, _)| s.clone())
            .find(|s| self.lab.redis_addr(s) == addr)
            .unwrap_or_else(|| panic!("no redis-server at {addr}"))
    }

    /// Waits until a majority of the Sentinels names the server of site `site` as master.
    pub fn wait_master(&self, site: &str, within: Duration) -> bool {
        self.group.wait_master(&self.lab.redis_addr(site), within)
    }
}

/// The failures of `w` that are not the proxy's failover errors (a hang, a dropped connection,
/// any other error), as text.
pub fn foreign_failures(w: &Finished) -> Vec<String> {
    w.failures()
        .iter()
        .filter(|r| !matches!(&r.outcome, Outcome::Error(e) if is_proxy_failover_error(e)))
        .map(|r| format!("#{} {:?}", r.n, r.outcome))
        .collect()
}

/// The distinct error texts of `w` with their counts.
pub fn error_counts(w: &Finished) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in w.failures() {
        let t = match &r.outcome {
            Outcome::Error(e) => e.clone(),
            other => format!("{other:?}"),
        };
        match counts.iter_mut().find(|(x, _)| *x == t) {
            Some((_, n)) => *n += 1,
            None => counts.push((t, 1)),
        }
    }
    counts
}

/// The longest wait of `w`: how long, and when (seconds from `origin`) that command was sent.
pub fn longest_wait(w: &Finished, origin: Instant) -> String {
    match w.records.iter().max_by_key(|r| r.latency()) {
        Some(r) => format!(
            "{:.3} s (#{} sent at {:+.2} s)",
            r.latency().as_secs_f64(),
            r.n,
            secs(origin, r.sent)
        ),
        None => "none".into(),
    }
}

/// Seconds from `origin` to `t` (negative before it), for printing.
pub fn secs(origin: Instant, t: Instant) -> f64 {
    if t >= origin {
        (t - origin).as_secs_f64()
    } else {
        -(origin - t).as_secs_f64()
    }
}

/// Sleeps until `t`, checking the lab's deadline on the way.
pub fn sleep_until(lab: &Lab, t: Instant) {
    while Instant::now() < t {
        lab.check();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Failures other than the proxy's failover errors, and values applied twice in `held` (what
/// the final master holds of each writer's list).
pub fn check_common(problems: &mut Vec<String>, writers: &[(&str, &Finished, &[u64])]) {
    for (site, w, held) in writers {
        let foreign = foreign_failures(w);
        if !foreign.is_empty() {
            problems.push(format!(
                "writer {site}: failures other than proxy failover errors: {:?}",
                &foreign[..foreign.len().min(5)]
            ));
        }
        let dups = duplicates(held);
        if !dups.is_empty() {
            problems.push(format!("writer {site}: applied twice: {dups:?}"));
        }
    }
}
