//! Identities shared by every part of the backend: the node a connection must reach
//! ([`NodeId`]), what separates one set of connections from another ([`PoolKey`], [`LaneUse`]),
//! the settings new connections are opened with ([`PoolConfig`]), and connection ids. A leaf
//! of `backend`: the pool, its lanes and the supersede registry all read these, and this
//! module reads none of them.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::handshake::{BackendAuth, Dialer, Endpoint, Handshake};
use crate::resp::reply::Proto;

/// Batches a connection queues before senders wait.
pub(super) const CHANNEL_DEPTH: usize = 1024;

/// Source of connection ids (0 is reserved for replies the proxy makes itself).
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_conn_id() -> u64 {
    NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
}

/// A node as the pool knows it: where it is and which process it must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// Where to dial.
    pub endpoint: Endpoint,
    /// The run_id every new connection must find.
    pub run_id: Arc<str>,
}

/// What separates one set of backend connections from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolKey {
    /// The node.
    pub node: Arc<NodeId>,
    /// Selected database.
    pub db: u32,
    /// Protocol.
    pub proto: Proto,
    /// Backend credentials.
    pub auth: Arc<BackendAuth>,
    /// What these connections carry.
    pub purpose: LaneUse,
}

/// What a set of shared connections carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LaneUse {
    /// Any command.
    #[default]
    Any,
    /// Reads of clients whose writes are durable, while they have nothing in flight: no
    /// durable write, hence no `WAIT`, ever runs on these, so no read queues behind one.
    Reads,
    /// Reads served while the master's write lease is lapsed (`stale_reads = "serve"`): these
    /// connections carry no lease, and only reads are ever routed to them.
    StaleReads,
}

impl Hash for PoolKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.node.hash(state);
        self.db.hash(state);
        self.proto.hash(state);
        self.auth.user.hash(state);
        self.purpose.hash(state);
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Lanes per key.
    pub lanes: usize,
    /// Deadlines for opening connections.
    pub dialer: Dialer,
    /// How long written commands may wait for their reply on a lane.
    pub reply_timeout: Duration,
    /// Cap on dedicated connections in use or idle.
    pub max_dedicated: usize,
    /// Idle dedicated connections are closed after this long.
    pub dedicated_idle: Duration,
    /// The proxy's own credentials: a connection for other credentials checks the node's
    /// identity under these first (a client's Redis user may lack `INFO` and `ROLE`), then
    /// logs in as the client's user (`None`: every connection checks as its own user).
    pub verify: Option<Arc<BackendAuth>>,
}

pub(super) fn handshake_for<'a>(key: &'a PoolKey, cfg: &'a PoolConfig) -> Handshake<'a> {
    Handshake {
        proto: key.proto,
        db: key.db,
        auth: &key.auth,
        verify: cfg.verify.as_deref(),
        run_id: Some(&key.node.run_id),
        master: true,
    }
}
