//! Wiring: builds every long-lived part from a validated configuration, starts the tasks, and
//! runs the shutdown sequence. The tasks: one accept loop, one session per client, one probe
//! task per node, and the failover task. The failover task ending unexpectedly is fatal: a
//! silently dead failover task would look healthy while the topology froze.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::{User, Users};
use std::sync::atomic::AtomicUsize;

use crate::backend::{BackendAuth, Dialer, Pool, PoolConfig, Pools};
use crate::config::{Authority, Config, Password};
use crate::failover::{Failover, Reach, Settings};
use crate::resp::FrameLimits;
use crate::session::scripts::Scripts;
use crate::session::{registry::Registry, Context, Limits};
use crate::shutdown::{self, DrainTrigger, Tasks};
use crate::topology::discovery::{DnsSettings, Resolver};
use crate::topology::health::HealthConfig;
use crate::topology::sentinel::SentinelSettings;
use crate::topology::TopologyHandle;
use crate::workers::{self, Job, Workers};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A node name did not resolve.
    #[error("cannot resolve node {name}: {reason}")]
    Resolve { name: String, reason: String },
    /// A user's password digest is malformed.
    #[error("user {name}: {reason}")]
    User { name: String, reason: String },
}

/// A started proxy.
#[derive(Debug)]
pub struct Running {
    /// Address clients connect to (the bound one, for port 0).
    pub addr: SocketAddr,
    /// Shared state, for inspection.
    pub ctx: Arc<Context>,
    drain: DrainTrigger,
    tasks: Tasks,
    stop: CancellationToken,
    workers: Workers,
    grace: std::time::Duration,
}

/// Worker threads for `configured` (0: one per core).
fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Starts the proxy: binds, starts probing and accepting.
pub async fn start(cfg: &Config) -> Result<Running, StartError> {
    let backend = Arc::new(BackendAuth {
        user: cfg.backend.user.clone(),
        password: cfg.backend.password.clone(),
    });
    let users = build_users(cfg, &backend)?;
    let dialer = Dialer {
        connect_timeout: cfg.backend.connect_timeout,
        handshake_timeout: cfg.backend.handshake_timeout,
    };
    let threads = worker_count(cfg.threads);
    let dedicated = Arc::new(Semaphore::new(cfg.backend.max_dedicated));
    let pool_cfg = PoolConfig {
        lanes: cfg.backend.pool_size,
        dialer,
        reply_timeout: cfg.backend.reply_timeout,
        max_dedicated: cfg.backend.max_dedicated,
        dedicated_idle: cfg.backend.dedicated_idle,
    };
    let pools = Pools((0..threads).map(|_| Pool::new(pool_cfg, Arc::clone(&dedicated))).collect());
    let topology = TopologyHandle::new();
    let stop = CancellationToken::new();
    let resolver = Resolver::new(DnsSettings {
        nameservers: cfg.dns.nameservers.clone(),
        min_ttl: cfg.dns.min_ttl,
        max_ttl: cfg.dns.max_ttl,
        retry: cfg.dns.retry,
        timeout: cfg.dns.timeout,
    })
    .map_err(|reason| StartError::Resolve {
        name: "resolver".into(),
        reason,
    })?;
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
        }),
        _ => None,
    };
    let reach = Reach {
        resolver,
        dialer,
        auth: (*backend).clone(),
        health,
        sentinel,
    };
    let settings = Settings {
        authority: cfg.failover.authority.clone(),
        failback_after: cfg.failover.failback_after,
        interval: cfg.health.interval,
        learn_nodes: cfg.failover.learn_nodes,
    };
    let (failover, signals) = Failover::new(
        Arc::clone(&topology),
        pools.clone(),
        cfg.sites.clone(),
        settings,
        reach,
        &stop,
    );
    let failover_stop = stop.clone();
    tokio::spawn(async move {
        failover.run(failover_stop.clone()).await;
        if !failover_stop.is_cancelled() {
            tracing::error!("failover task ended unexpectedly; exiting");
            std::process::exit(70);
        }
    });

    let base = Context {
        limits: Limits {
            frames: FrameLimits {
                max_bulk: cfg.limits.max_bulk_len,
                max_args: cfg.limits.max_args,
            },
            query_buffer: cfg.limits.query_buffer,
            output_buffer: cfg.limits.output_buffer,
            pubsub_output_buffer: cfg.limits.pubsub_output_buffer,
            max_in_flight: cfg.limits.max_in_flight,
        },
        pool: Arc::clone(&pools.0[0]),
        topology,
        users: Arc::new(ArcSwap::from_pointee(users)),
        allow: Arc::new(cfg.allow_commands.iter().cloned().collect()),
        registry: Arc::new(Registry::default()),
        select_timeout: cfg.backend.connect_timeout + cfg.backend.handshake_timeout,
        signals,
        hold_timeout: cfg.failover.hold_timeout,
        max_held_clients: cfg.failover.max_held_clients,
        held: Arc::new(AtomicUsize::new(0)),
        scripts: Arc::new(Scripts::default()),
    };

    let bind_err = |source| StartError::Bind {
        addr: cfg.listen,
        source,
    };
    let (listeners, addr) = workers::bind(cfg.listen, threads).map_err(bind_err)?;
    let (drain, drain_rx) = shutdown::drain();
    let tasks = Tasks::new();
    let jobs: Vec<Job> = listeners
        .into_iter()
        .zip(&pools.0)
        .map(|(listener, pool)| Job {
            listener,
            ctx: Arc::new(base.with_pool(Arc::clone(pool))),
        })
        .collect();
    let ctx = Arc::clone(&jobs[0].ctx);
    let permits = Arc::new(Semaphore::new(cfg.limits.max_clients));
    let workers = Workers::spawn(jobs, permits, &drain_rx, &tasks, &stop).map_err(bind_err)?;
    tracing::info!(listen = %addr, threads, "accepting clients");
    Ok(Running {
        addr,
        ctx,
        drain,
        tasks,
        stop,
        workers,
        grace: cfg.shutdown.grace,
    })
}

impl Running {
    /// Stops accepting, lets sessions finish what is in flight (bounded by the grace period),
    /// then stops the background tasks.
    pub async fn shutdown(self) {
        self.drain.trigger();
        self.tasks.close();
        let clients = self.ctx.registry.len();
        if tokio::time::timeout(self.grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                clients = self.ctx.registry.len(),
                grace = ?self.grace,
                "grace period over; closing remaining clients"
            );
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

/// Runs until SIGTERM or SIGINT, then shuts down.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    let running = start(&cfg).await?;
    let sig = shutdown::signal().await;
    tracing::info!(signal = sig, "shutting down");
    running.shutdown().await;
    Ok(())
}

fn build_users(cfg: &Config, backend: &Arc<BackendAuth>) -> Result<Users, StartError> {
    let make = |name: &str, pw: &Password, backend: Arc<BackendAuth>| -> Result<User, StartError> {
        match pw {
            Password::None => Ok(User::open(name, backend)),
            Password::Plain(s) => Ok(User::with_password(name, s.expose(), backend)),
            Password::Sha256(h) => {
                User::with_digest(name, h, backend).map_err(|reason| StartError::User {
                    name: name.to_string(),
                    reason,
                })
            }
        }
    };
    let default = make("default", &cfg.auth.password, Arc::clone(backend))?;
    let mut named = Vec::new();
    for u in &cfg.auth.users {
        let b = if u.backend_user.is_some() || u.backend_password.is_some() {
            Arc::new(BackendAuth {
                user: u.backend_user.clone(),
                password: u.backend_password.clone(),
            })
        } else {
            Arc::clone(backend)
        };
        named.push(make(&u.name, &u.password, b)?);
    }
    Ok(Users::new(default, named))
}
