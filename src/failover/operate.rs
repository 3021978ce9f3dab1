//! Changes an operator asks for (from the admin endpoint): the only promotions the proxy ever
//! performs, always through Redis's own commands.
//!
//! - **Planned switchover**: hold new writes (sessions keep them), let in-flight ones finish,
//!   then `FAILOVER TO <replica>` on the master (Redis pauses writes, waits until the replica
//!   has every write, and swaps roles) or `SENTINEL FAILOVER` where Sentinel rules (after
//!   checking the replicas caught up with the master), and release the held commands to the
//!   new master once it is verified. No write is acknowledged by a master about to be
//!   superseded, and none is lost.
//! - **Forced failover** (the master is gone): `REPLICAOF NO ONE` on the chosen replica (or
//!   `SENTINEL FAILOVER`); the proxy verifies the result like any other change.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout, Instant};

use super::{Signal, Signals};
use crate::backend::conn::BoxIo;
use crate::backend::handshake::{hello_command, read_reply};
use crate::backend::{BackendAuth, Dialer, Endpoint, NodeId};
use crate::config::{Authority, Secret};
use crate::resp::decode::Reply;
use crate::resp::reply::Proto;
use crate::resp::Request;
use crate::topology::{RouteState, Suspension, Topology, TopologyHandle};

/// How long a planned switchover may take before it is abandoned.
const SWITCH_DEADLINE: Duration = Duration::from_secs(10);
/// How long in-flight writes get to reach the replicas before a Sentinel switchover.
/// Replicas acknowledge their offset once a second; this leaves room for two reports.
const CATCH_UP: Duration = Duration::from_millis(2500);
/// Redis's own FAILOVER timeout (its writes pause at most this long).
const FAILOVER_TIMEOUT_MS: u64 = 5000;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request does not fit the current state.
    #[error("{0}")]
    Refused(String),
    /// Redis or Sentinel refused or failed.
    #[error("{0}")]
    Failed(String),
}

/// The outcome of an operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Master before.
    pub from: Option<String>,
    /// Master after.
    pub to: String,
    /// Time taken, in milliseconds.
    pub millis: u128,
}

/// Performs operator requests.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Topology.
    pub topology: Arc<TopologyHandle>,
    /// The failover task.
    pub signals: Signals,
    /// Connections to nodes.
    pub dialer: Dialer,
    /// Credentials on nodes.
    pub auth: BackendAuth,
    /// Who decides.
    pub authority: Authority,
    /// Sentinel credentials.
    pub sentinel_auth: Option<(Option<String>, Secret)>,
}

impl Operator {
    /// Planned switchover to `to` (`host:port` of a replica; any healthy replica if `None`).
    pub async fn switchover(&self, to: Option<&str>) -> Result<Outcome, OpError> {
        let topo = self.topology.load();
        let master = topo.routable_master().cloned().ok_or_else(|| {
            OpError::Refused(format!(
                "no verified master to switch from: {}",
                topo.reason
            ))
        })?;
        let start = Instant::now();
        self.signals.send(Signal::Hold {
            master: Arc::clone(&master.node),
            reason: Suspension::Switchover {
                from: master.node.endpoint.to_string(),
            },
        });
        let result = self.run_switch(&topo, &master.node, to).await;
        self.signals.send(Signal::Release);
        let to = result?;
        Ok(Outcome {
            from: Some(master.node.endpoint.to_string()),
            to,
            millis: start.elapsed().as_millis(),
        })
    }

    async fn run_switch(
        &self,
        topo: &Topology,
        master: &Arc<NodeId>,
        to: Option<&str>,
    ) -> Result<String, OpError> {
        match &self.authority {
            Authority::Sentinel { master_name } => {
                self.catch_up(&master.endpoint).await?;
                self.sentinel_failover(topo, master_name).await?;
            }
            Authority::Nodes => {
                let target = pick_replica(topo, master, to)?;
                let cmd = [
                    "FAILOVER".to_string(),
                    "TO".into(),
                    target.addr.ip().to_string(),
                    target.addr.port().to_string(),
                    "TIMEOUT".into(),
                    FAILOVER_TIMEOUT_MS.to_string(),
                ];
                self.node_command(&master.endpoint, &cmd).await?;
            }
            Authority::ActiveActive => {
                return Err(OpError::Refused(
                    "active-active sites have no master to switch over".into(),
                ))
            }
        }
        self.wait_new_master(master).await
    }

    /// Operator-forced promotion of `to` when the master is gone.
    pub async fn failover(&self, to: &str, force: bool) -> Result<Outcome, OpError> {
        if !force {
            return Err(OpError::Refused(
                "a forced failover needs force=true".into(),
            ));
        }
        let topo = self.topology.load();
        if topo.state == RouteState::Verified {
            return Err(OpError::Refused(
                "a master is verified: use a planned switchover".into(),
            ));
        }
        let start = Instant::now();
        let before = topo.master.as_ref().map(|m| Arc::clone(&m.node));
        match &self.authority {
            Authority::Sentinel { master_name } => {
                self.sentinel_failover(&topo, master_name).await?
            }
            Authority::Nodes => {
                let target = topo
                    .nodes
                    .iter()
                    .find(|n| {
                        n.endpoint.to_string() == to
                            || n.endpoint.addr.to_string() == to
                            || n.endpoint.name.as_ref() == to
                    })
                    .map(|n| n.endpoint.clone())
                    .ok_or_else(|| OpError::Refused(format!("{to} is not a known node")))?;
                self.node_command(&target, &["REPLICAOF".into(), "NO".into(), "ONE".into()])
                    .await?;
            }
            Authority::ActiveActive => {
                return Err(OpError::Refused(
                    "active-active sites have no master to promote".into(),
                ))
            }
        }
        let to = match &before {
            Some(b) => self.wait_new_master(b).await?,
            None => self.wait_any_master().await?,
        };
        Ok(Outcome {
            from: before.map(|b| b.endpoint.to_string()),
            to,
            millis: start.elapsed().as_millis(),
        })
    }

    /// Waits until every replica of `master` acknowledged the replication offset the master
    /// had when the hold began, so that Sentinel may promote any of them without losing an
    /// acknowledged write. The target is fixed at the first look: the master's offset keeps
    /// moving after the hold (Sentinel's hello messages and replication pings are replicated
    /// too), and replicas report their offset only once a second, so "equal to the master's
    /// current offset" might never be seen.
    async fn catch_up(&self, master: &Endpoint) -> Result<(), OpError> {
        let until = Instant::now() + CATCH_UP;
        let mut target = None;
        loop {
            let role = self.node_command(master, &["ROLE".into()]).await?;
            let items = role.as_array().unwrap_or_default();
            let offset = items.get(1).and_then(Reply::as_int).unwrap_or(0);
            let target = *target.get_or_insert(offset);
            let replicas = items.get(2).and_then(Reply::as_array).unwrap_or_default();
            if replicas_reached(replicas, target) {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(OpError::Failed(
                    "replicas did not catch up with the master".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn sentinel_failover(&self, topo: &Topology, name: &str) -> Result<(), OpError> {
        let mut last = String::from("no Sentinel known");
        for s in &topo.sentinels {
            match self
                .sentinel_command(s, &["SENTINEL", "FAILOVER", name])
                .await
            {
                Ok(r) if r.as_error().is_none() => return Ok(()),
                Ok(r) => last = r.as_error().unwrap_or_default().to_string(),
                Err(e) => last = e,
            }
        }
        Err(OpError::Failed(format!("SENTINEL FAILOVER: {last}")))
    }

    async fn wait_new_master(&self, old: &Arc<NodeId>) -> Result<String, OpError> {
        self.wait(|t| {
            t.routable_master()
                .filter(|m| m.node != *old)
                .map(|m| m.node.endpoint.to_string())
        })
        .await
    }

    async fn wait_any_master(&self) -> Result<String, OpError> {
        self.wait(|t| t.routable_master().map(|m| m.node.endpoint.to_string()))
            .await
    }

    async fn wait(&self, done: impl Fn(&Topology) -> Option<String>) -> Result<String, OpError> {
        let mut rx = self.topology.subscribe();
        let until = Instant::now() + SWITCH_DEADLINE;
        loop {
            if let Some(m) = done(&self.topology.load()) {
                return Ok(m);
            }
            match timeout(
                until.saturating_duration_since(Instant::now()),
                rx.changed(),
            )
            .await
            {
                Ok(Ok(())) => {}
                _ => return Err(OpError::Failed("no new master was verified in time".into())),
            }
        }
    }

    /// Runs one command on a node, on a connection of its own.
    async fn node_command(&self, node: &Endpoint, args: &[String]) -> Result<Reply, OpError> {
        let fail = |e: String| OpError::Failed(format!("{node}: {e}"));
        let mut io = self
            .dialer
            .connect(node)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut out = BytesMut::new();
        out.extend_from_slice(hello_command(Proto::Resp3, &self.auth).bytes());
        out.extend_from_slice(Request::from_args(args).bytes());
        let reply = exchange(&mut io, &out, 2, Proto::Resp3)
            .await
            .map_err(fail)?;
        match reply.as_error() {
            Some(e) => Err(fail(e.to_string())),
            None => Ok(reply),
        }
    }

    async fn sentinel_command(&self, sentinel: &Endpoint, args: &[&str]) -> Result<Reply, String> {
        let mut io = self
            .dialer
            .connect(sentinel)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = BytesMut::new();
        let mut replies = 1;
        if let Some((user, pw)) = &self.sentinel_auth {
            let auth = match user {
                Some(u) => Request::from_args(&["AUTH", u, pw.expose()]),
                None => Request::from_args(&["AUTH", pw.expose()]),
            };
            out.extend_from_slice(auth.bytes());
            replies += 1;
        }
        out.extend_from_slice(Request::from_args(args).bytes());
        exchange(&mut io, &out, replies, Proto::Resp2).await
    }
}

/// Whether every replica in a master's `ROLE` reply (`[ip, port, offset]` each) acknowledged
/// at least `target`.
fn replicas_reached(replicas: &[Reply], target: i64) -> bool {
    replicas.iter().all(|r| {
        r.as_array()
            .and_then(|a| a.get(2))
            .and_then(Reply::as_int)
            .is_some_and(|acked| acked >= target)
    })
}

/// Writes `out`, reads `replies` replies, returns the last one (the earlier ones must not be
/// errors).
async fn exchange(
    io: &mut BoxIo,
    out: &[u8],
    replies: usize,
    proto: Proto,
) -> Result<Reply, String> {
    let round = async {
        io.write_all(out).await.map_err(|e| e.to_string())?;
        let mut rbuf = BytesMut::new();
        let mut last = Reply::Null;
        for i in 0..replies {
            last = read_reply(io, &mut rbuf, proto)
                .await
                .map_err(|e| e.to_string())?;
            if i + 1 < replies {
                if let Some(e) = last.as_error() {
                    return Err(e.to_string());
                }
            }
        }
        Ok(last)
    };
    timeout(Duration::from_secs(10), round)
        .await
        .map_err(|_| "no answer".to_string())?
}

/// The replica to switch to: `to` if given, else the healthy replica with the highest offset.
fn pick_replica(topo: &Topology, master: &NodeId, to: Option<&str>) -> Result<Endpoint, OpError> {
    let replicas = topo.nodes.iter().filter(|n| {
        n.healthy
            && n.endpoint != master.endpoint
            && n.seen.as_ref().is_some_and(|o| {
                matches!(o.role, crate::topology::Role::Replica { link_up: true, .. })
            })
    });
    let chosen = match to {
        Some(to) => replicas
            .into_iter()
            .find(|n| n.endpoint.addr.to_string() == to || n.endpoint.name.as_ref() == to),
        None => replicas.max_by_key(|n| n.seen.as_ref().map_or(0, |o| o.offset)),
    };
    chosen.map(|n| n.endpoint.clone()).ok_or_else(|| {
        OpError::Refused(format!(
            "no healthy, linked replica {}",
            to.unwrap_or("available")
        ))
    })
}
