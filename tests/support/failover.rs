//! Shared pieces of the Sentinel failover tests: a replicated set with its Sentinel group, a
//! proxy configured to follow that group, a watcher that timestamps `+switch-master` on every
//! Sentinel, a MONITOR recorder that keeps reconnecting (Sentinel kills normal clients, MONITOR
//! included, on the nodes it reconfigures; its lines are read by the load harness's parser,
//! [`super::harness::monitor_line`]), and small polling helpers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{Client, Frame};
use super::harness::monitor_line::parse_line;
use super::procs::{Proxy, ProxyBuilder, RedisBuilder, RedisServer};
use super::sentinel::{next_event, Event, Group, GroupOptions};

/// A master, two linked replicas and three Sentinels watching them.
#[derive(Debug)]
pub struct Cluster {
    /// The master at the start.
    pub master: RedisServer,
    /// Its replicas.
    pub replicas: Vec<RedisServer>,
    /// The Sentinels (declared last: dropped after the servers' handles are used).
    pub group: Group,
}

impl Cluster {
    /// Starts it and waits until the Sentinels can fail over.
    pub fn start() -> Self {
        Self::start_with(RedisServer::builder(), GroupOptions::default())
    }

    /// Like [`start`](Self::start), the servers started from `builder` (another server binary,
    /// say) and the Sentinels with `opts`.
    pub fn start_with(builder: RedisBuilder, opts: GroupOptions) -> Self {
        let (master, replicas) = super::sentinel::replication_with(builder, 2, None);
        let group = Group::start(&master, &[&replicas[0], &replicas[1]], opts);
        Self {
            master,
            replicas,
            group,
        }
    }

    /// Every server, master first.
    pub fn servers(&self) -> Vec<&RedisServer> {
        std::iter::once(&self.master)
            .chain(self.replicas.iter())
            .collect()
    }

    /// The server listening on `addr` (`127.0.0.1:port`).
    pub fn server(&self, addr: &str) -> &RedisServer {
        self.servers()
            .into_iter()
            .find(|s| s.addr_str() == addr)
            .unwrap_or_else(|| panic!("no server at {addr}"))
    }

    /// Sentinel addresses as a TOML array body (`"a", "b", "c"`).
    pub fn sentinels_toml(&self) -> String {
        toml_list(&self.group.addrs())
    }
}

/// `"a", "b"` for a TOML array.
pub fn toml_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A proxy with the Sentinel authority over `group`, probing every 200 ms. `nodes` are the
/// configured node addresses (empty: every node is learned from the Sentinels), `failover`
/// extra lines for the `[failover]` table.
pub fn sentinel_proxy(group: &Group, nodes: &[String], failover: &str) -> Proxy {
    sentinel_proxy_builder(group, nodes, failover).start()
}

/// The builder [`sentinel_proxy`] starts (to add flags first).
pub fn sentinel_proxy_builder(group: &Group, nodes: &[String], failover: &str) -> ProxyBuilder {
    Proxy::builder().config(&format!(
        r#"
[failover]
authority = "sentinel"
master_name = "{name}"
{failover}

[health]
interval = "200ms"
timeout = "500ms"

[[sites]]
name = "main"
nodes = [{nodes}]
sentinels = [{sentinels}]
"#,
        name = group.name(),
        nodes = toml_list(nodes),
        sentinels = toml_list(&group.addrs()),
    ))
}

/// Polls `f` every 20 ms until it holds; panics with `what` after `deadline` (a proxy in scope
/// prints its log as the panic drops it). Returns when it first held.
pub fn wait_for(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) -> Instant {
    let until = Instant::now() + deadline;
    loop {
        if f() {
            return Instant::now();
        }
        if Instant::now() > until {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one command on a fresh connection with a 2 s deadline; `None` when the server does not
/// answer (paused, killed, or Sentinel killed the connection).
pub fn try_cmd(server: &RedisServer, args: &[&str]) -> Option<Frame> {
    let mut c = Client::try_connect(server.addr()).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2)));
    c.send(args);
    c.try_read().ok()
}

/// The role a server reports (`master`, `slave`), if it answers.
pub fn role(server: &RedisServer) -> Option<String> {
    match try_cmd(server, &["ROLE"])? {
        Frame::Array(items) => Some(items.first()?.text()),
        _ => None,
    }
}

/// Timestamps every `+switch-master` any Sentinel of a group publishes (one subscriber thread
/// per Sentinel), so a test knows when the first Sentinel switched.
#[derive(Debug)]
pub struct Switches {
    seen: Arc<Mutex<Vec<(Instant, Event)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Switches {
    /// Subscribes on every Sentinel of `group` (returns once every subscription is confirmed).
    pub fn watch(group: &Group) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..group.len())
            .map(|i| {
                let mut c = group.subscribe_on(i, &["+switch-master"]);
                let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(ev) = next_event(&mut c, Duration::from_millis(200)) {
                            seen.lock().unwrap().push((Instant::now(), ev));
                        }
                    }
                })
            })
            .collect();
        Self {
            seen,
            stop,
            threads,
        }
    }

    /// The first `+switch-master` (when it arrived, and the new master's `ip:port`), waiting up
    /// to `within`.
    pub fn first(&self, within: Duration) -> Option<(Instant, String)> {
        let until = Instant::now() + within;
        loop {
            let first = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(t, e)| e.switch_master().map(|(_, _, new)| (*t, new)))
                .min_by_key(|(t, _)| *t);
            if first.is_some() || Instant::now() > until {
                return first;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Switches {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One command a MONITOR connection showed.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When the line was read.
    pub at: Instant,
    /// The issuing client's address as the server saw it (`127.0.0.1:54321`).
    pub client: String,
    /// The command's arguments, unescaped (as text: the tests' keys and values are).
    pub args: Vec<String>,
}

impl Seen {
    /// The command in a MONITOR line (`+1700000000.123456 [0 127.0.0.1:54321] "RPUSH" "k"
    /// "1"`), stamped now; `None` for anything else.
    fn parse(line: &[u8]) -> Option<Self> {
        let line = parse_line(line)?;
        Some(Self {
            at: Instant::now(),
            client: line.client,
            args: line
                .args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        })
    }
}

/// Records every command a server executes, from a MONITOR connection opened straight to it.
/// When the connection is closed (Sentinel kills normal clients, MONITOR ones included, when
/// it reconfigures a node) it opens a new one at once.
#[derive(Debug)]
pub struct Monitor {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A MONITOR connection: the stream and the bytes read but not yet split into lines.
struct MonitorConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn open_monitor(addr: SocketAddr) -> Option<MonitorConn> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    stream.write_all(b"*1\r\n$7\r\nMONITOR\r\n").ok()?;
    let mut conn = MonitorConn {
        stream,
        buf: Vec::new(),
    };
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Some(line) = conn.next_line().ok()? {
            return (line == b"+OK").then_some(conn);
        }
    }
    None
}

impl MonitorConn {
    /// The next complete line (without CRLF); `Ok(None)` when none arrived within the read
    /// timeout; an error when the connection is gone.
    fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                return Ok(Some(line));
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Monitor {
    /// Starts monitoring `server` (returns once MONITOR is confirmed).
    pub fn start(server: &RedisServer) -> Self {
        let addr = server.addr();
        let first = open_monitor(addr).expect("MONITOR on the server");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut conn = Some(first);
            while !st.load(Ordering::Relaxed) {
                let Some(c) = conn.as_mut() else {
                    conn = open_monitor(addr);
                    if conn.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    continue;
                };
                match c.next_line() {
                    Ok(Some(line)) => {
                        if let Some(seen) = Seen::parse(&line) {
                            s.lock().unwrap().push(seen);
                        }
                    }
                    Ok(None) => {}
                    Err(_) => conn = None,
                }
            }
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The `RPUSH <key> <n>` commands seen on keys starting with `prefix`, issued by clients
    /// (a replication link, whose address is another node's listening port, is left out), as
    /// `(key, n)`.
    pub fn client_pushes(&self, prefix: &str, node_ports: &[u16]) -> Vec<(String, u64)> {
        self.seen()
            .into_iter()
            .filter(|s| {
                let port = s
                    .client
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok());
                !port.is_some_and(|p| node_ports.contains(&p))
            })
            .filter_map(|s| match s.args.as_slice() {
                [cmd, key, n] if cmd.eq_ignore_ascii_case("RPUSH") && key.starts_with(prefix) => {
                    Some((key.clone(), n.parse().ok()?))
                }
                _ => None,
            })
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the proxy's log has a line containing every one of `parts`; returns that line.
pub fn wait_log_line(proxy: &Proxy, parts: &[&str], deadline: Duration) -> String {
    let mut found = String::new();
    wait_for(
        &format!("a proxy log line with {parts:?}"),
        deadline,
        || {
            let log = strip_ansi(&proxy.log());
            match log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                Some(l) => {
                    found = l.to_string();
                    true
                }
                None => false,
            }
        },
    );
    found
}

/// `text` without ANSI colour sequences (the proxy colours its log fields).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls writes through the proxy (a fresh client, `SET <key> <i>`) until one is acknowledged
/// and found on `server` itself; returns when that happened. Errors on the way are expected
/// (the proxy may be holding or refusing while the master changes).
pub fn wait_proxy_writes_to(
    proxy: &Proxy,
    server: &RedisServer,
    key: &str,
    deadline: Duration,
) -> Instant {
    let mut c = proxy.client();
    c.set_read_timeout(Some(Duration::from_secs(20)));
    let mut i = 0u64;
    wait_for(
        &format!("a write through the proxy landing on {}", server.addr()),
        deadline,
        || {
            i += 1;
            let v = i.to_string();
            c.cmd(&["SET", key, &v]) == Frame::ok()
                && try_cmd(server, &["GET", key]) == Some(Frame::bulk(&v))
        },
    )
}
