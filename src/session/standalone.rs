//! A context with no backend nodes, for the fuzz harness and tests.
//!
//! The topology says no master can be used, so every command that needs one is answered with
//! an error at once and nothing is ever dialled; the commands the proxy answers itself (PING,
//! HELLO, AUTH, CLIENT, MULTI bookkeeping, ...) behave as in production. Demotion signals go
//! nowhere: nobody receives them.

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, Semaphore};

use super::registry::Registry;
use super::scripts::Scripts;
use super::{Context, Dynamic, Limits};
use crate::auth::{AuthLimiter, User, Users};
use crate::backend::{BackendAuth, Dialer, Pool, PoolConfig};
use crate::config::LimitSettings;
use crate::failover::Signals;
use crate::topology::{RouteState, Topology, TopologyHandle};

impl Context {
    /// A context with no backend nodes, for the fuzz harness and tests: an open default user,
    /// a topology without master (commands that need one fail at once, with a zero hold
    /// timeout should a caller publish a holding topology instead), and an empty pool.
    pub fn standalone(limits: Limits) -> Self {
        let topology = TopologyHandle::new();
        topology.publish(Topology {
            epoch: 1,
            state: RouteState::NoMaster,
            reason: crate::topology::Reason::NoNodes,
            ..Topology::initial()
        });
        let backend = Arc::new(BackendAuth::default());
        let dynamic = Dynamic {
            users: Users::new(User::open("default", backend), Vec::new()),
            allow: HashSet::new(),
            hold_timeout: Some(Duration::ZERO),
            max_held_clients: usize::MAX,
            stale_reads: false,
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::ZERO,
        };
        let dialer = Dialer {
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
        };
        let pool_cfg = PoolConfig {
            lanes: 1,
            dialer,
            reply_timeout: Duration::from_secs(1),
            max_dedicated: 1,
            dedicated_idle: Duration::from_secs(1),
            verify: None,
        };
        // The receiving end is dropped: signals are discarded as if the channel were full.
        let (signals, _) = mpsc::channel(1);
        Self {
            limits,
            pool: Pool::new(pool_cfg, Arc::new(Semaphore::new(1))),
            topology,
            dynamic: Arc::new(ArcSwap::from_pointee(dynamic)),
            registry: Arc::new(Registry::default()),
            select_timeout: Duration::from_secs(1),
            signals: Signals(signals),
            held: Arc::new(AtomicUsize::new(0)),
            scripts: Arc::new(Scripts::default()),
            auth_limiter: Arc::new(AuthLimiter::new(LimitSettings::default())),
        }
    }
}
