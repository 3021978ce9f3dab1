//! Processes under test: `redis-server` here, the proxy binary in `support::proxy` (re-exported
//! here). By default they run in the test's own network namespace on loopback;
//! [`RedisBuilder::netns`] and [`ProxyBuilder::netns`] run them inside a network namespace
//! instead (`ip netns exec NS ...`, bound to every address of that namespace) and reach them at
//! an address given by the caller (the network lab's control link, `support::netlab`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{Client, Frame};
pub use super::proxy::{Proxy, ProxyBuilder};

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it right away).
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux): a port the
/// kernel handed out for `bind(0)` may be taken by an outgoing connection's local end before
/// the server that is to listen on it binds. Each test process starts at its own offset, and
/// the threads of one process take turns.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 12_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 200) * 100;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN)
}

pub(super) fn wait_port(addr: SocketAddr, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Where a process runs: in a network namespace, reached from the test at `reach`.
#[derive(Debug, Clone)]
pub(super) struct InNetns {
    pub(super) ns: String,
    pub(super) reach: Ipv4Addr,
}

/// A command for `program`, run inside `netns` when given (`ip netns exec` execs the program
/// itself, so the child's pid is the program's and killing it kills the program).
pub(super) fn command(program: &str, netns: Option<&InNetns>) -> Command {
    match netns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &n.ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// The address the test reaches a process at: loopback, or the namespace's given address.
pub(super) fn reach_ip(netns: Option<&InNetns>) -> Ipv4Addr {
    netns.map_or(Ipv4Addr::LOCALHOST, |n| n.reach)
}

/// The address a process binds: loopback, or every address of its namespace (the lab link for
/// its peers, the control link for the test).
pub(super) fn bind_ip(netns: Option<&InNetns>) -> &'static str {
    if netns.is_some() {
        "0.0.0.0"
    } else {
        "127.0.0.1"
    }
}

/// Options for a `redis-server`.
#[derive(Debug, Default, Clone)]
pub struct RedisBuilder {
    args: Vec<String>,
    binary: Option<String>,
    port: Option<u16>,
    netns: Option<InNetns>,
}

impl RedisBuilder {
    /// Adds `--name value` (or any raw argument list).
    pub fn arg(mut self, name: &str, value: &str) -> Self {
        self.args.push(format!("--{name}"));
        self.args.extend(value.split(' ').map(str::to_string));
        self
    }

    /// Runs this server binary instead of `redis-server` from the PATH (a newer Redis or a
    /// `valkey-server`, which take the same command-line options).
    pub fn binary(mut self, path: &str) -> Self {
        self.binary = Some(path.to_string());
        self
    }

    /// Makes it a replica of `master`.
    pub fn replica_of(self, master: &RedisServer) -> Self {
        self.arg("replicaof", &format!("127.0.0.1 {}", master.port))
    }

    /// Requires this password.
    pub fn password(self, pw: &str) -> Self {
        self.arg("requirepass", pw).arg("masterauth", pw)
    }

    /// Uses this port (to restart a server on the same address).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Runs it inside network namespace `ns`, bound to all its addresses; the test reaches it
    /// at `reach`.
    pub fn netns(mut self, ns: &str, reach: Ipv4Addr) -> Self {
        self.netns = Some(InNetns {
            ns: ns.to_string(),
            reach,
        });
        self
    }

    /// Starts it and waits until it answers PING.
    pub fn start(self) -> RedisServer {
        let port = self.port.unwrap_or_else(free_port);
        let dir = tempfile::tempdir().expect("tempdir");
        let program = self
            .binary
            .clone()
            .unwrap_or_else(|| "redis-server".to_string());
        let child = command(&program, self.netns.as_ref())
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg(bind_ip(self.netns.as_ref()))
            // Bound beyond loopback without a password, Redis would refuse every client that
            // is not on loopback (protected mode), so the lab's peers and the test too.
            .arg("--protected-mode")
            .arg(if self.netns.is_some() { "no" } else { "yes" })
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} must be installed (scripts/install-deps, scripts/test): {e}")
            });
        let server = RedisServer {
            port,
            host: reach_ip(self.netns.as_ref()),
            child: Some(child),
            dir,
            builder: self,
        };
        assert!(
            wait_port(server.addr(), Duration::from_secs(10)),
            "{program} on {port} did not start: {}",
            server.log()
        );
        server
    }
}

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    /// Where the test reaches it (127.0.0.1, or an address in its network namespace).
    pub host: Ipv4Addr,
    child: Option<Child>,
    dir: tempfile::TempDir,
    builder: RedisBuilder,
}

impl RedisServer {
    /// A builder.
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    /// A plain server.
    pub fn start() -> Self {
        RedisBuilder::default().start()
    }

    /// `127.0.0.1:port` (or `host:port` in a network namespace).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.port))
    }

    /// `127.0.0.1:port` (or `host:port`) as text.
    pub fn addr_str(&self) -> String {
        self.addr().to_string()
    }

    /// A client connected straight to this server.
    pub fn client(&self) -> Client {
        Client::connect(self.addr())
    }

    /// Runs one command straight on the server.
    pub fn cmd(&self, args: &[&str]) -> Frame {
        self.client().cmd(args)
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it with SIGSTOP (it keeps its sockets but answers nothing).
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-STOP")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Resumes it after [`pause`](Self::pause).
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Starts a fresh server on the same port and options (a restart: new run_id).
    pub fn restart(&mut self) {
        self.kill();
        let fresh = self.builder.clone().port(self.port).start();
        *self = fresh;
    }

    /// Waits until `INFO replication` shows `master_link_status:up` (replicas).
    pub fn wait_link_up(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Frame::Bulk(b) = self.cmd(&["INFO", "replication"]) {
                if String::from_utf8_lossy(&b).contains("master_link_status:up") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("replica on {} never linked up", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
