//! Real `redis-sentinel` groups for failover tests. [`Group::start`] runs three (by default)
//! Sentinels on free loopback ports, each with its own temporary folder and configuration file
//! (Sentinel rewrites that file as it learns), monitoring one master under a name ("mymaster")
//! with quorum 2, and returns only once every Sentinel knows every replica and every other
//! Sentinel, so that a failover can really happen. Tests can force a failover, wait until a
//! majority names a new master, subscribe to Sentinel events to time a promotion, and kill,
//! pause or restart single Sentinels. [`replication`] builds the master and linked replicas.
//! Every Sentinel is killed when the group drops, also when a test fails (then its log is
//! printed). [`Group::start_placed`] runs the Sentinels elsewhere: each in a network namespace
//! of its own, announcing an address there (the network lab, `support::netlab`).
//! [`GroupOptions::binary`] runs them from another server binary, e.g. Valkey's
//! `valkey-server FILE --sentinel`.
//!
//! This file starts a group and waits until it is ready; what a test does with a running
//! group (queries, forced failovers, process control, subscriptions) is in `sentinel/control.rs`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::client::Frame;
use super::procs::{free_port, RedisBuilder, RedisServer};
pub use super::sentinel_events::{next_event, wait_event, Event};

mod control;

/// A master and `n_replicas` replicas of it, every replica linked up (plain servers).
pub fn replication(n_replicas: usize) -> (RedisServer, Vec<RedisServer>) {
    replication_with(RedisServer::builder(), n_replicas, None)
}

/// A master and `n_replicas` replicas, all started from `builder`, every replica linked up.
/// `password` is the one `builder` sets with [`RedisBuilder::password`], if any (it is
/// needed to watch the replication link). Every server gets `repl-diskless-sync-delay 0`
/// (the default 5 s would delay each full sync, also those after a failover).
pub fn replication_with(
    builder: RedisBuilder,
    n_replicas: usize,
    password: Option<&str>,
) -> (RedisServer, Vec<RedisServer>) {
    let builder = builder.arg("repl-diskless-sync-delay", "0");
    let master = builder.clone().start();
    let replicas: Vec<RedisServer> = (0..n_replicas)
        .map(|_| builder.clone().replica_of(&master).start())
        .collect();
    for r in &replicas {
        wait_linked(r, password);
    }
    (master, replicas)
}

/// Waits (up to 20 s) until a replica reports `master_link_status:up`.
fn wait_linked(replica: &RedisServer, password: Option<&str>) {
    let until = Instant::now() + Duration::from_secs(20);
    let mut last = Frame::Null;
    while Instant::now() < until {
        let mut c = replica.client();
        if let Some(pw) = password {
            // A refusal shows in INFO's reply, which the panic below prints.
            let _ = c.auth(&super::client::password(pw));
        }
        last = c.cmd(&["INFO", "replication"]);
        if matches!(&last, Frame::Bulk(b) if String::from_utf8_lossy(b).contains("master_link_status:up"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "replica on {} never linked up: {last:?}\n{}",
        replica.port,
        replica.log()
    );
}

/// Settings of a [`Group`]. Build with struct update syntax:
/// `GroupOptions { down_after_ms: 2000, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// Master name (`mymaster`).
    pub name: String,
    /// Number of Sentinels (3).
    pub count: usize,
    /// Quorum for objective down (2).
    pub quorum: usize,
    /// `down-after-milliseconds` (1000).
    pub down_after_ms: u64,
    /// `failover-timeout` (5000). A failed leader election waits twice this before retrying.
    pub failover_timeout_ms: u64,
    /// Password of the master and replicas (`sentinel auth-pass`).
    pub auth_pass: Option<String>,
    /// Password the Sentinels require from clients and from each other (`requirepass`,
    /// `sentinel sentinel-pass`).
    pub requirepass: Option<String>,
    /// The server binary that runs each Sentinel as `BINARY FILE --sentinel` (for example
    /// `valkey-server`); `None`: `redis-sentinel FILE` from the PATH.
    pub binary: Option<String>,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            name: "mymaster".into(),
            count: 3,
            quorum: 2,
            down_after_ms: 1000,
            failover_timeout_ms: 5000,
            auth_pass: None,
            requirepass: None,
            binary: None,
        }
    }
}

/// Where one Sentinel of [`Group::start_placed`] runs.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The network namespace it runs in (`ip netns exec`).
    pub netns: String,
    /// Where the test reaches it (it binds every address of its namespace).
    pub reach: Ipv4Addr,
    /// The address it announces to the other Sentinels (`sentinel announce-ip`).
    pub announce: Ipv4Addr,
    /// Its port.
    pub port: u16,
}

/// One `redis-sentinel` process.
#[derive(Debug)]
struct Sentinel {
    port: u16,
    reach: Ipv4Addr,
    netns: Option<String>,
    binary: Option<String>,
    child: Option<Child>,
    paused: AtomicBool,
    dir: tempfile::TempDir,
}

impl Sentinel {
    fn conf(&self) -> std::path::PathBuf {
        self.dir.path().join("sentinel.conf")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let program = self.binary.as_deref().unwrap_or("redis-sentinel");
        // `ip netns exec` execs the program, so the child's pid is the Sentinel's own.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        cmd.arg(self.conf());
        if self.binary.is_some() {
            // A server binary is a Sentinel only when told so (`redis-sentinel` is the same
            // binary under a name that implies it).
            cmd.arg("--sentinel");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} must be installed (scripts/install-deps): {e}"));
        self.child = Some(child);
        self.paused.store(false, Ordering::SeqCst);
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    fn kill(&mut self) {
        self.signal("CONT");
        self.paused.store(false, Ordering::SeqCst);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Neither killed nor paused.
    fn live(&self) -> bool {
        self.child.is_some() && !self.paused.load(Ordering::SeqCst)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A group of Sentinels monitoring one master; every process is killed on drop.
#[derive(Debug)]
pub struct Group {
    sentinels: Vec<Sentinel>,
    opts: GroupOptions,
}

impl Group {
    /// Starts `opts.count` Sentinels monitoring `master` and waits (up to 30 s) until each
    /// sees the master up, every one of `replicas` as a healthy replica and every other
    /// Sentinel. The replicas should already be linked ([`replication`] does that).
    pub fn start(master: &RedisServer, replicas: &[&RedisServer], opts: GroupOptions) -> Self {
        let replicas: Vec<SocketAddr> = replicas.iter().map(|r| r.addr()).collect();
        let places = vec![None; opts.count];
        Self::start_with(master.addr(), &replicas, places, opts)
    }

    /// Starts one Sentinel per placement (`opts.count` is ignored) monitoring the master at
    /// `master` (the address the Sentinels reach it at), and waits like [`start`](Self::start)
    /// until each sees the master, every one of `replicas` and every other Sentinel.
    pub fn start_placed(
        master: SocketAddr,
        replicas: &[SocketAddr],
        places: &[Placement],
        opts: GroupOptions,
    ) -> Self {
        let places = places.iter().cloned().map(Some).collect();
        Self::start_with(master, replicas, places, opts)
    }

    fn start_with(
        master: SocketAddr,
        replicas: &[SocketAddr],
        places: Vec<Option<Placement>>,
        mut opts: GroupOptions,
    ) -> Self {
        opts.count = places.len();
        let mut sentinels = Vec::new();
        for place in places {
            let port = place.as_ref().map_or_else(free_port, |p| p.port);
            let dir = tempfile::tempdir().expect("tempdir");
            let bind = if place.is_some() {
                "0.0.0.0"
            } else {
                "127.0.0.1"
            };
            let mut conf = format!(
                "port {port}\nbind {bind}\ndaemonize no\ndir \"{dir}\"\n\
                 logfile \"{dir}/sentinel.log\"\n\
                 sentinel monitor {name} {mip} {mport} {quorum}\n\
                 sentinel down-after-milliseconds {name} {down}\n\
                 sentinel failover-timeout {name} {fot}\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display(),
                name = opts.name,
                mip = master.ip(),
                mport = master.port(),
                quorum = opts.quorum,
                down = opts.down_after_ms,
                fot = opts.failover_timeout_ms,
            );
            if let Some(p) = &place {
                // Bound to every address, a Sentinel would otherwise announce whichever one
                // its peers happened to see.
                conf.push_str(&format!(
                    "sentinel announce-ip {}\nprotected-mode no\n",
                    p.announce
                ));
            }
            if let Some(pw) = &opts.auth_pass {
                conf.push_str(&format!("sentinel auth-pass {} {pw}\n", opts.name));
            }
            if let Some(pw) = &opts.requirepass {
                conf.push_str(&format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n"));
            }
            std::fs::write(dir.path().join("sentinel.conf"), conf).expect("write sentinel.conf");
            let mut s = Sentinel {
                port,
                reach: place.as_ref().map_or(Ipv4Addr::LOCALHOST, |p| p.reach),
                netns: place.map(|p| p.netns),
                binary: opts.binary.clone(),
                child: None,
                paused: AtomicBool::new(false),
                dir,
            };
            s.spawn();
            sentinels.push(s);
        }
        let group = Group { sentinels, opts };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let pending: Vec<String> = (0..group.sentinels.len())
                .filter_map(|i| group.not_ready(i, master, replicas))
                .collect();
            if pending.is_empty() {
                return group;
            }
            if Instant::now() > until {
                panic!(
                    "Sentinel group never became ready: {}\n{}",
                    pending.join("; "),
                    group.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Why Sentinel `i` cannot take part in a failover yet, or `None` when it can.
    fn not_ready(&self, i: usize, master: SocketAddr, replicas: &[SocketAddr]) -> Option<String> {
        let m = match self.master_fields(i) {
            Some(m) => m,
            None => return Some(format!("sentinel {i} does not answer")),
        };
        let get = |k: &str| m.get(k).map(String::as_str).unwrap_or("");
        if get("ip") != master.ip().to_string()
            || get("port") != master.port().to_string()
            || get("flags") != "master"
        {
            return Some(format!(
                "sentinel {i} sees master {}:{} flags {}",
                get("ip"),
                get("port"),
                get("flags")
            ));
        }
        let others = (self.sentinels.len() - 1).to_string();
        if get("num-slaves") != replicas.len().to_string() || get("num-other-sentinels") != others {
            return Some(format!(
                "sentinel {i} sees {} replicas and {} other sentinels",
                get("num-slaves"),
                get("num-other-sentinels")
            ));
        }
        let listed = match self.query(i, &["SENTINEL", "REPLICAS", &self.opts.name]) {
            Ok(l) => l,
            Err(e) => return Some(format!("sentinel {i}: SENTINEL REPLICAS failed: {e}")),
        };
        let Frame::Array(items) = listed else {
            return Some(format!("sentinel {i}: SENTINEL REPLICAS gave {listed:?}"));
        };
        for addr in replicas {
            let healthy = items.iter().map(fields).any(|r| {
                r.get("ip").map(String::as_str) == Some(&addr.ip().to_string())
                    && r.get("port").map(String::as_str) == Some(&addr.port().to_string())
                    && r.get("flags").map(String::as_str) == Some("slave")
                    && r.get("info-refresh")
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|ms| ms < 10_000)
            });
            if !healthy {
                return Some(format!(
                    "sentinel {i} does not see replica {addr} healthy yet"
                ));
            }
        }
        None
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A flat `[k, v, k, v, ...]` reply as a map.
fn fields(reply: &Frame) -> HashMap<String, String> {
    let Frame::Array(items) = reply else {
        return HashMap::new();
    };
    items
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v @ (Frame::Bulk(_) | Frame::Simple(_))] => Some((k.text(), v.text())),
            _ => None,
        })
        .collect()
}
