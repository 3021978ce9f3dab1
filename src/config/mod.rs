//! Configuration: one TOML file (see `config/*.toml` for commented examples) plus quick-start
//! flags that override it. The file is read in one pass that reports every problem at once with
//! its key path, unknown keys included; secrets are read from the file, a file or an
//! environment variable and never printed. Nothing binds before the whole configuration is
//! valid. A leaf module: it imports nothing else from the crate.

mod auth;
pub mod cli;
mod durability;
mod file;
mod reader;
mod restart;
pub mod secret;
mod tls;
mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use file::*;

pub use auth::{Auth, AuthMode, LimitSettings, Password, PermissionSpec, UserConfig};
pub use durability::{Durability, DEFAULT_DURABLE_TIMEOUT};
pub use reader::{parse_duration_str, Problem, Problems, Reader};
pub use secret::{Secret, SecretSource};

pub use tls::{ListenerTls, NodeTls, SiteTls, HANDSHAKE_TIMEOUT};

/// Limits applied to clients (defaults as in Redis where Redis has one).
#[derive(Debug, Clone, PartialEq)]
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
    /// A command started must be complete within this long (slow-trickling clients).
    pub frame_timeout: Duration,
    /// Idle clients are closed after this long; zero: never (Redis `timeout`).
    pub idle_timeout: Duration,
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
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::ZERO,
        }
    }
}

/// Backend connection settings.
#[derive(Debug, Clone, PartialEq)]
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
    /// TLS towards nodes and Sentinels (sites may override it).
    pub tls: Option<NodeTls>,
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
            tls: None,
        }
    }
}

/// Health probing.
#[derive(Debug, Clone, PartialEq)]
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

/// How many healthy nodes a site needs to take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// More than half of the site's known nodes.
    Majority,
    /// At least this many.
    Count(usize),
}

impl Quorum {
    /// Healthy nodes needed out of `known`.
    pub fn needed(self, known: usize) -> usize {
        match self {
            Quorum::Majority => known / 2 + 1,
            Quorum::Count(n) => n,
        }
    }
}

/// A group of Redis nodes (a Kubernetes cluster, a region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Name, for logs and `/topology`.
    pub name: String,
    /// Preference: lower is preferred (active-active traffic goes to the first healthy site).
    pub priority: u32,
    /// Node addresses, `host:port` (DNS names are re-resolved as their TTL runs out).
    pub nodes: Vec<String>,
    /// SRV names yielding nodes.
    pub srv: Vec<String>,
    /// Sentinel addresses, `host:port`.
    pub sentinels: Vec<String>,
    /// Healthy nodes needed for the site to take traffic.
    pub quorum: Quorum,
    /// TLS towards this site's nodes and Sentinels.
    pub tls: SiteTls,
}

impl Default for Site {
    fn default() -> Self {
        Self {
            name: "default".into(),
            priority: 0,
            nodes: Vec::new(),
            srv: Vec::new(),
            sentinels: Vec::new(),
            quorum: Quorum::Majority,
            tls: SiteTls::Inherit,
        }
    }
}

/// Who decides which node is the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// No Sentinel: the node that reports itself master (with replication-ID succession to
    /// settle two claimants).
    Nodes,
    /// Sentinel: the master named by a majority of the configured Sentinels at the highest
    /// configuration epoch, confirmed on the node.
    Sentinel {
        /// The monitored master's name.
        master_name: String,
    },
    /// Every site is writable: traffic goes to the preferred healthy site.
    ActiveActive,
}

/// The hold timeout where none is configured and the authority gives no better one.
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(2);

/// Failover behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// Who decides.
    pub authority: Authority,
    /// How long commands wait for a master during a change before failing (not executed).
    pub hold_timeout: Duration,
    /// Clients that may wait at once; beyond it, commands fail at once.
    pub max_held_clients: usize,
    /// Active-active: a preferred site must stay healthy this long before traffic returns.
    pub failback_after: Duration,
    /// Sentinel user (when Sentinels require ACL authentication).
    pub sentinel_user: Option<String>,
    /// Sentinel password.
    pub sentinel_password: Option<Secret>,
    /// Probe nodes that Sentinel names but the configuration does not list.
    pub learn_nodes: bool,
    /// Whether `hold_timeout` was given; if not, the Sentinel authority derives it from the
    /// Sentinels' own timing.
    pub hold_timeout_given: bool,
    /// Write lease length; never used beyond the authority's limit (default: that limit, less
    /// a margin).
    pub lease: Option<Duration>,
    /// `nodes` authority: how long the orchestrator waits before it promotes a replica. Given,
    /// it puts the proxy's writes under a lease shorter than that.
    pub promotion_delay: Option<Duration>,
    /// `nodes` authority: voting members of the orchestrator that hold no data (`host:port`),
    /// only checked for reachability; they count towards the lease's majority.
    pub witnesses: Vec<String>,
    /// Reads while the write lease is lapsed: served by the last verified master (`true`) or
    /// held and refused like writes (`false`, the default).
    pub stale_reads: bool,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            authority: Authority::Nodes,
            hold_timeout: DEFAULT_HOLD_TIMEOUT,
            max_held_clients: 10_000,
            failback_after: Duration::from_secs(30),
            sentinel_user: None,
            sentinel_password: None,
            learn_nodes: true,
            hold_timeout_given: false,
            lease: None,
            promotion_delay: None,
            witnesses: Vec::new(),
            stale_reads: false,
        }
    }
}

/// DNS resolution of node and Sentinel names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// Name servers (`ip:port`); empty: the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Shortest interval between lookups of a name.
    pub min_ttl: Duration,
    /// Longest interval between lookups of a name.
    pub max_ttl: Duration,
    /// Retry interval after a failed lookup (the last good answer stays in use).
    pub retry: Duration,
    /// Deadline of one query.
    pub timeout: Duration,
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(30),
            retry: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Shutdown timing.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// After SIGTERM, how long the proxy keeps serving while unready, so that Kubernetes
    /// removes it from the Service's endpoints before it stops accepting.
    pub drain_delay: Duration,
    /// Then, longest wait for in-flight commands after the listeners close.
    pub grace: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            drain_delay: Duration::ZERO,
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
    /// Client-side TLS (on `listen`, or on its own address beside it).
    pub tls: Option<ListenerTls>,
    /// Admin HTTP address (served by the admin endpoint).
    pub admin: Option<SocketAddr>,
    /// Bearer token protecting the admin endpoint's topology and operations.
    pub admin_token: Option<Secret>,
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
    /// Who decides the master, and how a change is handled.
    pub failover: Failover,
    /// DNS resolution.
    pub dns: Dns,
    /// Client authentication.
    pub auth: Auth,
    /// Commands refused by default that the operator allows (`CONFIG`, `CONFIG|SET`).
    pub allow_commands: Vec<String>,
    /// Shutdown timing.
    pub shutdown: Shutdown,
    /// Log format.
    pub log_format: LogFormat,
    /// Durable writes (users may have their own).
    pub durability: Durability,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6380)),
            tls: None,
            admin: None,
            admin_token: None,
            threads: 0,
            limits: Limits::default(),
            backend: Backend::default(),
            health: Health::default(),
            sites: Vec::new(),
            failover: Failover::default(),
            dns: Dns::default(),
            auth: Auth::default(),
            allow_commands: Vec::new(),
            shutdown: Shutdown::default(),
            log_format: LogFormat::Human,
            durability: Durability::default(),
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
        let durability = r.table("durability", p).map_or(d.durability, |t| {
            durability::read_durability(t, d.durability, p)
        });
        let cfg = Config {
            listen: r.get_or("listen", d.listen, p),
            tls: r.table("tls", p).and_then(|t| tls::read_listener_tls(t, p)),
            admin: r.get("admin", p),
            admin_token: r.table("admin_auth", p).and_then(|t| read_admin_auth(t, p)),
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
            failover: r
                .table("failover", p)
                .map_or(d.failover.clone(), |t| read_failover(t, p)),
            dns: r.table("dns", p).map_or(d.dns.clone(), |t| read_dns(t, p)),
            auth: r
                .table("auth", p)
                .map_or(d.auth.clone(), |t| auth::read_auth(t, durability, p)),
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
            durability,
        };
        r.finish(p);
        cfg
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

#[cfg(test)]
mod tests;
