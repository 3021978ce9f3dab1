//! The read-back at the end of a run: finding the node to read from (a fixed address, or the
//! master a Sentinel names, confirmed by the node's own `role:master`), then reading every
//! written key with pipelined MGETs. The whole read-back has one deadline,
//! [`VERIFY_DEADLINE`], and each reply [`REPLY_TIMEOUT`].

use std::time::Duration;

use redis_failover_proxy::resp::decode::{decode, Reply};
use redis_failover_proxy::resp::reply::Proto;
use redis_failover_proxy::resp::Request;
use tokio::time::Instant;

use crate::authority::{node_state, NodeState};
use crate::ledger::Found;
use crate::net::{Conn, Dialer, NetError};
use crate::workload::Workload;

/// Time allowed to find a master and read every key back.
pub(crate) const VERIFY_DEADLINE: Duration = Duration::from_secs(30);
/// Deadline of one reply during the read-back.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between two attempts to find the master.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Keys per MGET.
const KEYS_PER_MGET: usize = 200;
/// MGETs sent before their replies are read.
const MGETS_IN_FLIGHT: usize = 8;

/// Why the keys could not be read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    /// No Sentinel named a node that confirms it is master.
    #[error("no master found through the Sentinels within {VERIFY_DEADLINE:?}: {last}")]
    NoMaster { last: String },
    /// The node could not be read.
    #[error("reading the keys back from {addr}: {source}")]
    Net { addr: String, source: NetError },
    /// The node answered MGET with something else than values.
    #[error("reading the keys back from {addr}: unexpected reply {reply}")]
    Reply { addr: String, reply: String },
}

/// Asks the Sentinels, in order, for the master, until one names a node that says it is
/// master.
pub(crate) async fn master_from_sentinels(
    dialer: &Dialer,
    sentinels: &[String],
    name: &str,
) -> Result<String, VerifyError> {
    let until = Instant::now() + VERIFY_DEADLINE;
    let mut last = String::from("no Sentinel answered");
    while Instant::now() < until {
        for s in sentinels {
            match ask_sentinel(&dialer.without_auth(), s, name).await {
                Ok(addr) => match confirm_master(dialer, &addr).await {
                    Ok(()) => return Ok(addr),
                    Err(why) => last = why,
                },
                Err(why) => last = why,
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    Err(VerifyError::NoMaster { last })
}

async fn ask_sentinel(dialer: &Dialer, sentinel: &str, name: &str) -> Result<String, String> {
    let mut c = dialer.connect(sentinel).await.map_err(|e| e.to_string())?;
    let r = c
        .call(
            &["SENTINEL", "get-master-addr-by-name", name],
            REPLY_TIMEOUT,
        )
        .await
        .map_err(|e| format!("{sentinel}: {e}"))?;
    match r.as_array() {
        Some([host, port]) => Ok(format!(
            "{}:{}",
            host.as_text().unwrap_or_default(),
            port.as_text().unwrap_or_default()
        )),
        _ => Err(format!("{sentinel} does not know master {name:?}: {r:?}")),
    }
}

async fn confirm_master(dialer: &Dialer, addr: &str) -> Result<(), String> {
    let mut c = dialer.connect(addr).await.map_err(|e| e.to_string())?;
    let r = c
        .call(&["INFO", "replication"], REPLY_TIMEOUT)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    match r.as_text().map(|t| node_state(&t)) {
        Some(NodeState::Master { .. }) => Ok(()),
        _ => Err(format!("{addr} is not master (yet)")),
    }
}

/// Reads `keys` from `addr`; what each holds, in the same order.
pub(crate) async fn read_back(
    dialer: &Dialer,
    addr: &str,
    workload: &Workload,
    keys: &[u32],
) -> Result<Vec<(u32, Found)>, VerifyError> {
    let net = |source| VerifyError::Net {
        addr: addr.into(),
        source,
    };
    let mut conn = dialer.connect(addr).await.map_err(net)?;
    let mut out = Vec::with_capacity(keys.len());
    for round in keys.chunks(KEYS_PER_MGET * MGETS_IN_FLIGHT) {
        let groups: Vec<&[u32]> = round.chunks(KEYS_PER_MGET).collect();
        let mut frames = Vec::new();
        for g in &groups {
            let mut args = vec![b"MGET".to_vec()];
            args.extend(g.iter().map(|k| workload.key_name(*k).into_bytes()));
            frames.extend_from_slice(Request::from_args(&args).bytes());
        }
        let deadline = Instant::now() + REPLY_TIMEOUT;
        conn.send(&frames, deadline).await.map_err(net)?;
        for g in groups {
            let values = mget_reply(&mut conn, deadline, addr).await?;
            if values.len() != g.len() {
                return Err(VerifyError::Reply {
                    addr: addr.into(),
                    reply: format!("{} values for {} keys", values.len(), g.len()),
                });
            }
            for (k, v) in g.iter().zip(values) {
                out.push((*k, found(workload, &v)));
            }
        }
    }
    Ok(out)
}

async fn mget_reply(
    conn: &mut Conn,
    deadline: Instant,
    addr: &str,
) -> Result<Vec<Reply>, VerifyError> {
    let frame = conn
        .reply(deadline)
        .await
        .map_err(|source| VerifyError::Net {
            addr: addr.into(),
            source,
        })?;
    match decode(Proto::Resp2, &frame) {
        Ok(Some((Reply::Array(values), _))) => Ok(values),
        other => Err(VerifyError::Reply {
            addr: addr.into(),
            reply: format!("{other:?}"),
        }),
    }
}

/// What a value read back means.
fn found(workload: &Workload, v: &Reply) -> Found {
    match v {
        Reply::Null => Found::Missing,
        Reply::Str(b) => workload.parse_value(b).map_or(Found::Foreign, Found::Write),
        _ => Found::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::WriteId;

    #[test]
    fn values_read_back() {
        let w = Workload {
            run: 5,
            prefix: "k:".into(),
            keyspace: 10,
            value_size: 16,
            read_share: 0.0,
        };
        let id = WriteId { conn: 1, seq: 2 };
        assert_eq!(found(&w, &Reply::Null), Found::Missing);
        assert_eq!(found(&w, &Reply::Str(w.value(id).into())), Found::Write(id));
        assert_eq!(found(&w, &Reply::Str("old".into())), Found::Foreign);
    }
}
