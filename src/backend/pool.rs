//! Backend connections, by key (node identity, database, protocol, backend credentials).
//!
//! - **Lanes** carry ordinary commands of many clients: a few per key, each one connection.
//!   A session sticks to one lane while it uses that key, which keeps its commands in order.
//!   A lane that fails is never reconnected in place: it ends, everything queued on it is
//!   failed as not sent, and the next request for the key gets a new lane. That way a
//!   command can never execute on a new connection ahead of an earlier command of the same
//!   client that was lost with the old one. After a failed connect the key backs off, and
//!   requests fail fast instead of piling up connection attempts.
//! - **Dedicated** connections carry the traffic of one client that holds server-side state
//!   (WATCH, subscriptions, MONITOR, tracking) or runs a blocking command. They are taken from
//!   an idle list or opened on demand, under a global cap, and given back only when clean.
//!
//! Retiring a node (its master role ended) stops its lanes at once: batches not yet written
//! are failed as not sent, so nothing new reaches the superseded master; written ones get
//! their replies or fail on the reply deadline.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::conn::{Driver, Outgoing, Sender};
use super::error::ConnError;
use super::handshake::Dialer;
use super::key::{
    handshake_for, next_conn_id, LaneUse, NodeId, PoolConfig, PoolKey, CHANNEL_DEPTH,
};
use super::lane::{spawn_lane, Lane, LaneSet};
use super::lease::LeaseBoard;
use super::liveness::Liveness;
use super::supersede;

/// A connection owned by one client for as long as it holds server-side state.
#[derive(Debug)]
pub struct Dedicated {
    id: u64,
    sender: Sender,
    key: PoolKey,
    /// The server's id for this connection.
    pub client_id: i64,
    _permit: OwnedSemaphorePermit,
    idle_since: Instant,
}

/// All backend connections.
#[derive(Debug)]
pub struct Pool {
    /// Settings for new connections (a reload may replace them).
    cfg: ArcSwap<PoolConfig>,
    lanes: Mutex<Lanes>,
    idle: Mutex<HashMap<PoolKey, Vec<Dedicated>>>,
    dedicated: Arc<Semaphore>,
    /// Connections by node, for supersession.
    nodes: supersede::Registry,
    /// The write lease new connections write under.
    leases: Arc<LeaseBoard>,
    /// Nodes' liveness, as their probes see it.
    liveness: Arc<Liveness>,
}

/// The lane sets by key, and when keys nobody asked for were last forgotten.
#[derive(Debug)]
struct Lanes {
    sets: HashMap<PoolKey, LaneSet>,
    swept: Instant,
}

/// A key no session asked a lane for in this long is forgotten: each distinct set of client
/// credentials (passthrough mode) has keys of its own, and a password rotated on Redis must
/// not leave the old credentials' sets behind for good. Sessions still holding one of its
/// lanes keep it until they are done; only the pool's own reference goes.
const IDLE_KEY: Duration = Duration::from_secs(600);
/// How often the sets are looked over for idle keys.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Lanes {
    /// Forgets the keys idle for `idle` or more, at most once per [`SWEEP_EVERY`] unless
    /// `force`d.
    fn sweep(&mut self, now: Instant, idle: Duration, force: bool) {
        if !force && now.duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        self.sets
            .retain(|_, set| now.duration_since(set.used) < idle);
    }
}

/// Why no lane can be had for a key right now.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub Arc<ConnError>);

// === impl Dedicated ===

impl Dedicated {
    /// Connection id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends a batch.
    pub async fn send(&self, out: Outgoing) {
        self.sender.send(out).await;
    }

    /// A slot for one batch if the queue has room now (see [`Sender::try_reserve`]).
    pub fn try_reserve(&self) -> Option<mpsc::Permit<'_, Outgoing>> {
        self.sender.try_reserve()
    }

    /// The key it was opened for.
    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    /// Whether the connection task ended.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

// === impl Pool ===

impl Pool {
    /// An empty pool. `dedicated` caps dedicated connections, shared by every pool of the
    /// process.
    pub fn new(cfg: PoolConfig, dedicated: Arc<Semaphore>) -> Arc<Self> {
        Self::with_boards(cfg, dedicated, (LeaseBoard::new(false), Liveness::new()))
    }

    /// An empty pool whose connections write only under the leases `leases` publishes, and
    /// wait for replies as long as `liveness` says their node is alive.
    pub fn with_boards(
        cfg: PoolConfig,
        dedicated: Arc<Semaphore>,
        (leases, liveness): (Arc<LeaseBoard>, Arc<Liveness>),
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg: ArcSwap::from_pointee(cfg),
            lanes: Mutex::new(Lanes {
                sets: HashMap::new(),
                swept: Instant::now(),
            }),
            idle: Mutex::new(HashMap::new()),
            dedicated,
            nodes: supersede::Registry::default(),
            leases,
            liveness,
        })
    }

    /// Where new connections find the write lease they write under.
    pub fn leases(&self) -> &Arc<LeaseBoard> {
        &self.leases
    }

    /// Where new connections find their node's liveness.
    pub fn liveness(&self) -> &Arc<Liveness> {
        &self.liveness
    }

    /// Settings for new connections.
    fn cfg(&self) -> Arc<PoolConfig> {
        self.cfg.load_full()
    }

    /// Deadlines for opening connections (also for connections opened outside the pool).
    pub fn dialer(&self) -> Dialer {
        self.cfg().dialer
    }

    /// Replaces the settings for connections opened from now on (a reload).
    pub fn set_config(&self, cfg: PoolConfig) {
        self.cfg.store(Arc::new(cfg));
    }

    fn lock_lanes(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_idle(&self) -> MutexGuard<'_, HashMap<PoolKey, Vec<Dedicated>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A lane for `key`; successive calls rotate over the key's lanes. A slot whose lane
    /// ended gets a new one, unless the key is backing off after failed connects.
    pub fn lane(&self, key: &PoolKey) -> Result<Lane, Unavailable> {
        let now = Instant::now();
        let mut lanes = self.lock_lanes();
        lanes.sweep(now, IDLE_KEY, false);
        let set = lanes
            .sets
            .entry(key.clone())
            .or_insert_with(|| LaneSet::new(self.cfg().lanes));
        set.used = now;
        set.note_failures();
        let i = set.next.fetch_add(1, Ordering::Relaxed) % set.lanes.len();
        if let Some(lane) = set.lanes[i].as_ref().filter(|l| !l.is_closed()) {
            return Ok(lane.clone());
        }
        // Prefer any live lane of the key over opening a new connection.
        if let Some(lane) = set.lanes.iter().flatten().find(|l| !l.is_closed()) {
            let lane = lane.clone();
            set.lanes[i] = Some(self.spawn_lane(key));
            return Ok(lane);
        }
        if let (Some(until), Some(err)) = (set.backoff_until, &set.last_error) {
            if Instant::now() < until {
                return Err(Unavailable(Arc::clone(err)));
            }
        }
        let lane = self.spawn_lane(key);
        set.lanes[i] = Some(lane.clone());
        Ok(lane)
    }

    fn spawn_lane(&self, key: &PoolKey) -> Lane {
        spawn_lane(
            key.clone(),
            (*self.cfg()).clone(),
            self.nodes.lane_token(&key.node),
            // Stale-read lanes write nothing (only reads are routed to them): no lease.
            if key.purpose == LaneUse::StaleReads {
                None
            } else {
                self.leases.for_node(&key.node)
            },
            self.liveness.node(key.node.endpoint.addr),
        )
    }

    /// Opens (or reuses) a dedicated connection for `key`. What arrives on it while no
    /// command is pending (pub/sub messages, invalidations) goes to the client of its latest
    /// command.
    pub async fn dedicated(&self, key: &PoolKey) -> Result<Dedicated, DedicatedError> {
        if let Some(conn) = self.take_idle(key) {
            return Ok(conn);
        }
        let permit = Arc::clone(&self.dedicated)
            .try_acquire_owned()
            .map_err(|_| DedicatedError::TooMany)?;
        let cfg = self.cfg();
        let hs = handshake_for(key, &cfg);
        let opened = cfg
            .dialer
            .open(&key.node.endpoint, &hs)
            .await
            .map_err(DedicatedError::Conn)?;
        let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
        let reply_timeout = self.cfg().reply_timeout;
        let id = next_conn_id();
        let nodes = self.nodes.clone();
        let node = Arc::clone(&key.node);
        let (abort, superseded) =
            nodes.add_dedicated(&node, id, opened.client_id, Arc::clone(&key.auth));
        let lease = self.leases.for_node(&node);
        let alive = self.liveness.node(node.endpoint.addr);
        tokio::spawn(async move {
            crate::metrics::backend_connection("dedicated", 1.0);
            let driver = Driver::new(opened.io, &mut rx, reply_timeout, true)
                .abort_on(abort)
                .lease_on(lease)
                .liveness_on(alive)
                .superseded_on(superseded);
            if let Err(e) = driver.run().await {
                tracing::debug!(error = %e, "dedicated backend connection ended");
            }
            nodes.remove_dedicated(&node, id);
            crate::metrics::backend_connection("dedicated", -1.0);
        });
        Ok(Dedicated {
            id,
            sender: Sender::new(tx),
            key: key.clone(),
            client_id: opened.client_id,
            _permit: permit,
            idle_since: Instant::now(),
        })
    }

    fn take_idle(&self, key: &PoolKey) -> Option<Dedicated> {
        let mut idle = self.lock_idle();
        let list = idle.get_mut(key)?;
        while let Some(conn) = list.pop() {
            if !conn.is_closed() && conn.idle_since.elapsed() < self.cfg().dedicated_idle {
                return Some(conn);
            }
        }
        None
    }

    /// Takes back a dedicated connection whose server-side state is clean (no subscription,
    /// no WATCH, no blocking command pending, database unchanged).
    pub fn give_back(&self, mut conn: Dedicated) {
        if conn.is_closed() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.lock_idle();
        let list = idle.entry(conn.key.clone()).or_default();
        list.retain(|c| !c.is_closed() && c.idle_since.elapsed() < self.cfg().dedicated_idle);
        list.push(conn);
    }

    /// Stops every lane and idle connection to nodes for which `keep` is false (their master
    /// role ended).
    pub fn retire_nodes(&self, keep: impl Fn(&NodeId) -> bool) {
        let mut lanes = self.lock_lanes();
        lanes.sets.retain(|key, set| {
            let k = keep(&key.node);
            if !k {
                set.lanes.iter().flatten().for_each(|l| l.retired.cancel());
            }
            k
        });
        drop(lanes);
        self.lock_idle().retain(|key, _| keep(&key.node));
    }

    /// `keep` was verified as the new master: replies from every other node are no longer
    /// awaited (see [`supersede`]).
    pub fn supersede(&self, keep: &NodeId) {
        self.nodes.supersede(keep, self.cfg().dialer);
    }

    /// Forgets a key whose connections are refused for good (a database index out of range).
    pub fn discard(&self, key: &PoolKey) {
        if let Some(set) = self.lock_lanes().sets.remove(key) {
            set.lanes.iter().flatten().for_each(|l| l.retired.cancel());
        }
    }

    /// Keys with lanes (for metrics and tests).
    pub fn lane_keys(&self) -> usize {
        self.lock_lanes().sets.len()
    }

    /// Forgets at once the keys no session asked for in `idle` (tests).
    #[cfg(test)]
    pub(super) fn forget_idle_keys(&self, idle: Duration) {
        self.lock_lanes().sweep(Instant::now(), idle, true);
    }
}

/// The pools of every worker thread (each worker keeps its connections to itself, so that a
/// connection and the clients it serves run on one thread).
#[derive(Debug, Clone)]
pub struct Pools(pub Vec<Arc<Pool>>);

impl Pools {
    /// Stops every connection, in every pool, to nodes for which `keep` is false.
    pub fn retire_nodes(&self, keep: impl Fn(&NodeId) -> bool) {
        for pool in &self.0 {
            pool.retire_nodes(&keep);
        }
    }

    /// Replaces the settings for new connections in every pool.
    pub fn set_config(&self, cfg: PoolConfig) {
        for pool in &self.0 {
            pool.set_config(cfg.clone());
        }
    }

    /// Supersedes every node but `keep`, in every pool.
    pub fn supersede(&self, keep: &NodeId) {
        for pool in &self.0 {
            pool.supersede(keep);
        }
    }
}

/// Why a dedicated connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DedicatedError {
    /// The cap on dedicated connections is reached.
    #[error("too many dedicated connections")]
    TooMany,
    /// Opening failed.
    #[error(transparent)]
    Conn(ConnError),
}
