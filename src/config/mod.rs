//! Configuration: one TOML file (see `config/*.toml` for commented examples) plus quick-start
//! flags that override it. The file is read in one pass that reports every problem at once with
//! its key path, unknown keys included; secrets are read from the file, a file or an
//! environment variable and never printed. Nothing binds before the whole configuration is
//! valid. A leaf module: it imports nothing else from the crate.

pub mod cli;
mod reader;
pub mod secret;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use reader::{parse_duration_str, Problem, Problems, Reader};
pub use secret::{Secret, SecretSource};

/// Limits applied to clients (defaults as in Redis where Redis has one).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most clients connected at once (Redis `maxclients`).
    pub max_clients: usize,
    /// Largest bulk string (Redis `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most arguments in one command.
    pub max_args: usize,
    /// Largest single command (Redis `client-query-buffer-limit`).
    pub query_buffer: usize,
    /// Replies kept for a client that does not read them, before it is disconnected.
    pub output_buffer: usize,
    /// The same for subscribers (Redis `client-output-buffer-limit pubsub`).
    pub pubsub_output_buffer: usize,
    /// Dispatches a client may have in flight before the proxy stops reading from it.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_bulk_len: 512 * 1024 * 1024,
            max_args: i32::MAX as usize,
            query_buffer: 1024 * 1024 * 1024,
            output_buffer: 256 * 1024 * 1024,
            pubsub_output_buffer: 32 * 1024 * 1024,
            max_in_flight: 1024,
        }
    }
}

/// Backend connection settings.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Shared connections per (node, db, protocol, user).
    pub pool_size: usize,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// HELLO/AUTH/SELECT/identity deadline.
    pub handshake_timeout: Duration,
    /// How long a written command may wait for its reply.
    pub reply_timeout: Duration,
    /// Cap on dedicated (pinned) connections.
    pub max_dedicated: usize,
    /// Idle dedicated connections are closed after this long.
    pub dedicated_idle: Duration,
    /// ACL user on the Redis nodes.
    pub user: Option<String>,
    /// Password on the Redis nodes.
    pub password: Option<Secret>,
}

impl Default for Backend {
    fn default() -> Self {
        Self {
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(2),
            reply_timeout: Duration::from_secs(10),
            max_dedicated: 5_000,
            dedicated_idle: Duration::from_secs(60),
            user: None,
            password: None,
        }
    }
}

/// Health probing.
#[derive(Debug, Clone)]
pub struct Health {
    /// Time between probes of a node.
    pub interval: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// Consecutive good probes for a node to count as healthy again.
    pub rise: u32,
    /// Consecutive failed probes for a node to count as down.
    pub fall: u32,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
        }
    }
}

/// A group of Redis nodes (a Kubernetes cluster, a region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Name, for logs and `/topology`.
    pub name: String,
    /// Node addresses, `host:port`.
    pub nodes: Vec<String>,
}

/// How a user's password is given.
#[derive(Debug, Clone)]
pub enum Password {
    /// No password.
    None,
    /// In clear (from the file, a file or the environment).
    Plain(Secret),
    /// As a SHA-256 hex digest.
    Sha256(String),
}

/// A named proxy user.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// Name.
    pub name: String,
    /// Password.
    pub password: Password,
    /// Backend credentials for this user's commands (default: the `[backend]` ones).
    pub backend_user: Option<String>,
    /// Backend password for this user's commands.
    pub backend_password: Option<Secret>,
}

/// Client authentication.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Password of the default user (Redis `requirepass`).
    pub password: Password,
    /// Named users.
    pub users: Vec<UserConfig>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            password: Password::None,
            users: Vec::new(),
        }
    }
}

/// Shutdown timing.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Longest wait for in-flight commands after the listeners close.
    pub grace: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client listening address.
    pub listen: SocketAddr,
    /// Admin HTTP address (served by the admin endpoint).
    pub admin: Option<SocketAddr>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Client limits.
    pub limits: Limits,
    /// Backend connections.
    pub backend: Backend,
    /// Health probing.
    pub health: Health,
    /// Redis nodes, by site.
    pub sites: Vec<Site>,
    /// Client authentication.
    pub auth: Auth,
    /// Commands refused by default that the operator allows (`CONFIG`, `CONFIG|SET`).
    pub allow_commands: Vec<String>,
    /// Shutdown timing.
    pub shutdown: Shutdown,
    /// Log format.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6380)),
            admin: None,
            threads: 0,
            limits: Limits::default(),
            backend: Backend::default(),
            health: Health::default(),
            sites: Vec::new(),
            auth: Auth::default(),
            allow_commands: Vec::new(),
            shutdown: Shutdown::default(),
            log_format: LogFormat::Human,
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug)]
pub struct ConfigError(pub Vec<Problem>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(vec![Problem {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Self::from_toml(&text)
    }

    /// Parses configuration text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            ConfigError(vec![Problem {
                path: String::new(),
                message: format!("TOML syntax: {}", e.to_string().trim()),
            }])
        })?;
        let mut p = Problems::default();
        let cfg = Self::read(Reader::root(&table), &mut p);
        if p.0.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError(p.0))
        }
    }

    fn read(mut r: Reader<'_>, p: &mut Problems) -> Self {
        let d = Config::default();
        let cfg = Config {
            listen: r.get_or("listen", d.listen, p),
            admin: r.get("admin", p),
            threads: r.get_or("threads", d.threads, p),
            limits: r
                .table("limits", p)
                .map_or(d.limits.clone(), |t| read_limits(t, p)),
            backend: r
                .table("backend", p)
                .map_or(d.backend.clone(), |t| read_backend(t, p)),
            health: r
                .table("health", p)
                .map_or(d.health.clone(), |t| read_health(t, p)),
            sites: r
                .tables("sites", p)
                .into_iter()
                .map(|t| read_site(t, p))
                .collect(),
            auth: r
                .table("auth", p)
                .map_or(d.auth.clone(), |t| read_auth(t, p)),
            allow_commands: r
                .get::<Vec<String>>("allow_commands", p)
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
            shutdown: r
                .table("shutdown", p)
                .map_or(d.shutdown.clone(), |t| read_shutdown(t, p)),
            log_format: read_log_format(&mut r, p),
        };
        r.finish(p);
        cfg
    }

    /// Checks what only makes sense for the whole configuration (after flags were applied).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        if self.sites.iter().all(|s| s.nodes.is_empty()) {
            p.add(
                "sites",
                "no Redis node configured (give --nodes or [[sites]] nodes)",
            );
        }
        for (i, site) in self.sites.iter().enumerate() {
            for (j, node) in site.nodes.iter().enumerate() {
                if split_host_port(node).is_none() {
                    p.add(
                        &format!("sites[{i}].nodes[{j}]"),
                        format!("{node:?} is not host:port"),
                    );
                }
            }
        }
        if self.backend.pool_size == 0 {
            p.add("backend.pool_size", "must be at least 1");
        }
        if self.limits.max_clients == 0 {
            p.add("limits.max_clients", "must be at least 1");
        }
        if self.limits.max_in_flight == 0 {
            p.add("limits.max_in_flight", "must be at least 1");
        }
        if self.health.rise == 0 || self.health.fall == 0 {
            p.add("health", "rise and fall must be at least 1");
        }
        for c in &self.allow_commands {
            if c.is_empty() || c.contains(char::is_whitespace) {
                p.add(
                    "allow_commands",
                    format!("{c:?} is not a command name (use CONFIG or CONFIG|SET)"),
                );
            }
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p.0))
        }
    }
}

/// Splits `host:port` (IPv6 as `[::1]:6379`).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

fn read_limits(mut r: Reader<'_>, p: &mut Problems) -> Limits {
    let d = Limits::default();
    let l = Limits {
        max_clients: r.get_or("max_clients", d.max_clients, p),
        max_bulk_len: r.size("max_bulk_len", d.max_bulk_len, p),
        max_args: r.get_or("max_args", d.max_args, p),
        query_buffer: r.size("query_buffer", d.query_buffer, p),
        output_buffer: r.size("output_buffer", d.output_buffer, p),
        pubsub_output_buffer: r.size("pubsub_output_buffer", d.pubsub_output_buffer, p),
        max_in_flight: r.get_or("max_in_flight", d.max_in_flight, p),
    };
    r.finish(p);
    l
}

fn read_secret(r: &mut Reader<'_>, key: &str, p: &mut Problems) -> Option<Secret> {
    let src: SecretSource = r.get(key, p)?;
    match src.load() {
        Ok(s) => Some(s),
        Err(e) => {
            p.add(&r.path_of(key), e);
            None
        }
    }
}

fn read_backend(mut r: Reader<'_>, p: &mut Problems) -> Backend {
    let d = Backend::default();
    let b = Backend {
        pool_size: r.get_or("pool_size", d.pool_size, p),
        connect_timeout: r.duration("connect_timeout", d.connect_timeout, p),
        handshake_timeout: r.duration("handshake_timeout", d.handshake_timeout, p),
        reply_timeout: r.duration("reply_timeout", d.reply_timeout, p),
        max_dedicated: r.get_or("max_dedicated", d.max_dedicated, p),
        dedicated_idle: r.duration("dedicated_idle", d.dedicated_idle, p),
        user: r.get("user", p),
        password: read_secret(&mut r, "password", p),
    };
    r.finish(p);
    b
}

fn read_health(mut r: Reader<'_>, p: &mut Problems) -> Health {
    let d = Health::default();
    let h = Health {
        interval: r.duration("interval", d.interval, p),
        timeout: r.duration("timeout", d.timeout, p),
        rise: r.get_or("rise", d.rise, p),
        fall: r.get_or("fall", d.fall, p),
    };
    r.finish(p);
    h
}

fn read_site(mut r: Reader<'_>, p: &mut Problems) -> Site {
    let s = Site {
        name: r.get_or("name", "default".to_string(), p),
        nodes: r.get_or("nodes", Vec::new(), p),
    };
    r.finish(p);
    s
}

fn read_password(r: &mut Reader<'_>, p: &mut Problems) -> Password {
    let plain = read_secret(r, "password", p);
    let digest: Option<String> = r.get("password_sha256", p);
    match (plain, digest) {
        (Some(_), Some(_)) => {
            p.add(
                &r.path_of("password"),
                "give password or password_sha256, not both",
            );
            Password::None
        }
        (Some(s), None) => Password::Plain(s),
        (None, Some(h)) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
            Password::Sha256(h.to_ascii_lowercase())
        }
        (None, Some(_)) => {
            p.add(
                &r.path_of("password_sha256"),
                "expected 64 hexadecimal digits (a SHA-256 digest)",
            );
            Password::None
        }
        (None, None) => Password::None,
    }
}

fn read_auth(mut r: Reader<'_>, p: &mut Problems) -> Auth {
    let password = read_password(&mut r, p);
    let users = r
        .tables("users", p)
        .into_iter()
        .map(|mut u| {
            let user = UserConfig {
                name: u.get_or("name", String::new(), p),
                password: read_password(&mut u, p),
                backend_user: u.get("backend_user", p),
                backend_password: read_secret(&mut u, "backend_password", p),
            };
            if user.name.is_empty() {
                p.add(&u.path_of("name"), "every user needs a name");
            }
            u.finish(p);
            user
        })
        .collect();
    r.finish(p);
    Auth { password, users }
}

fn read_shutdown(mut r: Reader<'_>, p: &mut Problems) -> Shutdown {
    let d = Shutdown::default();
    let s = Shutdown {
        grace: r.duration("grace", d.grace, p),
    };
    r.finish(p);
    s
}

fn read_log_format(r: &mut Reader<'_>, p: &mut Problems) -> LogFormat {
    match r.get::<String>("log_format", p).as_deref() {
        None | Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(other) => {
            p.add(
                "log_format",
                format!("{other:?} is not \"human\" or \"json\""),
            );
            LogFormat::Human
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_all_problems_at_once() {
        let err = Config::from_toml(
            r#"
listen = "not an address"
colour = "blue"
[backend]
reply_timeout = "soon"
pool_sise = 3
[[sites]]
nodes = ["a:1"]
wat = 1
"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "listen",
                "backend.reply_timeout",
                "backend.pool_sise",
                "sites[0].wat",
                "colour"
            ]
        );
        assert!(err.to_string().contains("5 problem(s)"));
    }

    #[test]
    fn secrets_and_defaults() {
        let cfg = Config::from_toml(
            r#"
[backend]
password = "backend-pw"
[auth]
password_sha256 = "AA00000000000000000000000000000000000000000000000000000000000000"
[[auth.users]]
name = "app"
password = "app-pw"
[[sites]]
name = "a"
nodes = ["127.0.0.1:7001", "[::1]:7002"]
"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            cfg.backend.password.as_ref().unwrap().expose(),
            "backend-pw"
        );
        assert!(!format!("{cfg:?}").contains("backend-pw"));
        assert!(!format!("{cfg:?}").contains("app-pw"));
        assert_eq!(cfg.limits.max_bulk_len, 512 * 1024 * 1024);
        assert_eq!(split_host_port("[::1]:7002"), Some(("::1", 7002)));
    }

    #[test]
    fn validation_needs_nodes() {
        let err = Config::default().validate().unwrap_err();
        assert_eq!(err.0[0].path, "sites");
    }
}
