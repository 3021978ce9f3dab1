//! What happens to connections of a master that another node replaced. While the proxy only
//! holds (the master is in doubt), written commands keep waiting for their replies: the node
//! may still answer. Once a new master is verified, nothing from the old one is awaited any
//! longer: after a short grace for replies already on their way, shared connections fail
//! what they still wait for (the client learns the outcome is unknown now, not after the
//! reply deadline), and clients blocked there (`BLPOP` and the
//! like) are released with `CLIENT UNBLOCK ... ERROR`, so that Redis answers `-UNBLOCKED` and
//! the session re-issues the command on the new master. If the old node cannot be reached to
//! do that, its dedicated connections are failed too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::handshake::{read_reply, Dialer, Handshake};
use super::key::NodeId;
use super::{BackendAuth, ConnError};
use crate::resp::reply::Proto;
use crate::resp::Request;

/// How long replies already on their way from a superseded master are still awaited.
const REPLY_GRACE: Duration = Duration::from_millis(100);

/// The connections of one node that supersession must reach.
#[derive(Debug, Default)]
pub(super) struct NodeConns {
    /// Shared connections give up their pending replies.
    pub(super) lanes: CancellationToken,
    /// Dedicated connections give up theirs (only when blocked clients cannot be released).
    pub(super) dedicated: CancellationToken,
    /// Live dedicated connections: connection id → (Redis client id, credentials).
    pub(super) clients: HashMap<u64, (i64, Arc<BackendAuth>)>,
    /// Set once the node is superseded: from then on, `-UNBLOCKED ... via CLIENT UNBLOCK` on
    /// its dedicated connections is the proxy's own release (re-issue the command), not a
    /// client's `CLIENT UNBLOCK` (the command's answer).
    pub(super) superseded: Arc<std::sync::atomic::AtomicBool>,
}

/// Every node's connections, shared with the connection tasks (which deregister on exit).
#[derive(Debug, Default, Clone)]
pub(super) struct Registry(Arc<Mutex<HashMap<Arc<NodeId>, NodeConns>>>);

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<NodeId>, NodeConns>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token shared connections to `node` watch.
    pub(super) fn lane_token(&self, node: &Arc<NodeId>) -> CancellationToken {
        self.lock()
            .entry(Arc::clone(node))
            .or_default()
            .lanes
            .clone()
    }

    /// Records a dedicated connection; returns the token it watches.
    pub(super) fn add_dedicated(
        &self,
        node: &Arc<NodeId>,
        id: u64,
        client_id: i64,
        auth: Arc<BackendAuth>,
    ) -> (CancellationToken, Arc<std::sync::atomic::AtomicBool>) {
        let mut map = self.lock();
        let entry = map.entry(Arc::clone(node)).or_default();
        entry.clients.insert(id, (client_id, auth));
        (entry.dedicated.clone(), Arc::clone(&entry.superseded))
    }

    /// Forgets a dedicated connection that ended.
    pub(super) fn remove_dedicated(&self, node: &Arc<NodeId>, id: u64) {
        if let Some(entry) = self.lock().get_mut(node) {
            entry.clients.remove(&id);
        }
    }

    /// `keep` is the verified master: every other node's connections are superseded.
    pub(super) fn supersede(&self, keep: &NodeId, dialer: Dialer) {
        let gone: Vec<(Arc<NodeId>, NodeConns)> = {
            let mut map = self.lock();
            let others: Vec<Arc<NodeId>> =
                map.keys().filter(|n| n.as_ref() != keep).cloned().collect();
            others
                .into_iter()
                .filter_map(|n| map.remove(&n).map(|c| (n, c)))
                .collect()
        };
        for (node, conns) in gone {
            conns
                .superseded
                .store(true, std::sync::atomic::Ordering::Release);
            // A reply already on its way still wins over an error: give it a moment.
            let lanes = conns.lanes.clone();
            tokio::spawn(async move {
                tokio::time::sleep(REPLY_GRACE).await;
                lanes.cancel();
            });
            if conns.clients.is_empty() {
                continue;
            }
            let clients: Vec<(i64, Arc<BackendAuth>)> = conns.clients.into_values().collect();
            tokio::spawn(release(dialer, node, clients, conns.dedicated));
        }
    }
}

/// Releases the clients blocked on `node`; fails its dedicated connections if it cannot.
async fn release(
    dialer: Dialer,
    node: Arc<NodeId>,
    clients: Vec<(i64, Arc<BackendAuth>)>,
    dedicated: CancellationToken,
) {
    let mut by_auth: Vec<(Arc<BackendAuth>, Vec<i64>)> = Vec::new();
    for (id, auth) in clients {
        match by_auth.iter_mut().find(|(a, _)| *a == auth) {
            Some((_, ids)) => ids.push(id),
            None => by_auth.push((auth, vec![id])),
        }
    }
    for (auth, ids) in by_auth {
        if let Err(e) = unblock(dialer, &node, &auth, &ids).await {
            tracing::info!(node = %node.endpoint, error = %e, "cannot release clients blocked on the old master; failing its connections");
            dedicated.cancel();
            return;
        }
    }
}

/// `CLIENT UNBLOCK id ERROR` for each of `ids`, on one new connection.
async fn unblock(
    dialer: Dialer,
    node: &NodeId,
    auth: &BackendAuth,
    ids: &[i64],
) -> Result<(), ConnError> {
    let hs = Handshake {
        proto: Proto::Resp2,
        db: 0,
        auth,
        verify: None,
        run_id: Some(&node.run_id),
        master: false,
    };
    let mut opened = dialer.open(&node.endpoint, &hs).await?;
    let mut out = BytesMut::new();
    for id in ids {
        out.extend_from_slice(
            Request::from_args(&["CLIENT", "UNBLOCK", &id.to_string(), "ERROR"]).bytes(),
        );
    }
    let io = &mut opened.io;
    let mut rbuf = BytesMut::new();
    tokio::time::timeout(dialer.handshake_timeout, async {
        io.write_all(&out).await?;
        io.flush().await?;
        for _ in ids {
            let reply = read_reply(io, &mut rbuf, Proto::Resp2).await?;
            if let Some(e) = reply.as_error() {
                return Err(ConnError::Rejected {
                    addr: node.endpoint.to_string(),
                    reply: e.to_string(),
                });
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| ConnError::ReplyTimeout(dialer.handshake_timeout))?
}
