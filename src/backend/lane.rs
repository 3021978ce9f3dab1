//! Lanes: the shared, pipelined connections of one pool key. A lane's task opens its
//! connection, drives it until it fails or is retired, and publishes its state, so that the
//! pool can tell a key that cannot connect (and back off) from one whose connection simply
//! ended (and open a new one at once).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{Driver, Outgoing, Sender};
use super::error::ConnError;
use super::key::{handshake_for, next_conn_id, PoolConfig, PoolKey, CHANNEL_DEPTH};
use super::lease::Lease;
use super::liveness::NodeLiveness;

/// First and largest pause after a failed connect before a key is tried again.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Connection state of a lane.
#[derive(Debug, Clone)]
pub enum LaneState {
    /// Opening its connection.
    Connecting,
    /// Serving.
    Ready,
    /// Could not open.
    Failed(Arc<ConnError>),
    /// Served, then ended.
    Ended(Arc<ConnError>),
}

/// A shared, pipelined connection to one key's node.
#[derive(Debug, Clone)]
pub struct Lane {
    id: u64,
    sender: Sender,
    state: watch::Receiver<LaneState>,
    pub(super) retired: CancellationToken,
}

/// The lanes of one key, and its connect backoff.
#[derive(Debug)]
pub(super) struct LaneSet {
    pub(super) lanes: Vec<Option<Lane>>,
    pub(super) next: AtomicUsize,
    /// Not before this instant may a new connection be opened for the key.
    pub(super) backoff_until: Option<Instant>,
    backoff: Duration,
    pub(super) last_error: Option<Arc<ConnError>>,
    /// When a session last asked for a lane of the key.
    pub(super) used: Instant,
}

// === impl Lane ===

impl Lane {
    /// Connection id (for [`Inbox::busy_elsewhere`](super::Inbox::busy_elsewhere)).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends a batch (waits while the lane's queue is full). On a lane that ended, the batch
    /// fails as not sent.
    pub async fn send(&self, out: Outgoing) {
        self.sender.send(out).await;
    }

    /// A slot for one batch if the lane's queue has room now (see [`Sender::try_reserve`]).
    pub fn try_reserve(&self) -> Option<mpsc::Permit<'_, Outgoing>> {
        self.sender.try_reserve()
    }

    /// Whether the lane can take no more batches (ended or retired).
    pub fn is_closed(&self) -> bool {
        self.retired.is_cancelled() || self.sender.is_closed()
    }

    /// Waits (at most `deadline`) for the lane's connection to open; returns the failure if it
    /// did not.
    pub async fn ready(&self, deadline: Duration) -> Result<(), Arc<ConnError>> {
        let mut rx = self.state.clone();
        let settled = tokio::time::timeout(deadline, async {
            let _ = rx.wait_for(|s| !matches!(s, LaneState::Connecting)).await;
        });
        let _ = settled.await;
        let state = self.state.borrow().clone();
        match state {
            LaneState::Failed(e) | LaneState::Ended(e) => Err(e),
            _ => Ok(()),
        }
    }
}

// === impl LaneSet ===

impl LaneSet {
    pub(super) fn new(size: usize) -> Self {
        Self {
            lanes: vec![None; size.max(1)],
            next: AtomicUsize::new(0),
            backoff_until: None,
            backoff: BACKOFF_MIN,
            last_error: None,
            used: Instant::now(),
        }
    }

    /// Records the outcome of the key's connects seen so far (from the lanes' states): a
    /// failed connect starts (or extends) a backoff, a successful one ends it. Connections that
    /// served and then ended do not back off: the next request simply opens a new one.
    pub(super) fn note_failures(&mut self) {
        let failed = self
            .lanes
            .iter()
            .flatten()
            .find_map(|l| match &*l.state.borrow() {
                LaneState::Failed(e) if l.sender.is_closed() => Some(Arc::clone(e)),
                _ => None,
            });
        let ready = self
            .lanes
            .iter()
            .flatten()
            .any(|l| matches!(&*l.state.borrow(), LaneState::Ready));
        if ready {
            self.backoff = BACKOFF_MIN;
            self.last_error = None;
        } else if let Some(e) = failed {
            if self
                .last_error
                .as_ref()
                .is_none_or(|old| !Arc::ptr_eq(old, &e))
            {
                self.backoff_until = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                self.last_error = Some(e);
            }
        }
    }
}

pub(super) fn spawn_lane(
    key: PoolKey,
    cfg: PoolConfig,
    superseded: CancellationToken,
    lease: Option<Arc<Lease>>,
    alive: Arc<NodeLiveness>,
) -> Lane {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let (state_tx, state_rx) = watch::channel(LaneState::Connecting);
    let retired = CancellationToken::new();
    let tokens = (retired.clone(), superseded);
    tokio::spawn(drive_lane(key, cfg, rx, state_tx, tokens, (lease, alive)));
    Lane {
        id: next_conn_id(),
        sender: Sender::new(tx),
        state: state_rx,
        retired,
    }
}

/// Opens one lane connection and drives it until it fails or is retired. Dropping `rx` at
/// the end fails everything still queued as not sent.
async fn drive_lane(
    key: PoolKey,
    cfg: PoolConfig,
    mut rx: mpsc::Receiver<Outgoing>,
    state: watch::Sender<LaneState>,
    (retired, superseded): (CancellationToken, CancellationToken),
    (lease, alive): (Option<Arc<Lease>>, Arc<NodeLiveness>),
) {
    let hs = handshake_for(&key, &cfg);
    let opened = tokio::select! {
        r = cfg.dialer.open(&key.node.endpoint, &hs) => r,
        _ = retired.cancelled() => Err(ConnError::Retired),
    };
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(node = %key.node.endpoint, error = %e, "backend connection failed");
            let _ = state.send(LaneState::Failed(Arc::new(e)));
            return;
        }
    };
    let _ = state.send(LaneState::Ready);
    crate::metrics::backend_connection("lane", 1.0);
    let driver = Driver::new(opened.io, &mut rx, cfg.reply_timeout, false)
        .retire_on(retired.clone())
        .abort_on(superseded)
        .lease_on(lease)
        .liveness_on(alive);
    let end = match driver.run().await {
        Ok(()) => ConnError::Retired,
        Err(e) => {
            tracing::warn!(node = %key.node.endpoint, error = %e, "backend connection lost");
            e
        }
    };
    crate::metrics::backend_connection("lane", -1.0);
    // Close the channel before publishing the end, so that nobody who sees the failure can
    // still queue on this lane.
    rx.close();
    let _ = state.send(LaneState::Ended(Arc::new(end)));
}
