//! Opening a backend connection: TCP connect under the connect deadline, then the Redis
//! handshake under the handshake deadline: `HELLO` (protocol, backend credentials, client
//! name), `SELECT`, and an identity check on that very connection (`INFO server` for the
//! run_id, `ROLE` for the role). The identity check matters because a load balancer in front of
//! several nodes may send two connections from the same address to two different nodes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::conn::BoxIo;
use super::error::ConnError;
use crate::config::Secret;
use crate::resp::decode::{decode, Reply};
use crate::resp::reply::Proto;
use crate::resp::Request;
use crate::tls::Connector;

/// Client name the proxy gives its backend connections (visible in `CLIENT LIST` on Redis).
pub const CLIENT_NAME: &str = "redis-failover-proxy";

/// A node as the proxy dials it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The address dialed.
    pub addr: SocketAddr,
    /// The name it was configured or announced as (`host:port`): TLS server name, logs.
    pub name: Arc<str>,
    /// TLS settings of its site; `None`: plaintext.
    pub tls: Option<Arc<Connector>>,
}

impl Endpoint {
    /// A plaintext endpoint.
    pub fn plain(addr: SocketAddr, name: Arc<str>) -> Self {
        Self {
            addr,
            name,
            tls: None,
        }
    }

    /// The host part of the name, as TLS checks it.
    fn host(&self) -> &str {
        crate::config::split_host_port(&self.name).map_or(&self.name, |(h, _)| h)
    }

    fn tls_ptr(&self) -> *const Connector {
        self.tls.as_ref().map_or(std::ptr::null(), Arc::as_ptr)
    }
}

// Two endpoints are the same when they dial the same address under the same name with the
// same TLS settings (connectors are shared per settings, so identity is enough).
impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr && self.name == other.name && self.tls_ptr() == other.tls_ptr()
    }
}

impl Eq for Endpoint {}

impl std::hash::Hash for Endpoint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
        self.name.hash(state);
        self.tls_ptr().hash(state);
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.as_ref() == self.addr.to_string() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} ({})", self.name, self.addr)
        }
    }
}

/// Credentials the proxy uses on Redis nodes (never the clients' own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendAuth {
    /// ACL user; `None` authenticates as `default`.
    pub user: Option<String>,
    /// Password; `None` when the nodes require none.
    pub password: Option<Secret>,
}

/// Deadlines for opening connections.
#[derive(Debug, Clone, Copy)]
pub struct Dialer {
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// Handshake deadline (HELLO, SELECT, identity check).
    pub handshake_timeout: Duration,
}

/// What the handshake must establish.
#[derive(Debug, Clone)]
pub struct Handshake<'a> {
    /// Protocol for the connection.
    pub proto: Proto,
    /// Database to select.
    pub db: u32,
    /// Credentials the connection runs under.
    pub auth: &'a BackendAuth,
    /// Credentials the node's identity is checked under, when they differ from `auth`: the
    /// proxy's own, which may run `INFO` and `ROLE` where a client's Redis user may not. The
    /// connection then logs in as `auth` after the check (`RESET`, then `HELLO ... AUTH`).
    pub verify: Option<&'a BackendAuth>,
    /// The run_id the node must have, when known.
    pub run_id: Option<&'a str>,
    /// Whether the node must currently be a master.
    pub master: bool,
}

/// A connection ready for traffic.
pub struct Opened {
    /// The stream.
    pub io: BoxIo,
    /// The server's id for this connection (`CLIENT ID`).
    pub client_id: i64,
    /// The node's run_id.
    pub run_id: String,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("client_id", &self.client_id)
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl Dialer {
    /// Opens a TCP connection to `ep` under the connect deadline.
    pub async fn connect(&self, ep: &Endpoint) -> Result<BoxIo, ConnError> {
        let stream = timeout(self.connect_timeout, TcpStream::connect(ep.addr))
            .await
            .map_err(|_| ConnError::ConnectTimeout {
                addr: ep.to_string(),
                after: self.connect_timeout,
            })?
            .map_err(|source| ConnError::Connect {
                addr: ep.to_string(),
                source,
            })?;
        // Latency matters more than packet count: replies must not wait for Nagle.
        stream.set_nodelay(true)?;
        let sock = socket2::SockRef::from(&stream);
        // Keepalive finds peers that vanished without a FIN on idle connections.
        let ka = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10));
        sock.set_tcp_keepalive(&ka)?;
        let Some(tls) = &ep.tls else {
            return Ok(Box::new(stream));
        };
        let tls_stream = timeout(self.handshake_timeout, tls.connect(stream, ep.host()))
            .await
            .map_err(|_| {
                crate::metrics::tls_failure("backend", "timeout");
                ConnError::HandshakeTimeout {
                    addr: ep.to_string(),
                    after: self.handshake_timeout,
                }
            })?
            .map_err(|e| {
                crate::metrics::tls_failure("backend", crate::tls::failure_reason(&e));
                ConnError::Tls {
                    addr: ep.to_string(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Box::new(tls_stream))
    }

    /// Connects and runs the handshake.
    pub async fn open(&self, ep: &Endpoint, hs: &Handshake<'_>) -> Result<Opened, ConnError> {
        let mut io = self.connect(ep).await?;
        let (client_id, run_id) = timeout(self.handshake_timeout, handshake(&mut io, ep, hs))
            .await
            .map_err(|_| ConnError::HandshakeTimeout {
                addr: ep.to_string(),
                after: self.handshake_timeout,
            })??;
        Ok(Opened {
            io,
            client_id,
            run_id,
        })
    }
}

/// Builds the HELLO command for a handshake.
pub fn hello_command(proto: Proto, auth: &BackendAuth) -> Request {
    let mut args: Vec<Vec<u8>> = vec![b"HELLO".to_vec(), proto.number().to_string().into()];
    if let Some(pw) = &auth.password {
        args.push(b"AUTH".to_vec());
        args.push(
            auth.user
                .as_deref()
                .unwrap_or("default")
                .as_bytes()
                .to_vec(),
        );
        args.push(pw.expose().as_bytes().to_vec());
    }
    args.push(b"SETNAME".to_vec());
    args.push(CLIENT_NAME.as_bytes().to_vec());
    Request::from_args(&args)
}

async fn handshake(
    io: &mut BoxIo,
    ep: &Endpoint,
    hs: &Handshake<'_>,
) -> Result<(i64, String), ConnError> {
    let checker = hs.verify.filter(|v| *v != hs.auth).unwrap_or(hs.auth);
    let switch = !std::ptr::eq(checker, hs.auth);
    // Logging in as `auth` after the check selects the database itself.
    let select_now = hs.db != 0 && !switch;
    let mut out = BytesMut::new();
    out.extend_from_slice(hello_command(hs.proto, checker).bytes());
    if select_now {
        out.extend_from_slice(Request::from_args(&["SELECT", &hs.db.to_string()]).bytes());
    }
    out.extend_from_slice(Request::from_args(&["INFO", "server"]).bytes());
    out.extend_from_slice(Request::from_args(&["ROLE"]).bytes());
    io.write_all(&out).await?;
    io.flush().await?;

    let mut rbuf = BytesMut::with_capacity(4096);
    let hello = read_ok(io, &mut rbuf, ep, hs.proto)
        .await
        .map_err(|e| match e {
            ConnError::Rejected { addr, reply } if switch => {
                ConnError::OwnCredentialsRefused { addr, reply }
            }
            e => e,
        })?;
    let mut client_id = hello.field("id").and_then(Reply::as_int).unwrap_or(-1);
    if select_now {
        read_ok(io, &mut rbuf, ep, hs.proto).await?;
    }
    let info = read_reply(io, &mut rbuf, hs.proto).await?;
    let role = read_reply(io, &mut rbuf, hs.proto).await?;
    let run_id = info
        .as_text()
        .and_then(|t| info_field(&t, "run_id").map(str::to_string))
        .ok_or_else(|| rejected(ep, info.as_error().unwrap_or("INFO server without run_id")))?;
    check_identity(ep, hs, &run_id, &role)?;
    if switch {
        client_id = log_in_as(io, &mut rbuf, ep, hs).await?;
    }
    Ok((client_id, run_id))
}

/// The node refused a handshake command with `reply`.
fn rejected(ep: &Endpoint, reply: &str) -> ConnError {
    ConnError::Rejected {
        addr: ep.to_string(),
        reply: reply.to_string(),
    }
}

/// Reads one reply, which must not be an error.
async fn read_ok(
    io: &mut BoxIo,
    rbuf: &mut BytesMut,
    ep: &Endpoint,
    proto: Proto,
) -> Result<Reply, ConnError> {
    let reply = read_reply(io, rbuf, proto).await?;
    match reply.as_error() {
        Some(e) => Err(rejected(ep, e)),
        None => Ok(reply),
    }
}

/// After the identity check: `RESET` (back to Redis's `default` user, or to no user when it
/// has a password), then `HELLO` with the connection's own credentials, then `SELECT`.
/// Returns the server's id for the connection.
async fn log_in_as(
    io: &mut BoxIo,
    rbuf: &mut BytesMut,
    ep: &Endpoint,
    hs: &Handshake<'_>,
) -> Result<i64, ConnError> {
    let mut out = BytesMut::new();
    out.extend_from_slice(Request::from_args(&["RESET"]).bytes());
    out.extend_from_slice(hello_command(hs.proto, hs.auth).bytes());
    if hs.db != 0 {
        out.extend_from_slice(Request::from_args(&["SELECT", &hs.db.to_string()]).bytes());
    }
    io.write_all(&out).await?;
    io.flush().await?;
    // RESET answers in the protocol the connection had; HELLO in the one it asks for.
    read_ok(io, rbuf, ep, hs.proto).await?;
    let hello = read_ok(io, rbuf, ep, hs.proto).await?;
    if hs.db != 0 {
        read_ok(io, rbuf, ep, hs.proto).await?;
    }
    Ok(hello.field("id").and_then(Reply::as_int).unwrap_or(-1))
}

fn check_identity(
    ep: &Endpoint,
    hs: &Handshake<'_>,
    run_id: &str,
    role: &Reply,
) -> Result<(), ConnError> {
    let identity = |why: String| ConnError::Identity {
        addr: ep.to_string(),
        why,
    };
    if let Some(want) = hs.run_id {
        if want != run_id {
            return Err(identity(format!("run_id {run_id}, expected {want}")));
        }
    }
    if hs.master {
        let r = role
            .as_array()
            .and_then(|a| a.first())
            .and_then(Reply::as_text)
            .unwrap_or_default();
        if r != "master" {
            return Err(identity(format!("role {r}, expected master")));
        }
    }
    Ok(())
}

/// Reads one reply, decoding it for the proxy's own use.
pub async fn read_reply(
    io: &mut BoxIo,
    rbuf: &mut BytesMut,
    proto: Proto,
) -> Result<Reply, ConnError> {
    loop {
        match decode(proto, rbuf) {
            Ok(Some((reply, n))) => {
                let _ = rbuf.split_to(n);
                return Ok(reply);
            }
            Ok(None) => {}
            Err(_) => return Err(ConnError::Protocol("malformed handshake reply")),
        }
        if rbuf.len() > 16 * 1024 * 1024 {
            return Err(ConnError::Protocol("oversized handshake reply"));
        }
        if io.read_buf(rbuf).await? == 0 {
            return Err(ConnError::Closed);
        }
    }
}

/// Reads `name:value` from an INFO text.
pub fn info_field<'t>(info: &'t str, name: &str) -> Option<&'t str> {
    info.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim_end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_carries_credentials_only_when_configured() {
        let none = hello_command(Proto::Resp2, &BackendAuth::default());
        assert_eq!(none.args().len(), 4);
        let auth = BackendAuth {
            user: Some("proxy".into()),
            password: Some(Secret::new("pw")),
        };
        let args: Vec<Vec<u8>> = hello_command(Proto::Resp3, &auth)
            .args()
            .iter()
            .map(|a| a.to_vec())
            .collect();
        assert_eq!(args[1], b"3");
        assert_eq!(
            args[2..5],
            [b"AUTH".to_vec(), b"proxy".to_vec(), b"pw".to_vec()]
        );
    }

    #[test]
    fn info_fields_are_found_by_exact_name() {
        let info = "# Server\r\nrun_id_extra:x\r\nrun_id:abc\r\nredis_version:7.0.15\r\n";
        assert_eq!(info_field(info, "run_id"), Some("abc"));
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "missing"), None);
    }
}
