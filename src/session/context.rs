//! What every session shares and reads per use: per-client limits, the settings a reload may
//! replace ([`Dynamic`], swapped whole), and the shared parts ([`Context`]: the worker's
//! backend pool, the topology, the client registry, the hold count, scripts seen, the
//! authentication limiter).

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::registry::Registry;
use super::scripts;
use crate::auth::Users;
use crate::backend::Pool;
use crate::failover::Signals;
use crate::resp::FrameLimits;
use crate::topology::TopologyHandle;

/// Per-client limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Frame size limits.
    pub frames: FrameLimits,
    /// Largest single command accepted (Redis `client-query-buffer-limit`).
    pub query_buffer: usize,
    /// Replies buffered for a client that does not read them (normal clients).
    pub output_buffer: usize,
    /// The same for subscribers.
    pub pubsub_output_buffer: usize,
    /// Dispatches in flight before the session stops reading.
    pub max_in_flight: usize,
}

/// Settings a reload (SIGHUP) may change; sessions read them per use.
#[derive(Debug)]
pub struct Dynamic {
    /// Proxy users.
    pub users: Users,
    /// Guarded commands the operator allowed (`CONFIG`, `CONFIG|SET`, ...).
    pub allow: HashSet<String>,
    /// How long commands wait for a master during a change; `None`: as long as the authority
    /// needs to promote a replica (derived by the failover task), or the default before that
    /// is known.
    pub hold_timeout: Option<Duration>,
    /// Clients that may wait at once.
    pub max_held_clients: usize,
    /// Reads while the write lease is lapsed go to the last verified master.
    pub stale_reads: bool,
    /// A started command must be complete within this long.
    pub frame_timeout: Duration,
    /// Idle clients are closed after this long (zero: never).
    pub idle_timeout: Duration,
}

/// What every session shares.
#[derive(Debug)]
pub struct Context {
    /// Limits.
    pub limits: Limits,
    /// Backend connections.
    pub pool: Arc<Pool>,
    /// Current topology.
    pub topology: Arc<TopologyHandle>,
    /// Settings a reload may change (replaced whole).
    pub dynamic: Arc<ArcSwap<Dynamic>>,
    /// Connected clients.
    pub registry: Arc<Registry>,
    /// How long SELECT waits to learn whether the database exists.
    pub select_timeout: Duration,
    /// Where demotion signals go (the failover task).
    pub signals: Signals,
    /// Clients waiting now.
    pub held: Arc<AtomicUsize>,
    /// Script bodies seen, for reloading after a failover.
    pub scripts: Arc<scripts::Scripts>,
    /// Failed authentications per client address.
    pub auth_limiter: Arc<crate::auth::AuthLimiter>,
}

impl Context {
    /// The same context for a worker with its own pool of backend connections.
    pub fn with_pool(&self, pool: Arc<Pool>) -> Self {
        Self {
            limits: self.limits,
            pool,
            topology: Arc::clone(&self.topology),
            dynamic: Arc::clone(&self.dynamic),
            registry: Arc::clone(&self.registry),
            select_timeout: self.select_timeout,
            signals: self.signals.clone(),
            held: Arc::clone(&self.held),
            scripts: Arc::clone(&self.scripts),
            auth_limiter: Arc::clone(&self.auth_limiter),
        }
    }
}
