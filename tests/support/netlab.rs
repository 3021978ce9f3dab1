//! A multi-site network lab for partition tests, built with iproute2 only. Each site is a
//! network namespace with one address on the lab subnet (10.213.0.0/24), plugged into a Linux
//! bridge that lives in a "switch" namespace of its own, so the test's namespace has no
//! address or route on the lab subnet and no namespace of the lab has a default route: no
//! packet can leave the lab. Each site also has a control link, a point-to-point /30 from the
//! test's namespace (10.214.K.4i+1 on the test's side, .4i+2 in the site): the test reaches the
//! site's processes over it (writers, checks, MONITOR) and they reach the test's DNS server,
//! also while the site's lab link is cut; no site has a route to another site's control link.
//!
//! The lab owns the namespaces: their names carry the test process's pid (`rfp<pid>-<n>-`),
//! every process in them is killed and every namespace removed when the lab drops (also when
//! the test panics), and a later run sweeps what an interrupted one left. It starts processes
//! in a site (`redis-server`, `redis-sentinel`, the proxy) through the ordinary process
//! support, and makes partitions: a site cut off (its bridge port down: a black hole both
//! ways), a site's outgoing lab traffic dropped (blackhole routes), two sites cut from each
//! other only. Where namespaces cannot be made, [`Lab::try_start`] returns `None` and the test
//! records itself as not run ([`not_run`]), which `scripts/test` reports.
//!
//! This file builds, sweeps and removes the namespaces and bounds the test's time; the
//! processes of a site and their names are in `netlab/processes.rs`, the partitions in
//! `netlab/partition.rs`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod partition;
mod processes;

/// The lab subnet; its addresses exist only inside the lab's namespaces.
pub const LAB_NET: &str = "10.213.0.0/24";
/// Port of every `redis-server` in the lab (each site has its own port space).
pub const REDIS_PORT: u16 = 6379;
/// Port of every Sentinel in the lab.
pub const SENTINEL_PORT: u16 = 26379;
/// The DNS zone the lab's names live in.
pub const ZONE: &str = "lab.test.";

/// Prefix of every namespace a lab makes (the sweep looks for it).
const PREFIX: &str = "rfp";

/// One site: a namespace with a lab address and a control link.
#[derive(Debug, Clone)]
pub struct Site {
    /// Its short name (`a`, `b`, ...).
    pub name: String,
    /// Its namespace.
    pub ns: String,
    /// Its address on the lab subnet.
    pub lab_ip: Ipv4Addr,
    /// Its end of the control link: the test reaches the site's processes here.
    pub ctl_ip: Ipv4Addr,
    /// The test's end of the control link: the site's processes reach the test here.
    pub root_ip: Ipv4Addr,
    /// Its port on the bridge, in the switch namespace.
    port: String,
    /// Its end of the control link in the test's namespace.
    root_if: String,
}

/// The lab; every namespace and every process in it goes when it drops.
#[derive(Debug)]
pub struct Lab {
    switch: String,
    sites: Vec<Site>,
    /// Set when the watchdog fired (the lab's processes were killed).
    expired: Arc<AtomicBool>,
    /// Set when the lab drops, to stop the watchdog.
    done: Arc<AtomicBool>,
}

/// Runs `ip` with `args`; its stderr as the error.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Like [`ip`], panicking on failure (the lab is half built: a bug, not a missing feature).
fn must(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("network lab: {e}"))
}

/// Kills every process in namespace `ns` and removes it.
fn remove_ns(ns: &str) {
    kill_in(ns);
    let _ = ip(&["netns", "del", ns]);
}

/// Kills every process in namespace `ns`, leaving it in place.
fn kill_in(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

/// Removes lab namespaces whose test process (the pid in the name) is gone: left by a run that
/// was killed before its labs dropped.
fn sweep_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("network lab: removing stale namespace {name}");
            remove_ns(name);
        }
    }
    // Control links' ends in the test's namespace (`rf<pid in hex>-...`), whose namespace may
    // linger unnamed for a while after it was removed.
    let links = ip(&["-o", "link", "show"]).unwrap_or_default();
    for name in links
        .lines()
        .filter_map(|l| l.split(": ").nth(1)?.split('@').next())
    {
        let Some(pid) = name
            .strip_prefix("rf")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| u32::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["link", "del", name]);
        }
    }
}

/// Labs of this process are built one at a time: the control subnets are chosen by looking at
/// the addresses in use, and two labs choosing at once would pick the same.
static BUILDING: Mutex<()> = Mutex::new(());

/// A third octet for the control links (10.214.K.0/24) that no address of the test's
/// namespace uses yet.
fn free_block(n: u32) -> u8 {
    let used = ip(&["-4", "-o", "addr", "show"]).unwrap_or_default();
    let start = (std::process::id().wrapping_mul(7) + n * 13) % 256;
    (0..256u32)
        .map(|i| ((start + i) % 256) as u8)
        .find(|k| !used.contains(&format!(" 10.214.{k}.")))
        .expect("a free control block in 10.214.0.0/16")
}

/// The MAC address of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> String {
    let out = must(&["-n", ns, "-o", "link", "show", dev]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {out}"))
        .to_string()
}

impl Lab {
    /// Builds a lab with one site per name (at most 60), or `None` where network namespaces
    /// cannot be made (not root, no `ip netns`).
    pub fn try_start(names: &[&str]) -> Option<Lab> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        assert!(!names.is_empty() && names.len() <= 60, "1 to 60 sites");
        let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        sweep_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("{PREFIX}{pid}-{n}-");
        let switch = format!("{prefix}sw");
        if let Err(e) = ip(&["netns", "add", &switch]) {
            eprintln!("network lab unavailable: {e}");
            return None;
        }
        // From here on the lab drops (and cleans up) even if building fails half way.
        let mut lab = Lab {
            switch: switch.clone(),
            sites: Vec::new(),
            expired: Arc::new(AtomicBool::new(false)),
            done: Arc::new(AtomicBool::new(false)),
        };
        must(&["-n", &switch, "link", "set", "lo", "up"]);
        must(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        must(&["-n", &switch, "link", "set", "br0", "up"]);
        let block = free_block(n);
        for (i, name) in names.iter().enumerate() {
            let i = i as u8;
            let ns = format!("{prefix}{name}");
            // The control link's end in the test's namespace, named uniquely there (at most
            // 15 characters: "rf" + pid in hex + lab number + site index).
            let root_if = format!("rf{pid:x}-{n:x}-{i:x}");
            assert!(root_if.len() <= 15, "interface name {root_if} too long");
            let site = Site {
                name: name.to_string(),
                ns: ns.clone(),
                lab_ip: Ipv4Addr::new(10, 213, 0, i + 1),
                ctl_ip: Ipv4Addr::new(10, 214, block, 4 * i + 2),
                root_ip: Ipv4Addr::new(10, 214, block, 4 * i + 1),
                port: format!("p{i}"),
                root_if: root_if.clone(),
            };
            must(&["netns", "add", &ns]);
            lab.sites.push(site.clone());
            must(&["-n", &ns, "link", "set", "lo", "up"]);
            // The lab link: a veth from the site to a bridge port in the switch namespace.
            must(&[
                "-n", &switch, "link", "add", &site.port, "type", "veth", "peer", "name", "lab0",
                "netns", &ns,
            ]);
            must(&["-n", &switch, "link", "set", &site.port, "master", "br0"]);
            must(&["-n", &switch, "link", "set", &site.port, "up"]);
            must(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", site.lab_ip),
                "dev",
                "lab0",
            ]);
            must(&["-n", &ns, "link", "set", "lab0", "up"]);
            // The control link: a veth from the test's namespace.
            must(&[
                "link", "add", &root_if, "type", "veth", "peer", "name", "ctl0", "netns", &ns,
            ]);
            must(&[
                "addr",
                "add",
                &format!("{}/30", site.root_ip),
                "dev",
                &root_if,
            ]);
            must(&["link", "set", &root_if, "up"]);
            must(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/30", site.ctl_ip),
                "dev",
                "ctl0",
            ]);
            must(&["-n", &ns, "link", "set", "ctl0", "up"]);
        }
        // Fixed neighbour entries: a cut link then drops packets silently (a black hole)
        // instead of failing address resolution, which a client would see as "no route".
        let macs: Vec<String> = lab.sites.iter().map(|s| mac_of(&s.ns, "lab0")).collect();
        for s in &lab.sites {
            for (t, mac) in lab.sites.iter().zip(&macs) {
                if s.ns != t.ns {
                    let peer = t.lab_ip.to_string();
                    must(&[
                        "-n",
                        &s.ns,
                        "neigh",
                        "replace",
                        &peer,
                        "lladdr",
                        mac,
                        "dev",
                        "lab0",
                        "nud",
                        "permanent",
                    ]);
                }
            }
        }
        Some(lab)
    }

    /// The site named `name`.
    pub fn site(&self, name: &str) -> &Site {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no site {name} in the lab"))
    }

    /// Every site.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// Runs `args` inside site `name` (`ip netns exec`), waiting for it.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.site(name).ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    /// Whether a TCP connection from site `from` to `to` opens within 2 s (a shell in the
    /// site; anything but an accepted connection is false).
    pub fn tcp_reaches(&self, from: &str, to: SocketAddr) -> bool {
        let script = format!("exec 3<>/dev/tcp/{}/{}", to.ip(), to.port());
        self.exec(from, &["timeout", "2", "bash", "-c", &script])
            .status
            .success()
    }

    // ---- deadline ----

    /// Bounds the test: once `limit` has passed, every process in the lab is killed (so
    /// whatever the test waits on fails instead of hanging) and [`check`](Self::check) panics.
    pub fn watchdog(&self, limit: Duration) {
        let until = Instant::now() + limit;
        let (expired, done) = (Arc::clone(&self.expired), Arc::clone(&self.done));
        let namespaces: Vec<String> = self.namespaces();
        std::thread::spawn(move || {
            while Instant::now() < until {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("network lab: over the test's deadline of {limit:?}; killing its processes");
            expired.store(true, Ordering::Relaxed);
            for ns in &namespaces {
                kill_in(ns);
            }
        });
    }

    /// Panics when the watchdog fired.
    pub fn check(&self) {
        assert!(
            !self.expired.load(Ordering::Relaxed),
            "the lab test ran over its deadline"
        );
    }

    fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self.sites.iter().map(|s| s.ns.clone()).collect();
        all.push(self.switch.clone());
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        // A removed namespace lives on (without a name) while the kernel still holds its
        // closing connections, up to a minute or two, and with it the ends of its veth pairs:
        // the control link's end in the test's namespace is deleted at once, so the test's
        // namespace is clean when the lab drops.
        for ns in self.namespaces() {
            remove_ns(&ns);
        }
        for s in &self.sites {
            let _ = ip(&["link", "del", &s.root_if]);
        }
    }
}

/// `redis-<site>.lab.test.`
pub fn redis_name(site: &str) -> String {
    format!("redis-{site}.{ZONE}")
}

/// `sentinel-<site>.lab.test.`
pub fn sentinel_name(site: &str) -> String {
    format!("sentinel-{site}.{ZONE}")
}

/// Records that lab test `test` did not run (no network namespaces here): a marker file
/// `target/not-run/<test>` that `scripts/test` reports after the run, and a line now.
pub fn not_run(test: &str) {
    super::not_run(test, "no network namespaces");
}
