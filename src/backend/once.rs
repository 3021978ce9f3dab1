//! One command on a connection of its own, opened for it and closed after its reply: for
//! SCRIPT KILL and FUNCTION KILL, which must reach a node that is busy running a script.
//!
//! Such a node answers `-BUSY` to everything but HELLO, AUTH and the kill commands, so the
//! usual handshake cannot run on it: `INFO` and `ROLE` would be refused, and every shared
//! connection may be waiting behind the script's own reply. The identity check is reduced to
//! what HELLO tells (the node's role); a kill sent to another node behind a load balancer can
//! only stop a script there, or be answered `NOTBUSY`.
//!
//! Passthrough authentication uses the same kind of connection to ask the master whether a
//! client's `AUTH` is good ([`check_auth`]).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::handshake::{hello_command, read_reply};
use super::{ConnError, PoolKey};
use super::{Dialer, Endpoint};
use crate::resp::decode::{decode, Reply};
use crate::resp::reply::Proto;
use crate::resp::Request;

/// Largest reply taken (the kill commands answer a status line).
const MAX_REPLY: usize = 64 * 1024;

/// Why the one command got no reply.
#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    /// It was not sent: connecting or HELLO failed.
    #[error("{0}")]
    NotSent(ConnError),
    /// It was sent, and the connection failed before its reply.
    #[error("{0}")]
    Unknown(ConnError),
}

/// Sends `req` to `key`'s node on a new connection (HELLO with the key's protocol and
/// credentials first) and returns its reply as the node sent it. Connecting is bounded by the
/// connect deadline, the rest by the handshake deadline.
pub async fn send_once(dialer: Dialer, key: &PoolKey, req: &Request) -> Result<Bytes, OnceError> {
    let ep = &key.node.endpoint;
    let mut io = dialer.connect(ep).await.map_err(OnceError::NotSent)?;
    let exchange = async {
        let mut out = BytesMut::new();
        out.extend_from_slice(hello_command(key.proto, &key.auth).bytes());
        io.write_all(&out)
            .await
            .map_err(|e| OnceError::NotSent(e.into()))?;
        let mut rbuf = BytesMut::with_capacity(1024);
        let hello = read_reply(&mut io, &mut rbuf, key.proto)
            .await
            .map_err(OnceError::NotSent)?;
        check_hello(&hello, &ep.to_string()).map_err(OnceError::NotSent)?;
        io.write_all(req.bytes())
            .await
            .map_err(|e| OnceError::Unknown(e.into()))?;
        raw_reply(&mut io, &mut rbuf, key.proto)
            .await
            .map_err(OnceError::Unknown)
    };
    let result = bounded(dialer, ep, exchange).await;
    if let Err(e) = &result {
        tracing::warn!(node = %ep, error = %e, command = %String::from_utf8_lossy(req.name()), "command on a connection of its own failed");
    }
    result
}

/// Sends a client's `AUTH` as the first command of a new connection to `ep` and returns the
/// node's answer: in passthrough mode the master, not the proxy, checks credentials. No
/// HELLO goes first, so the node answers `AUTH` exactly as it would answer the client.
pub async fn check_auth(dialer: Dialer, ep: &Endpoint, auth: &Request) -> Result<Reply, OnceError> {
    let mut io = dialer.connect(ep).await.map_err(OnceError::NotSent)?;
    let exchange = async {
        io.write_all(auth.bytes())
            .await
            .map_err(|e| OnceError::NotSent(e.into()))?;
        let mut rbuf = BytesMut::with_capacity(256);
        read_reply(&mut io, &mut rbuf, Proto::Resp2)
            .await
            .map_err(OnceError::NotSent)
    };
    bounded(dialer, ep, exchange).await
}

/// `exchange` under the handshake deadline (connecting had the connect deadline).
async fn bounded<T>(
    dialer: Dialer,
    ep: &Endpoint,
    exchange: impl std::future::Future<Output = Result<T, OnceError>>,
) -> Result<T, OnceError> {
    let after = dialer.handshake_timeout;
    timeout(after, exchange).await.unwrap_or_else(|_| {
        Err(OnceError::Unknown(ConnError::HandshakeTimeout {
            addr: ep.to_string(),
            after,
        }))
    })
}

/// HELLO must have succeeded, on a master (the only node the kill commands are sent to).
fn check_hello(hello: &Reply, addr: &str) -> Result<(), ConnError> {
    if let Some(e) = hello.as_error() {
        return Err(ConnError::Rejected {
            addr: addr.to_string(),
            reply: e.to_string(),
        });
    }
    let role = hello.field("role").and_then(Reply::as_text);
    if role.as_deref() != Some("master") {
        return Err(ConnError::Identity {
            addr: addr.to_string(),
            why: format!("role {}, expected master", role.unwrap_or_default()),
        });
    }
    Ok(())
}

/// Reads one reply and returns its bytes unchanged.
async fn raw_reply(
    io: &mut super::conn::BoxIo,
    rbuf: &mut BytesMut,
    proto: Proto,
) -> Result<Bytes, ConnError> {
    loop {
        match decode(proto, rbuf) {
            Ok(Some((_, n))) => return Ok(rbuf.split_to(n).freeze()),
            Ok(None) => {}
            Err(_) => return Err(ConnError::Protocol("malformed reply")),
        }
        if rbuf.len() > MAX_REPLY {
            return Err(ConnError::Protocol("oversized reply"));
        }
        if io.read_buf(rbuf).await? == 0 {
            return Err(ConnError::Closed);
        }
    }
}
