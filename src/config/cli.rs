//! Quick-start flags. Each overrides the matching setting of the configuration file, so one
//! command line is enough to put the proxy in front of a Redis, and a file is enough for
//! everything else.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::{
    Authority, Config, ConfigError, ListenerTls, LogFormat, NodeTls, Quorum, Site,
    HANDSHAKE_TIMEOUT,
};

/// A Redis-protocol failover proxy: one address for clients, whichever node is master.
#[derive(Debug, Parser)]
#[command(name = "redis-failover-proxy", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Flags override its settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address clients connect to.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,

    /// Redis nodes, comma-separated host:port; traffic goes to the one whose role is master.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub nodes: Vec<String>,

    /// Sentinel addresses, comma-separated host:port; the master is the one a majority of
    /// them names (needs --master-name).
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub sentinels: Vec<String>,

    /// Name of the master the Sentinels monitor.
    #[arg(long, value_name = "NAME")]
    pub master_name: Option<String>,

    /// Address of the admin HTTP endpoint (metrics, health, topology).
    #[arg(long, value_name = "HOST:PORT")]
    pub admin: Option<SocketAddr>,

    /// Commands refused by default to allow on the data port, comma-separated
    /// (CONFIG, DEBUG, CONFIG|SET, ...).
    #[arg(long, value_name = "CMD,...", value_delimiter = ',')]
    pub allow_commands: Vec<String>,

    /// Serve clients over TLS with this certificate chain (PEM; re-read when the file
    /// changes). Applies to --listen unless --tls-listen is given.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA bundle (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve TLS on this address and keep --listen plaintext.
    #[arg(long, value_name = "HOST:PORT", requires = "tls_cert")]
    pub tls_listen: Option<SocketAddr>,

    /// Reach Redis nodes and Sentinels over TLS, trusting this CA bundle.
    #[arg(long, value_name = "FILE")]
    pub backend_tls_ca: Option<PathBuf>,

    /// Client certificate for Redis nodes that require one (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["backend_tls_key", "backend_tls_ca"])]
    pub backend_tls_cert: Option<PathBuf>,

    /// Private key of --backend-tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "backend_tls_cert")]
    pub backend_tls_key: Option<PathBuf>,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Durable writes: answer a write only once this many replicas acknowledged it
    /// (`[durability] replicas`; 0 turns it off).
    #[arg(long, value_name = "N")]
    pub durable_replicas: Option<u32>,

    /// How long a durable write waits for its replicas (`[durability] timeout`, e.g. 200ms).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub durable_timeout: Option<std::time::Duration>,

    /// Check clients' AUTH on the master and run their commands as that Redis user
    /// (`[auth] mode = "passthrough"`).
    #[arg(long)]
    pub auth_passthrough: bool,

    /// Log format: human or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Check the configuration and exit.
    #[arg(long)]
    pub check: bool,
}

impl Cli {
    /// Builds the configuration: file (if any), then flags, then whole-configuration checks.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        self.apply(&mut cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_tls(&self, cfg: &mut Config) {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let kept = cfg.tls.take();
            cfg.tls = Some(ListenerTls {
                listen: self.tls_listen.or(kept.as_ref().and_then(|t| t.listen)),
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self
                    .tls_client_ca
                    .clone()
                    .or(kept.as_ref().and_then(|t| t.client_ca.clone())),
                handshake_timeout: kept.map_or(HANDSHAKE_TIMEOUT, |t| t.handshake_timeout),
            });
        }
        if let Some(ca) = &self.backend_tls_ca {
            cfg.backend.tls = Some(NodeTls {
                ca: ca.clone(),
                cert: self.backend_tls_cert.clone(),
                key: self.backend_tls_key.clone(),
                server_name: None,
            });
        }
    }

    fn apply(&self, cfg: &mut Config) -> Result<(), ConfigError> {
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(a) = self.admin {
            cfg.admin = Some(a);
        }
        if let Some(t) = self.threads {
            cfg.threads = t;
        }
        if let Some(n) = self.durable_replicas {
            cfg.durability.replicas = n;
        }
        if let Some(t) = self.durable_timeout {
            cfg.durability.timeout = t;
        }
        if self.auth_passthrough {
            cfg.auth.mode = super::AuthMode::Passthrough;
        }
        self.apply_tls(cfg);
        if !self.nodes.is_empty() || !self.sentinels.is_empty() {
            // The quick-start flags describe one group of nodes, not a layout of sites: any
            // healthy node is enough for it to take traffic.
            cfg.sites = vec![Site {
                nodes: self.nodes.iter().map(|n| n.trim().to_string()).collect(),
                sentinels: self
                    .sentinels
                    .iter()
                    .map(|n| n.trim().to_string())
                    .collect(),
                quorum: Quorum::Count(1),
                ..Site::default()
            }];
        }
        if let Some(name) = &self.master_name {
            cfg.failover.authority = Authority::Sentinel {
                master_name: name.clone(),
            };
        } else if !self.sentinels.is_empty() {
            return Err(ConfigError(vec![super::Problem {
                path: "--master-name".into(),
                message: "--sentinels needs --master-name".into(),
            }]));
        }
        cfg.allow_commands.extend(
            self.allow_commands
                .iter()
                .map(|c| c.trim().to_ascii_uppercase()),
        );
        match self.log_format.as_deref() {
            None => {}
            Some("human") => cfg.log_format = LogFormat::Human,
            Some("json") => cfg.log_format = LogFormat::Json,
            Some(other) => {
                return Err(ConfigError(vec![super::Problem {
                    path: "--log-format".into(),
                    message: format!("{other:?} is not \"human\" or \"json\""),
                }]))
            }
        }
        Ok(())
    }
}

/// A duration flag (`200ms`, `1s`).
fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    super::parse_duration_str(s).ok_or_else(|| format!("{s:?} is not a duration (200ms, 1s)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_start_line_is_enough() {
        let cli = Cli::parse_from([
            "redis-failover-proxy",
            "--listen",
            "127.0.0.1:6380",
            "--nodes",
            "127.0.0.1:7001,127.0.0.1:7002",
            "--admin",
            "127.0.0.1:9121",
            "--allow-commands",
            "config,DEBUG",
        ]);
        let cfg = cli.load().unwrap();
        assert_eq!(cfg.sites[0].nodes, vec!["127.0.0.1:7001", "127.0.0.1:7002"]);
        assert_eq!(cfg.allow_commands, vec!["CONFIG", "DEBUG"]);
        assert_eq!(cfg.admin, Some("127.0.0.1:9121".parse().unwrap()));
    }

    #[test]
    fn nothing_to_proxy_is_an_error() {
        let cli = Cli::parse_from(["redis-failover-proxy"]);
        assert!(cli.load().is_err());
    }
}
