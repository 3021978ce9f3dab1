//! The command line of the load harness, and its check: [`Args`] is what clap parses,
//! [`Settings`] the validated workload every other module reads. Every refusal is a
//! [`UsageError`], which `main` turns into exit code 2.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use redis_failover_proxy::config::NodeTls;

use crate::handshake::Credentials;

/// How long one reply may take before the connection counts as hung, unless --timeout says.
const DEFAULT_REPLY_TIMEOUT_MS: u64 = 5000;

/// Load generator for Redis-protocol servers (the proxy, Redis itself, HAProxy, ...), with a
/// write ledger that proves whether acknowledged writes survived a failover.
///
/// Each connection sends DEPTH commands (GET or SET on random keys of the keyspace), waits for
/// their replies and records each command's latency, from the moment it was written to the
/// moment its reply arrived. Every SET writes a unique value, which lets the harness check at
/// the end, key by key, that the master still holds the last acknowledged write (or a later
/// one whose outcome was unknown); a key that holds anything else counts as an acknowledged
/// write lost.
///
/// With --nodes, a node counts as superseded from the moment the authority (the Sentinel, or
/// else the nodes' own replication state) named another master after it, until it names that
/// node again; a write MONITOR shows executed by a superseded node counts as a write to a
/// superseded master.
///
/// Exit codes: 0 the run completed and nothing was lost; 1 acknowledged writes were lost,
/// writes reached a superseded master, or a write reported "not executed" was applied;
/// 2 usage error; 3 the run could not be checked (no connection ever succeeded, or the keys
/// could not be read back).
#[derive(Debug, Parser)]
#[command(name = "redis-failover-load", version, verbatim_doc_comment)]
pub(crate) struct Args {
    /// Target: the proxy, a Redis node, HAProxy, ...
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6379")]
    pub(crate) addr: String,

    /// Connections, each with its own pipeline.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 20)]
    pub(crate) connections: usize,

    /// Commands in flight per connection: sent together, then their replies awaited.
    #[arg(
        short = 'P',
        long = "pipeline",
        value_name = "DEPTH",
        default_value_t = 1
    )]
    pub(crate) pipeline: usize,

    /// Number of distinct keys (key names are PREFIX0 .. PREFIX<N-1>).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub(crate) keyspace: u32,

    /// Key name prefix.
    #[arg(long, value_name = "PREFIX", default_value = "load:")]
    pub(crate) key_prefix: String,

    /// Size of each SET value; values are never shorter than their identity (about 20 bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 32)]
    pub(crate) value_size: usize,

    /// Reads to writes, as READ:WRITE (1:1, 9:1, 0:1 for writes only).
    #[arg(long, value_name = "READ:WRITE", conflicts_with = "read_pct")]
    pub(crate) ratio: Option<String>,

    /// Share of reads in percent (alternative to --ratio; default 50).
    #[arg(long, value_name = "PERCENT")]
    pub(crate) read_pct: Option<f64>,

    /// Fixed total rate in commands per second, spread evenly over the connections; without
    /// it each connection sends its next pipeline as soon as the previous one is answered.
    #[arg(long, value_name = "OPS")]
    pub(crate) rate: Option<f64>,

    /// How long to run, in seconds (default 10 unless --requests is given).
    #[arg(long, value_name = "SECS", conflicts_with = "requests")]
    pub(crate) duration: Option<f64>,

    /// Total commands to send instead of a duration.
    #[arg(long, value_name = "N")]
    pub(crate) requests: Option<u64>,

    /// How long a reply may take before it counts as a timeout and the connection is
    /// reconnected.
    #[arg(long = "timeout", value_name = "MS", default_value_t = DEFAULT_REPLY_TIMEOUT_MS)]
    pub(crate) timeout_ms: u64,

    /// Connect over TLS (needs --tls-ca). Applies to every connection the harness opens.
    #[arg(long, requires = "tls_ca")]
    pub(crate) tls: bool,

    /// CA bundle the server certificates must chain to (PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,

    /// Client certificate (PEM), for servers that require one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,

    /// Name the server certificates must carry (default: the host of each address).
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_server_name: Option<String>,

    /// ACL user for AUTH (with --password or --password-env).
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,

    /// Password for AUTH (visible in the process list: prefer --password-env).
    #[arg(long, value_name = "PASSWORD", conflicts_with = "password_env")]
    pub(crate) password: Option<String>,

    /// Environment variable holding the password for AUTH.
    #[arg(long, value_name = "VAR")]
    pub(crate) password_env: Option<String>,

    /// Write the report as JSON to FILE ("-" for stdout, replacing the text report).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<String>,

    /// No progress line on stderr.
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// Do not keep the write ledger (no read-back at the end).
    #[arg(long)]
    pub(crate) no_ledger: bool,

    /// Read the written keys back from this address at the end (default: --addr).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "verify_sentinel")]
    pub(crate) verify_addr: Option<String>,

    /// Ask these Sentinels (comma-separated, first that answers) which node is master, and
    /// read the written keys back from it; with --nodes they are also the authority that
    /// says which node is master during the run. Sentinels are reached without AUTH.
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        requires = "master_name"
    )]
    pub(crate) verify_sentinel: Vec<String>,

    /// Name of the master the Sentinels monitor.
    #[arg(long, value_name = "NAME")]
    pub(crate) master_name: Option<String>,

    /// Every Redis node, reached directly (comma-separated). The harness then watches each
    /// with MONITOR to see which node executed every write, and asks every 100 ms which node
    /// is master (the Sentinel with --verify-sentinel, else each node's INFO replication), to
    /// count writes executed by a master that had been superseded. MONITOR costs Redis a good
    /// share of its throughput: compare only runs made with the same setting.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub(crate) nodes: Vec<String>,
}

/// A command line that cannot run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UsageError {
    /// A value out of its range.
    #[error("{flag}: {why}")]
    Invalid { flag: &'static str, why: String },
    /// The password variable is not set.
    #[error("--password-env: environment variable {0} is not set")]
    NoPasswordVar(String),
}

fn invalid(flag: &'static str, why: impl Into<String>) -> UsageError {
    UsageError::Invalid {
        flag,
        why: why.into(),
    }
}

/// When the run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stop {
    /// After this long.
    After(Duration),
    /// After this many commands in total.
    Requests(u64),
}

/// The validated settings of a run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Target address.
    pub(crate) addr: String,
    /// Connections.
    pub(crate) connections: usize,
    /// Pipeline depth.
    pub(crate) pipeline: usize,
    /// Distinct keys.
    pub(crate) keyspace: u32,
    /// Key prefix.
    pub(crate) key_prefix: String,
    /// SET value size.
    pub(crate) value_size: usize,
    /// Share of reads, 0.0 to 1.0.
    pub(crate) read_share: f64,
    /// Total rate, commands per second.
    pub(crate) rate: Option<f64>,
    /// When to stop.
    pub(crate) stop: Stop,
    /// Reply deadline.
    pub(crate) reply_timeout: Duration,
    /// TLS settings for every connection.
    pub(crate) tls: Option<NodeTls>,
    /// AUTH credentials.
    pub(crate) credentials: Option<Credentials>,
    /// JSON destination.
    pub(crate) json: Option<String>,
    /// No progress line.
    pub(crate) quiet: bool,
    /// Keep the write ledger.
    pub(crate) ledger: bool,
    /// Read-back address, when fixed.
    pub(crate) verify_addr: Option<String>,
    /// Sentinels to ask for the master.
    pub(crate) sentinels: Vec<String>,
    /// Master name at the Sentinels.
    pub(crate) master_name: Option<String>,
    /// Nodes to watch.
    pub(crate) nodes: Vec<String>,
}

impl Args {
    /// Checks the flags and builds the settings.
    pub(crate) fn settings(&self) -> Result<Settings, UsageError> {
        if self.connections == 0 {
            return Err(invalid("--connections", "must be at least 1"));
        }
        if self.pipeline == 0 {
            return Err(invalid("--pipeline", "must be at least 1"));
        }
        if self.keyspace == 0 {
            return Err(invalid("--keyspace", "must be at least 1"));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("--timeout", "must be above 0"));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid("--rate", "must be a positive number"));
            }
        }
        let read_share = match (&self.ratio, self.read_pct) {
            (Some(r), _) => parse_ratio(r).map_err(|why| invalid("--ratio", why))?,
            (None, Some(p)) if (0.0..=100.0).contains(&p) => p / 100.0,
            (None, Some(_)) => return Err(invalid("--read-pct", "must be within 0 to 100")),
            (None, None) => 0.5,
        };
        let stop = match (self.duration, self.requests) {
            (_, Some(0)) => return Err(invalid("--requests", "must be at least 1")),
            (_, Some(n)) => Stop::Requests(n),
            (Some(s), None) if s.is_finite() && s > 0.0 => Stop::After(Duration::from_secs_f64(s)),
            (Some(_), None) => return Err(invalid("--duration", "must be a positive number")),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        if self.tls_server_name.is_some() && !self.tls {
            return Err(invalid("--tls-server-name", "needs --tls"));
        }
        Ok(Settings {
            addr: self.addr.clone(),
            connections: self.connections,
            pipeline: self.pipeline,
            keyspace: self.keyspace,
            key_prefix: self.key_prefix.clone(),
            value_size: self.value_size,
            read_share,
            rate: self.rate,
            stop,
            reply_timeout: Duration::from_millis(self.timeout_ms),
            tls: self.tls_settings(),
            credentials: self.credentials()?,
            json: self.json.clone(),
            quiet: self.quiet,
            ledger: !self.no_ledger,
            verify_addr: self.verify_addr.clone(),
            sentinels: self.verify_sentinel.clone(),
            master_name: self.master_name.clone(),
            nodes: self.nodes.clone(),
        })
    }

    fn tls_settings(&self) -> Option<NodeTls> {
        let ca = self.tls_ca.clone().filter(|_| self.tls)?;
        Some(NodeTls {
            ca,
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            server_name: self.tls_server_name.clone(),
        })
    }

    fn credentials(&self) -> Result<Option<Credentials>, UsageError> {
        let password = match (&self.password, &self.password_env) {
            (Some(p), _) => p.clone(),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| UsageError::NoPasswordVar(var.clone()))?
            }
            (None, None) if self.user.is_some() => {
                return Err(invalid("--user", "needs --password or --password-env"))
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(Credentials {
            user: self.user.clone(),
            password,
        }))
    }
}

/// `READ:WRITE` as the share of reads.
fn parse_ratio(s: &str) -> Result<f64, String> {
    let (r, w) = s
        .split_once(':')
        .ok_or_else(|| format!("expected READ:WRITE, got {s:?}"))?;
    let num = |x: &str| {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{x:?} is not a non-negative number"))
    };
    let (r, w) = (num(r)?, num(w)?);
    if r + w == 0.0 {
        return Err("READ and WRITE cannot both be 0".into());
    }
    Ok(r / (r + w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut all = vec!["redis-failover-load"];
        all.extend_from_slice(args);
        let a = Args::try_parse_from(all).map_err(|e| e.to_string())?;
        a.settings().map_err(|e| e.to_string())
    }

    #[test]
    fn ratio_and_read_pct() {
        assert_eq!(parse_ratio("1:1"), Ok(0.5));
        assert_eq!(parse_ratio("0:1"), Ok(0.0));
        assert_eq!(parse_ratio("9:1"), Ok(0.9));
        assert!(parse_ratio("0:0").is_err());
        assert!(parse_ratio("3").is_err());
        assert!(parse_ratio("-1:2").is_err());
        assert_eq!(parse(&["--read-pct", "25"]).unwrap().read_share, 0.25);
        assert!(parse(&["--read-pct", "101"]).is_err());
        assert!(parse(&["--ratio", "1:1", "--read-pct", "5"]).is_err());
    }

    #[test]
    fn defaults_and_refusals() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(s.read_share, 0.5);
        assert!(s.ledger);
        assert!(s.tls.is_none());
        assert_eq!(parse(&["--requests", "5"]).unwrap().stop, Stop::Requests(5));
        assert!(parse(&["-c", "0"]).is_err());
        assert!(parse(&["-P", "0"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--duration", "1", "--requests", "4"]).is_err());
        assert!(parse(&["--tls"]).is_err());
        assert!(parse(&["--user", "u"]).is_err());
        assert!(parse(&["--verify-sentinel", "a:1"]).is_err());
        let s = parse(&[
            "--tls",
            "--tls-ca",
            "ca.pem",
            "--user",
            "u",
            "--password",
            "p",
        ])
        .unwrap();
        assert!(s.tls.is_some());
        assert_eq!(s.credentials.unwrap().user.as_deref(), Some("u"));
    }
}
