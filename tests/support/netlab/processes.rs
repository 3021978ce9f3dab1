//! Processes of a [`Lab`]'s sites and their names: a `redis-server`, a replica, one Sentinel
//! per site and the proxy, each started inside its site's namespace and reached over the
//! site's control link, and the DNS names (`redis-<site>.lab.test.`, ...) that point at the
//! sites' lab addresses.

use std::net::SocketAddr;

use super::super::dns::DnsServer;
use super::super::procs::{Proxy, RedisBuilder, RedisServer};
use super::super::sentinel::{Group, GroupOptions, Placement};
use super::{redis_name, sentinel_name, Lab, REDIS_PORT, SENTINEL_PORT};

impl Lab {
    // ---- processes in a site ----

    /// A `redis-server` in site `name` on [`REDIS_PORT`], started from `builder`; the test
    /// reaches it over the control link.
    pub fn redis(&self, name: &str, builder: RedisBuilder) -> RedisServer {
        let s = self.site(name);
        builder
            .port(REDIS_PORT)
            .arg("repl-diskless-sync-delay", "0")
            .netns(&s.ns, s.ctl_ip)
            .start()
    }

    /// A `redis-server` in site `name` replicating the one in site `master`, linked up.
    pub fn replica(&self, name: &str, master: &str) -> RedisServer {
        let m = self.site(master).lab_ip;
        let builder = RedisBuilder::default().arg("replicaof", &format!("{m} {REDIS_PORT}"));
        let r = self.redis(name, builder);
        r.wait_link_up();
        r
    }

    /// One Sentinel in each of `sites` (on [`SENTINEL_PORT`], announcing the site's lab
    /// address), monitoring the master in site `master` with `replicas` (site names); returns
    /// once they can fail over.
    pub fn sentinels(
        &self,
        sites: &[&str],
        master: &str,
        replicas: &[&str],
        opts: GroupOptions,
    ) -> Group {
        let lab_addr = |n: &str| SocketAddr::from((self.site(n).lab_ip, REDIS_PORT));
        let places: Vec<Placement> = sites
            .iter()
            .map(|n| {
                let s = self.site(n);
                Placement {
                    netns: s.ns.clone(),
                    reach: s.ctl_ip,
                    announce: s.lab_ip,
                    port: SENTINEL_PORT,
                }
            })
            .collect();
        let replicas: Vec<SocketAddr> = replicas.iter().map(|n| lab_addr(n)).collect();
        Group::start_placed(lab_addr(master), &replicas, &places, opts)
    }

    /// The proxy in site `name` with configuration `toml`, its client and admin ports on every
    /// address of the site; returns once a write through it succeeds.
    pub fn proxy(&self, name: &str, toml: &str) -> Proxy {
        let s = self.site(name);
        Proxy::builder()
            .netns(&s.ns, s.ctl_ip)
            .config(toml)
            .admin()
            .start()
    }

    // ---- names ----

    /// `redis-<site>.lab.test.` and `sentinel-<site>.lab.test.` for every site, pointing at its
    /// lab address, on `dns`.
    pub fn publish(&self, dns: &DnsServer) {
        for s in &self.sites {
            dns.set_a(&redis_name(&s.name), &[s.lab_ip], 1);
            dns.set_a(&sentinel_name(&s.name), &[s.lab_ip], 1);
        }
    }

    /// Where site `name`'s processes reach `dns` (which must listen on every address).
    pub fn nameserver(&self, name: &str, dns: &DnsServer) -> SocketAddr {
        SocketAddr::from((self.site(name).root_ip, dns.addr().port()))
    }

    /// The lab address of site `name`'s `redis-server` as `ip:port` (how Sentinel names it).
    pub fn redis_addr(&self, name: &str) -> String {
        format!("{}:{REDIS_PORT}", self.site(name).lab_ip)
    }
}
