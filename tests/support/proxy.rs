//! The proxy binary under test: started with arguments or a configuration file on a free
//! loopback port (or inside a network namespace, [`ProxyBuilder::netns`]), its log kept in a
//! temporary folder, its admin endpoint queried, killed on drop (its log printed when a test
//! fails).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{Client, Frame};
use super::procs::{bind_ip, command, free_port, reach_ip, wait_port, InNetns, RedisServer};

/// Options for the proxy binary.
#[derive(Debug, Default, Clone)]
pub struct ProxyBuilder {
    args: Vec<String>,
    config: Option<String>,
    env: Vec<(String, String)>,
    /// Port of `--admin`, when asked for.
    admin: Option<u16>,
    /// Port of `--tls-listen`, when asked for.
    tls_listen: Option<u16>,
    port: Option<u16>,
    netns: Option<InNetns>,
}

impl ProxyBuilder {
    /// Adds raw arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets `--nodes`.
    pub fn nodes(self, nodes: &[&RedisServer]) -> Self {
        let list: Vec<String> = nodes.iter().map(|n| n.addr_str()).collect();
        self.args(&["--nodes", &list.join(",")])
    }

    /// Uses a configuration file with this content (written to a temporary file).
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }

    /// Sets an environment variable for the proxy.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Serves the admin endpoint on a free port (`--admin`).
    pub fn admin(mut self) -> Self {
        self.admin = Some(free_port());
        self
    }

    /// Runs it inside network namespace `ns`, listening (and serving admin) on all its
    /// addresses; the test reaches it at `reach`.
    pub fn netns(mut self, ns: &str, reach: Ipv4Addr) -> Self {
        self.netns = Some(InNetns {
            ns: ns.to_string(),
            reach,
        });
        self
    }

    /// Serves TLS on a free port of its own (`--tls-listen`); `--listen` stays plaintext.
    /// Needs `--tls-cert` and `--tls-key` too.
    pub fn tls_listen(mut self) -> Self {
        let port = free_port();
        self.tls_listen = Some(port);
        self.args(&["--tls-listen", &format!("127.0.0.1:{port}")])
    }

    /// Listens on this client port (a configuration file can then name the same address, so
    /// that a reload finds `listen` unchanged).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the proxy and waits until it serves (a master is verified).
    pub fn start(self) -> Proxy {
        let proxy = self.spawn();
        proxy.wait_ready();
        proxy
    }

    /// Starts the proxy and waits only until it accepts connections.
    pub fn spawn(self) -> Proxy {
        let port = self.port.unwrap_or_else(free_port);
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("proxy.log");
        let mut cmd = command(
            env!("CARGO_BIN_EXE_redis-failover-proxy"),
            self.netns.as_ref(),
        );
        let bind = bind_ip(self.netns.as_ref());
        if let Some(toml) = &self.config {
            let path = dir.path().join("proxy.toml");
            std::fs::write(&path, toml).expect("write config");
            cmd.arg("--config").arg(&path);
        }
        cmd.arg("--listen").arg(format!("{bind}:{port}"));
        if let Some(admin) = self.admin {
            cmd.arg("--admin").arg(format!("{bind}:{admin}"));
        }
        cmd.args(&self.args);
        cmd.env(
            "RUST_LOG",
            std::env::var("PROXY_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let logfile = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(logfile)
            .spawn()
            .expect("proxy binary");
        let proxy = Proxy {
            port,
            host: reach_ip(self.netns.as_ref()),
            admin_port: self.admin,
            tls_port: self.tls_listen,
            child: Some(child),
            dir,
            log,
        };
        let mut addrs = vec![proxy.addr()];
        addrs.extend(proxy.tls_port.map(|_| proxy.tls_addr()));
        for addr in addrs {
            assert!(
                wait_port(addr, Duration::from_secs(10)),
                "proxy did not start on {addr}: {}",
                proxy.log()
            );
        }
        proxy
    }
}

/// The running proxy binary, killed on drop.
#[derive(Debug)]
pub struct Proxy {
    /// Its client port.
    pub port: u16,
    /// Where the test reaches it (127.0.0.1, or an address in its network namespace).
    pub host: Ipv4Addr,
    /// Its admin port (`ProxyBuilder::admin`).
    pub admin_port: Option<u16>,
    /// Its separate TLS port (`ProxyBuilder::tls_listen`).
    pub tls_port: Option<u16>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Proxy {
    /// A builder.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// A proxy in front of `nodes` with default settings.
    pub fn start(nodes: &[&RedisServer]) -> Self {
        ProxyBuilder::default().nodes(nodes).start()
    }

    /// Client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.port))
    }

    /// The separate TLS address (`ProxyBuilder::tls_listen`).
    pub fn tls_addr(&self) -> SocketAddr {
        let port = self.tls_port.expect("started with tls_listen()");
        SocketAddr::from((self.host, port))
    }

    /// A client connected to the proxy.
    pub fn client(&self) -> Client {
        Client::connect(self.addr())
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; false if it did not within `deadline`.
    pub fn wait_log(&self, needle: &str, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the admin endpoint (`ProxyBuilder::admin`); returns the status code and
    /// the body. Retries the connection while the endpoint is starting.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let port = self.admin_port.expect("started with admin()");
        let addr = SocketAddr::from((self.host, port));
        let until = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= until => panic!("admin endpoint {addr}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read response");
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        (status, body.to_string())
    }

    /// The value of the metric series named `name` whose labels include every `key="value"`
    /// of `labels`, from the admin endpoint's `/metrics` (0 when absent: counters appear on
    /// their first increment).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    /// Lines of the log so far (colours removed) containing every one of `parts`.
    pub fn log_lines(&self, parts: &[&str]) -> Vec<String> {
        super::failover::strip_ansi(&self.log())
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
            .collect()
    }

    /// Replaces the configuration file the proxy was started with (it re-reads it on SIGHUP).
    pub fn rewrite_config(&self, toml: &str) {
        let path = self.dir.path().join("proxy.toml");
        assert!(
            path.exists(),
            "the proxy was started without a configuration file"
        );
        std::fs::write(&path, toml).expect("rewrite config");
    }

    /// Waits until a write through the proxy succeeds.
    pub fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(mut c) = Client::try_connect(self.addr()) {
                if c.cmd(&["SET", "__ready__", "1"]) == Frame::ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("proxy never became ready: {}", self.log());
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let until = Instant::now() + deadline;
        let child = self.child.as_mut()?;
        while Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory of the proxy process in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let Some(c) = &self.child else { return 0 };
        std::fs::read_to_string(format!("/proc/{}/status", c.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- proxy log ---\n{}", self.log());
        }
    }
}
