//! Finding nodes by DNS. Each configured name (`host:port`, or an SRV name) is watched by one
//! task that resolves it, waits until its answer's TTL runs out (clamped, with jitter so that
//! several proxies do not query in step), and resolves it again. Every change of the address
//! set is reported to the failover task; a failed lookup keeps the last good answer and retries
//! sooner. A name that resolves to several addresses (a headless Service) yields several nodes.
//!
//! DNS only locates nodes. Whether a node is used is decided by its probes and the authority,
//! never by its presence in DNS.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::Endpoint;

/// A configured name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `host:port`; an IP literal needs no lookup.
    Host {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
    },
    /// An SRV name; each record names a host and a port.
    Srv(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Host { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Host { host, port } => write!(f, "{host}:{port}"),
            Target::Srv(name) => write!(f, "srv:{name}"),
        }
    }
}

/// Resolver settings.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// Name servers to ask (`ip:port`); empty means the system configuration.
    pub nameservers: Vec<SocketAddr>,
    /// Shortest time between lookups of a name (whatever its TTL).
    pub min_ttl: Duration,
    /// Longest time between lookups of a name (whatever its TTL).
    pub max_ttl: Duration,
    /// Time before retrying a failed lookup.
    pub retry: Duration,
    /// Deadline of one query.
    pub timeout: Duration,
}

impl Default for DnsSettings {
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

/// One lookup's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The nodes found, sorted by address.
    pub endpoints: Vec<Endpoint>,
    /// How long the answer may be used before asking again (before clamping).
    pub ttl: Duration,
}

/// A report from a watch task.
#[derive(Debug, Clone)]
pub struct Update {
    /// The name watched.
    pub target: Target,
    /// The nodes it currently yields (the last good answer when `error` is set).
    pub endpoints: Vec<Endpoint>,
    /// Why the latest lookup failed, if it did.
    pub error: Option<String>,
}

/// A DNS resolver shared by the watch tasks.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    settings: DnsSettings,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Resolver {
    /// A resolver asking `settings.nameservers`, or the system's name servers.
    pub fn new(settings: DnsSettings) -> Result<Self, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if settings.nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| format!("system DNS configuration: {e}"))?
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|a| name_server(*a))
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = settings.timeout;
        opts.attempts = 2;
        // The resolver's own cache must never outlive the proxy's refresh interval, and a
        // negative answer (a headless Service with no ready pod) must not stick.
        opts.positive_max_ttl = Some(settings.max_ttl);
        opts.negative_max_ttl = Some(settings.min_ttl);
        let inner = builder.build().map_err(|e| format!("DNS resolver: {e}"))?;
        Ok(Self { inner, settings })
    }

    /// Resolves `target` once.
    pub async fn resolve(&self, target: &Target) -> Result<Answer, String> {
        let result = match target {
            Target::Host { host, port } => self.resolve_host(host, *port).await,
            Target::Srv(name) => self.resolve_srv(name).await,
        };
        crate::metrics::dns(result.is_ok());
        let mut answer = result?;
        answer.endpoints.sort_by_key(|e| e.addr);
        answer.endpoints.dedup();
        Ok(answer)
    }

    async fn resolve_host(&self, host: &str, port: u16) -> Result<Answer, String> {
        let name: Arc<str> = Target::Host {
            host: host.into(),
            port,
        }
        .to_string()
        .into();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Answer {
                endpoints: vec![Endpoint::plain(SocketAddr::new(ip, port), name)],
                ttl: self.settings.max_ttl,
            });
        }
        let lookup = self
            .inner
            .lookup_ip(host)
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(std::time::Instant::now());
        let endpoints: Vec<Endpoint> = lookup
            .iter()
            .map(|ip| Endpoint::plain(SocketAddr::new(ip, port), Arc::clone(&name)))
            .collect();
        if endpoints.is_empty() {
            return Err(format!("{host}: no address"));
        }
        Ok(Answer { endpoints, ttl })
    }

    async fn resolve_srv(&self, name: &str) -> Result<Answer, String> {
        let lookup = self
            .inner
            .lookup(name, RecordType::SRV)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let mut ttl = lookup
            .valid_until()
            .saturating_duration_since(std::time::Instant::now());
        let mut endpoints = Vec::new();
        for record in lookup.answers() {
            let RData::SRV(srv) = &record.data else {
                continue;
            };
            // The target is absolute (trailing dot): looked up as such, never against the
            // search domains.
            let host = srv.target.to_utf8();
            let found = self.resolve_host(&host, srv.port).await?;
            ttl = ttl.min(found.ttl);
            endpoints.extend(found.endpoints);
        }
        if endpoints.is_empty() {
            return Err(format!("{name}: no SRV record"));
        }
        Ok(Answer { endpoints, ttl })
    }

    /// Time until the next lookup: the TTL clamped to the configured bounds, minus up to a
    /// tenth at random so that proxies started together spread their queries.
    pub fn next_refresh(&self, ttl: Duration) -> Duration {
        let clamped = ttl.clamp(self.settings.min_ttl, self.settings.max_ttl);
        let jitter = clamped.mul_f64(fastrand::f64() * 0.1);
        clamped - jitter
    }

    /// Watches `target` until `stop`: reports the first answer (or failure), then every change.
    pub async fn watch(self, target: Target, tx: mpsc::Sender<Update>, stop: CancellationToken) {
        let mut last: Option<Vec<Endpoint>> = None;
        let mut failing = false;
        loop {
            let wait = match self.resolve(&target).await {
                Ok(answer) => {
                    let changed = last.as_ref() != Some(&answer.endpoints) || failing;
                    failing = false;
                    let wait = self.next_refresh(answer.ttl);
                    last = Some(answer.endpoints);
                    if changed && !send(&tx, &target, &last, None).await {
                        return;
                    }
                    wait
                }
                Err(e) => {
                    if !failing || last.is_none() {
                        tracing::warn!(name = %target, error = %e, "DNS lookup failed; keeping the last answer");
                        if !send(&tx, &target, &last, Some(e)).await {
                            return;
                        }
                    }
                    failing = true;
                    self.settings.retry
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

async fn send(
    tx: &mpsc::Sender<Update>,
    target: &Target,
    last: &Option<Vec<Endpoint>>,
    error: Option<String>,
) -> bool {
    let update = Update {
        target: target.clone(),
        endpoints: last.clone().unwrap_or_default(),
        error,
    };
    tx.send(update).await.is_ok()
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    ns.connections = vec![udp, tcp];
    ns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> Resolver {
        Resolver::new(DnsSettings {
            nameservers: vec!["127.0.0.1:1".parse().unwrap()],
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(30),
            ..DnsSettings::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        let r = resolver();
        let a = r
            .resolve(&Target::Host {
                host: "127.0.0.1".into(),
                port: 7001,
            })
            .await
            .unwrap();
        assert_eq!(a.endpoints[0].addr, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(&*a.endpoints[0].name, "127.0.0.1:7001");
    }

    #[tokio::test]
    async fn refresh_is_clamped_and_jittered() {
        let r = resolver();
        for _ in 0..100 {
            let d = r.next_refresh(Duration::from_secs(0));
            assert!(d <= Duration::from_secs(1) && d >= Duration::from_millis(900));
            let d = r.next_refresh(Duration::from_secs(3600));
            assert!(d <= Duration::from_secs(30) && d >= Duration::from_secs(27));
        }
    }
}
