//! Wiring: builds every long-lived part from a validated configuration, starts the tasks, and
//! runs the signal handling. Tasks: one worker thread per core for clients (accept loop,
//! sessions, their backend connections); on the control runtime, the DNS watches, one probe per
//! node, the Sentinel watchers, the failover task and the admin endpoint. The failover task
//! ending unexpectedly is fatal: a silently dead failover task would look healthy while the
//! topology froze.
//!
//! Signals: SIGTERM/SIGINT drain (unready at once, serve on for the drain delay, stop
//! accepting, let in-flight commands finish under the grace period, exit); SIGHUP reloads the
//! configuration file, applying what can change without re-binding ([`reload`]).

mod durability;
mod reload;
mod settings;
mod users;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin};
use crate::backend::{BackendAuth, Dialer, LeaseBoard, Liveness, Pool, Pools};
use crate::config::{Authority, Config};
use crate::failover::lease::LeaseSettings;
use crate::failover::operate::Operator;
use crate::failover::{Failover, Reach, Settings, Signals};
use crate::session::scripts::Scripts;
use crate::session::{registry::Registry, Context, Dynamic};
use crate::shutdown::{self, Drain, DrainTrigger, Tasks};
use crate::tls::{Acceptor, NodeTlsSet};
use crate::topology::discovery::{DnsSettings, Resolver};
use crate::topology::health::HealthConfig;
use crate::topology::sentinel::SentinelSettings;
use crate::topology::TopologyHandle;
use crate::workers::{self, Job, Workers};
use settings::{dynamic, hold_timeout, lease_enforced, limits, pool_config, worker_count};
use users::build_users;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The DNS resolver could not be set up.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// A user cannot be built: a malformed password digest, or `commands` rules that do
    /// not parse (`setting` names the key).
    #[error("{setting}: {reason}")]
    User { setting: String, reason: String },
    /// TLS files cannot be used.
    #[error("{setting}: {source}")]
    Tls {
        setting: String,
        source: crate::tls::TlsError,
    },
}

/// A started proxy.
#[derive(Debug)]
pub struct Running {
    /// Address clients connect to (the bound one, for port 0).
    pub addr: SocketAddr,
    /// The separate TLS address, when configured (bound).
    pub tls_addr: Option<SocketAddr>,
    /// Admin address, when served.
    pub admin: Option<SocketAddr>,
    /// Shared state of the first worker, for inspection.
    pub ctx: Arc<Context>,
    signals: Signals,
    unready: DrainTrigger,
    drain: DrainTrigger,
    tasks: Tasks,
    stop: CancellationToken,
    workers: Workers,
    cfg: Config,
    /// Credentials on Redis nodes (a reload keeps them: probes and pools use them).
    backend: Arc<BackendAuth>,
    /// TLS towards the nodes, per site.
    node_tls: Arc<NodeTlsSet>,
    /// Every worker's backend connections (a reload changes their settings).
    pools: Pools,
    /// The client-side TLS acceptor (a reload may replace its files).
    acceptor: Option<Arc<Acceptor>>,
}

/// Checks what a start would read besides the configuration file: users' digests and every
/// TLS file (for `--check`).
pub fn check(cfg: &Config) -> Result<(), StartError> {
    build_users(cfg, &Arc::new(BackendAuth::default()))?;
    node_tls(cfg, None)?;
    if let Some(t) = &cfg.tls {
        Acceptor::new(t).map_err(|source| StartError::Tls {
            setting: "tls".into(),
            source,
        })?;
    }
    Ok(())
}

/// Starts the proxy: binds, starts probing, accepting and the admin endpoint.
pub async fn start(cfg: &Config, metrics: Option<PrometheusHandle>) -> Result<Running, StartError> {
    let backend = Arc::new(BackendAuth {
        user: cfg.backend.user.clone(),
        password: cfg.backend.password.clone(),
    });
    let pool_cfg = pool_config(cfg, &backend);
    let dialer = pool_cfg.dialer;
    let threads = worker_count(cfg.threads);
    let dedicated = Arc::new(Semaphore::new(cfg.backend.max_dedicated));
    let leases = LeaseBoard::new(lease_enforced(&cfg.failover));
    let liveness = Liveness::new();
    let pools = Pools(
        (0..threads)
            .map(|_| {
                let boards = (Arc::clone(&leases), Arc::clone(&liveness));
                Pool::with_boards(pool_cfg.clone(), Arc::clone(&dedicated), boards)
            })
            .collect(),
    );
    let node_tls = Arc::new(node_tls(cfg, None)?);
    let acceptor = match &cfg.tls {
        Some(t) => Some(Arc::new(Acceptor::new(t).map_err(|source| {
            StartError::Tls {
                setting: "tls".into(),
                source,
            }
        })?)),
        None => None,
    };
    let topology = TopologyHandle::new();
    let stop = CancellationToken::new();
    let reach_tls = Arc::clone(&node_tls);
    let signals = start_failover(cfg, &topology, &pools, dialer, &backend, reach_tls, &stop)?;
    let base = Context {
        limits: limits(cfg),
        pool: Arc::clone(&pools.0[0]),
        topology: Arc::clone(&topology),
        dynamic: Arc::new(ArcSwap::from_pointee(dynamic(cfg, &backend)?)),
        registry: Arc::new(Registry::default()),
        select_timeout: cfg.backend.connect_timeout + cfg.backend.handshake_timeout,
        signals: signals.clone(),
        held: Arc::new(AtomicUsize::new(0)),
        scripts: Arc::new(Scripts::default()),
        auth_limiter: Arc::new(crate::auth::AuthLimiter::new(cfg.auth.limit)),
    };
    let bind_err = |addr| move |source| StartError::Bind { addr, source };
    let (listeners, addr, tls_addr) = bind_all(cfg, threads, acceptor.clone())?;
    let (drain, drain_rx) = shutdown::drain();
    let (unready, unready_rx) = shutdown::drain();
    let tasks = Tasks::new();
    let jobs: Vec<Job> = listeners
        .into_iter()
        .zip(&pools.0)
        .map(|(listeners, pool)| Job {
            listeners,
            ctx: Arc::new(base.with_pool(Arc::clone(pool))),
        })
        .collect();
    let ctx = Arc::clone(&jobs[0].ctx);
    let permits = Arc::new(Semaphore::new(cfg.limits.max_clients));
    let workers =
        Workers::spawn(jobs, permits, &drain_rx, &tasks, &stop).map_err(bind_err(cfg.listen))?;
    durability::spawn_warnings(
        Arc::clone(&topology),
        Arc::clone(&base.dynamic),
        stop.clone(),
    );
    let admin = start_admin(
        cfg,
        (&topology, &base.dynamic),
        metrics,
        unready_rx,
        &signals,
        dialer,
        &backend,
        &stop,
    )
    .await?;
    tracing::info!(listen = %addr, tls = tls_label(cfg, tls_addr), threads, admin = admin.map(|a| a.to_string()).unwrap_or_default(), "accepting clients");
    Ok(Running {
        addr,
        tls_addr,
        admin,
        ctx,
        signals,
        unready,
        drain,
        tasks,
        stop,
        workers,
        cfg: cfg.clone(),
        backend,
        node_tls,
        pools,
        acceptor,
    })
}

/// One set of listening sockets per worker: `listen` (TLS when `[tls]` has no address of
/// its own) and the separate TLS address if any. Returns them with the bound addresses.
#[allow(clippy::type_complexity)]
fn bind_all(
    cfg: &Config,
    threads: usize,
    acceptor: Option<Arc<Acceptor>>,
) -> Result<
    (
        Vec<Vec<(std::net::TcpListener, Option<Arc<Acceptor>>)>>,
        SocketAddr,
        Option<SocketAddr>,
    ),
    StartError,
> {
    let bind_err = |addr| move |source| StartError::Bind { addr, source };
    let separate = cfg.tls.as_ref().and_then(|t| t.listen);
    let main_tls = if separate.is_some() {
        None
    } else {
        acceptor.clone()
    };
    let (main, addr) = workers::bind(cfg.listen, threads).map_err(bind_err(cfg.listen))?;
    let mut per_worker: Vec<Vec<_>> = main
        .into_iter()
        .map(|l| vec![(l, main_tls.clone())])
        .collect();
    let mut tls_addr = None;
    if let Some(t) = separate {
        let (tls, bound) = workers::bind(t, threads).map_err(bind_err(t))?;
        for (w, l) in per_worker.iter_mut().zip(tls) {
            w.push((l, acceptor.clone()));
        }
        tls_addr = Some(bound);
    }
    Ok((per_worker, addr, tls_addr))
}

/// What the start-up log line says about TLS.
fn tls_label(cfg: &Config, tls_addr: Option<SocketAddr>) -> String {
    match (&cfg.tls, tls_addr) {
        (None, _) => "off".into(),
        (Some(_), Some(a)) => format!("on {a}"),
        (Some(t), None) if t.client_ca.is_some() => {
            "on listen, client certificates required".into()
        }
        (Some(_), None) => "on listen".into(),
    }
}

/// The TLS connectors towards the nodes, reusing `prev`'s where settings did not change.
fn node_tls(cfg: &Config, prev: Option<&NodeTlsSet>) -> Result<NodeTlsSet, StartError> {
    NodeTlsSet::build(cfg.backend.tls.as_ref(), &cfg.sites, prev)
        .map_err(|(setting, source)| StartError::Tls { setting, source })
}

fn start_failover(
    cfg: &Config,
    topology: &Arc<TopologyHandle>,
    pools: &Pools,
    dialer: Dialer,
    backend: &BackendAuth,
    tls: Arc<NodeTlsSet>,
    stop: &CancellationToken,
) -> Result<Signals, StartError> {
    let resolver = Resolver::new(DnsSettings {
        nameservers: cfg.dns.nameservers.clone(),
        min_ttl: cfg.dns.min_ttl,
        max_ttl: cfg.dns.max_ttl,
        retry: cfg.dns.retry,
        timeout: cfg.dns.timeout,
    })
    .map_err(StartError::Resolver)?;
    let health = HealthConfig {
        interval: cfg.health.interval,
        timeout: cfg.health.timeout,
        rise: cfg.health.rise,
        fall: cfg.health.fall,
    };
    let sentinel = match &cfg.failover.authority {
        Authority::Sentinel { master_name } => Some(SentinelSettings {
            master_name: master_name.clone(),
            user: cfg.failover.sentinel_user.clone(),
            password: cfg.failover.sentinel_password.clone(),
            interval: cfg.health.interval,
            timeout: cfg.health.timeout,
            lease_pace: Arc::default(),
        }),
        _ => None,
    };
    let reach = Reach {
        resolver,
        dialer,
        auth: backend.clone(),
        health,
        sentinel,
        tls,
    };
    let settings = Settings {
        authority: cfg.failover.authority.clone(),
        failback_after: cfg.failover.failback_after,
        interval: cfg.health.interval,
        learn_nodes: cfg.failover.learn_nodes,
        lease: LeaseSettings {
            configured: cfg.failover.lease,
            promotion_delay: cfg.failover.promotion_delay,
            witnesses: cfg.failover.witnesses.clone(),
        },
        hold_timeout: hold_timeout(&cfg.failover),
    };
    let leases = Arc::clone(pools.0[0].leases());
    let (failover, signals) = Failover::new(
        Arc::clone(topology),
        (pools.clone(), leases),
        cfg.sites.clone(),
        settings,
        reach,
        stop,
    );
    let failover_stop = stop.clone();
    tokio::spawn(async move {
        failover.run(failover_stop.clone()).await;
        if !failover_stop.is_cancelled() {
            tracing::error!("failover task ended unexpectedly; exiting");
            std::process::exit(70);
        }
    });
    Ok(signals)
}

#[allow(clippy::too_many_arguments)]
async fn start_admin(
    cfg: &Config,
    (topology, dynamic): (&Arc<TopologyHandle>, &Arc<ArcSwap<Dynamic>>),
    metrics: Option<PrometheusHandle>,
    unready: Drain,
    signals: &Signals,
    dialer: Dialer,
    backend: &BackendAuth,
    stop: &CancellationToken,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(addr) = cfg.admin else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let operator = Operator {
        topology: Arc::clone(topology),
        signals: signals.clone(),
        dialer,
        auth: backend.clone(),
        authority: cfg.failover.authority.clone(),
        sentinel_auth: cfg
            .failover
            .sentinel_password
            .clone()
            .map(|pw| (cfg.failover.sentinel_user.clone(), pw)),
    };
    let loopback = addr.ip().is_loopback();
    if cfg.admin_token.is_none() && !loopback {
        tracing::warn!(admin = %addr, "{}", admin::OPERATIONS_NEED_TOKEN);
    }
    let admin = Admin {
        topology: Arc::clone(topology),
        dynamic: Arc::clone(dynamic),
        metrics,
        drain: unready,
        operator,
        token: cfg.admin_token.clone(),
        loopback,
    };
    tokio::spawn(admin::serve(listener, admin, stop.clone()));
    Ok(Some(bound))
}

impl Running {
    /// Drains: unready at once, serves on for the drain delay, stops accepting, lets sessions
    /// finish what is in flight (bounded by the grace period), then stops everything.
    pub async fn shutdown(self) {
        self.unready.trigger();
        if !self.cfg.shutdown.drain_delay.is_zero() {
            tracing::info!(delay = ?self.cfg.shutdown.drain_delay, "unready; serving until the drain delay ends");
            tokio::time::sleep(self.cfg.shutdown.drain_delay).await;
        }
        self.drain.trigger();
        self.tasks.close();
        let clients = self.ctx.registry.len();
        let grace = self.cfg.shutdown.grace;
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(clients = self.ctx.registry.len(), grace = ?grace, "grace period over; closing remaining clients");
        } else {
            tracing::info!(clients, "all clients finished");
        }
        self.stop.cancel();
        let workers = self.workers;
        // The worker threads end as soon as they see `stop`; joining them off the runtime
        // keeps this task from blocking it.
        let _ = tokio::task::spawn_blocking(move || workers.join()).await;
    }
}

/// Runs until SIGTERM or SIGINT; on SIGHUP reloads the configuration `cli` names (its flags
/// still override the file, as at start).
pub async fn run(
    cfg: Config,
    cli: &crate::config::cli::Cli,
    metrics: Option<PrometheusHandle>,
) -> Result<(), StartError> {
    let mut running = start(&cfg, metrics).await?;
    loop {
        match shutdown::signal().await {
            "SIGHUP" => reload_from(&mut running, cli),
            sig => {
                tracing::info!(signal = sig, "shutting down");
                break;
            }
        }
    }
    running.shutdown().await;
    Ok(())
}

fn reload_from(running: &mut Running, cli: &crate::config::cli::Cli) {
    if cli.config.is_none() {
        tracing::warn!("SIGHUP without --config: nothing to reload");
        return;
    }
    match cli.load() {
        Ok(next) => {
            if let Err(e) = running.reload(next) {
                tracing::error!(error = %e, "reload rejected; keeping the running configuration");
            }
        }
        Err(e) => {
            tracing::error!(problems = %e.to_string().trim_end(), "reload rejected; keeping the running configuration")
        }
    }
}
