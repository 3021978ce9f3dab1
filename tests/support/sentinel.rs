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

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::client::{auth_reply, encode_strs, password, read_frame, Client, Frame};
use super::procs::{free_port, RedisBuilder, RedisServer};
pub use super::sentinel_events::{next_event, wait_event, Event};

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

/// How long a query to one Sentinel may take (a paused one never answers).
const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

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

    /// Master name.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// Number of Sentinels.
    pub fn len(&self) -> usize {
        self.sentinels.len()
    }

    /// Whether the group is empty (never, but clippy wants the pair).
    pub fn is_empty(&self) -> bool {
        self.sentinels.is_empty()
    }

    /// How many Sentinels make a majority of the group.
    pub fn majority(&self) -> usize {
        self.sentinels.len() / 2 + 1
    }

    /// `127.0.0.1:port` (or where the test reaches a placed one) of every Sentinel (killed
    /// ones included), in index order.
    pub fn addrs(&self) -> Vec<String> {
        (0..self.sentinels.len())
            .map(|i| self.addr(i).to_string())
            .collect()
    }

    /// Address of Sentinel `i` (where the test reaches it).
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.sentinels[i].reach, self.sentinels[i].port))
    }

    /// Runs one command on Sentinel `i` (authenticating when the group has a password),
    /// waiting at most one second for the reply.
    pub fn query(&self, i: usize, args: &[&str]) -> std::io::Result<Frame> {
        let mut stream = TcpStream::connect_timeout(&self.addr(i), QUERY_TIMEOUT)?;
        stream.set_read_timeout(Some(QUERY_TIMEOUT))?;
        stream.set_write_timeout(Some(QUERY_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        if let Some(pw) = &self.opts.requirepass {
            stream.write_all(&encode_strs(&password(pw).command()))?;
            auth_reply(read_frame(&mut reader)?)?;
        }
        stream.write_all(&encode_strs(args))?;
        read_frame(&mut reader)
    }

    /// `SENTINEL MASTER <name>` on Sentinel `i` as field → value.
    pub fn master_fields(&self, i: usize) -> Option<HashMap<String, String>> {
        if !self.sentinels[i].live() {
            return None;
        }
        let reply = self
            .query(i, &["SENTINEL", "MASTER", &self.opts.name])
            .ok()?;
        matches!(reply, Frame::Array(_)).then(|| fields(&reply))
    }

    /// The master Sentinel `i` names (`SENTINEL GET-MASTER-ADDR-BY-NAME`) as `ip:port`.
    pub fn master_addr_on(&self, i: usize) -> Option<String> {
        if !self.sentinels[i].live() {
            return None;
        }
        match self
            .query(i, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.opts.name])
            .ok()?
        {
            Frame::Array(a) if a.len() == 2 => Some(format!("{}:{}", a[0].text(), a[1].text())),
            _ => None,
        }
    }

    /// The master the first answering Sentinel (neither killed nor paused) names.
    pub fn master_addr(&self) -> Option<String> {
        (0..self.sentinels.len()).find_map(|i| self.master_addr_on(i))
    }

    /// Index of the first Sentinel neither killed nor paused (the one [`failover`](Self::failover)
    /// and [`subscribe`](Self::subscribe) use).
    pub fn first_live(&self) -> usize {
        self.sentinels
            .iter()
            .position(Sentinel::live)
            .expect("no live Sentinel in the group")
    }

    /// Forces a failover (`SENTINEL FAILOVER <name>`) on the first live Sentinel, retrying
    /// `INPROG` and `NOGOODSLAVE` for up to 15 s; returns the index of that Sentinel, which
    /// leads the failover (its events include `+try-failover`, `+selected-slave`, ...).
    pub fn failover(&self) -> usize {
        let i = self.first_live();
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let reply = self.query(i, &["SENTINEL", "FAILOVER", &self.opts.name]);
            match &reply {
                Ok(f) if *f == Frame::ok() => return i,
                Ok(Frame::Error(e))
                    if (e.contains("INPROG") || e.contains("NOGOODSLAVE"))
                        && Instant::now() < until =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                _ => panic!(
                    "SENTINEL FAILOVER on sentinel {i}: {reply:?}\n{}",
                    self.logs()
                ),
            }
        }
    }

    /// Waits until a majority of the group (killed and paused Sentinels count as not
    /// agreeing) names `addr` (`ip:port`) as the master.
    pub fn wait_master(&self, addr: &str, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            let agree = (0..self.sentinels.len())
                .filter(|&i| self.master_addr_on(i).as_deref() == Some(addr))
                .count();
            if agree >= self.majority() {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills Sentinel `i` (SIGKILL). Its port then refuses connections.
    pub fn kill(&mut self, i: usize) {
        self.sentinels[i].kill();
    }

    /// Kills every Sentinel.
    pub fn kill_all(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
    }

    /// Starts Sentinel `i` again from its (rewritten) configuration file, on the same port,
    /// and waits until it answers PING. It remembers what it learned, like a real restart.
    pub fn restart(&mut self, i: usize) {
        self.sentinels[i].kill();
        self.sentinels[i].spawn();
        let until = Instant::now() + Duration::from_secs(10);
        while !matches!(self.query(i, &["PING"]), Ok(Frame::Simple(ref s)) if s == "PONG") {
            assert!(
                Instant::now() < until,
                "sentinel {i} did not restart: {}",
                self.sentinels[i].log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Sentinel `i` with SIGSTOP: it keeps its sockets but answers nothing. A Sentinel
    /// paused for more than 2 s enters TILT mode for 30 s after [`resume`](Self::resume).
    pub fn pause(&self, i: usize) {
        self.sentinels[i].signal("STOP");
        self.sentinels[i].paused.store(true, Ordering::SeqCst);
    }

    /// Resumes Sentinel `i` after [`pause`](Self::pause).
    pub fn resume(&self, i: usize) {
        self.sentinels[i].signal("CONT");
        self.sentinels[i].paused.store(false, Ordering::SeqCst);
    }

    /// A client on the first live Sentinel subscribed to `+switch-master` (published by every
    /// Sentinel once it switches). Read it with [`next_event`] or [`wait_event`].
    pub fn subscribe(&self) -> Client {
        self.subscribe_on(self.first_live(), &["+switch-master"])
    }

    /// A client on Sentinel `i` subscribed (PSUBSCRIBE) to `patterns`, for example `["*"]`
    /// for every event. Returns once the subscriptions are confirmed.
    pub fn subscribe_on(&self, i: usize, patterns: &[&str]) -> Client {
        let mut c = Client::connect(self.addr(i));
        c.set_read_timeout(Some(Duration::from_secs(5)));
        if let Some(pw) = &self.opts.requirepass {
            c.auth(&password(pw))
                .unwrap_or_else(|e| panic!("AUTH on sentinel {i}: {e}"));
        }
        let mut args = vec!["PSUBSCRIBE"];
        args.extend_from_slice(patterns);
        c.send(&args);
        for p in patterns {
            let confirm = c.read();
            assert_eq!(confirm.items()[0], Frame::bulk("psubscribe"), "{confirm:?}");
            assert_eq!(confirm.items()[1], Frame::bulk(p), "{confirm:?}");
        }
        c
    }

    /// Log of Sentinel `i`.
    pub fn log(&self, i: usize) -> String {
        self.sentinels[i].log()
    }

    /// Every Sentinel's log, labelled (for failure messages).
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- sentinel {i} (port {}) ---\n{}", s.port, s.log()))
            .collect::<Vec<_>>()
            .join("\n")
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
