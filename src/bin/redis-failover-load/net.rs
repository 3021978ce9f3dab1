//! Connections the harness opens: TCP, then TLS when asked, then the [`crate::handshake`]
//! (AUTH), each under its own deadline ([`CONNECT_TIMEOUT`], [`HANDSHAKE_TIMEOUT`]). A
//! [`Conn`] writes raw command frames and hands back whole reply frames, found with the
//! crate's [`ReplyScanner`], each read under the deadline its caller names. Failures are
//! [`NetError`]s that say which step failed.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_failover_proxy::resp::decode::{decode, Reply};
use redis_failover_proxy::resp::reply::Proto;
use redis_failover_proxy::resp::{ReplyScanner, Request};
use redis_failover_proxy::tls::Connector;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use crate::handshake::Credentials;

/// Deadline of the TCP connect.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of the TLS handshake and of AUTH together.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Read size.
const READ_CHUNK: usize = 16 * 1024;

/// Why a connection could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetError {
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// TCP connect or the handshake took too long.
    #[error("connect to {addr}: no connection within {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    /// TLS handshake failed.
    #[error("TLS with {addr}: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    /// AUTH refused.
    #[error("AUTH at {addr}: {text}")]
    Auth { addr: String, text: String },
    /// Read or write failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// No whole reply before the deadline.
    #[error("no reply before the deadline")]
    Timeout,
    /// The peer sent something that is not RESP.
    #[error("malformed reply")]
    Protocol,
}

/// A byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens connections with the run's TLS settings and credentials.
#[derive(Clone)]
pub(crate) struct Dialer {
    /// TLS towards every address, when asked.
    tls: Option<Arc<Connector>>,
    /// AUTH after connecting (targets and nodes; never Sentinels).
    credentials: Option<Credentials>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Dialer {
    /// A dialer.
    pub(crate) fn new(tls: Option<Arc<Connector>>, credentials: Option<Credentials>) -> Self {
        Self { tls, credentials }
    }

    /// The same dialer without AUTH (for Sentinels).
    pub(crate) fn without_auth(&self) -> Self {
        Self {
            tls: self.tls.clone(),
            credentials: None,
        }
    }

    /// Connects to `addr`, completes TLS and AUTH.
    pub(crate) async fn connect(&self, addr: &str) -> Result<Conn, NetError> {
        let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| NetError::ConnectTimeout {
                addr: addr.into(),
                after: CONNECT_TIMEOUT,
            })?
            .map_err(|source| NetError::Connect {
                addr: addr.into(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        timeout(HANDSHAKE_TIMEOUT, self.handshake(tcp, addr))
            .await
            .map_err(|_| NetError::ConnectTimeout {
                addr: addr.into(),
                after: HANDSHAKE_TIMEOUT,
            })?
    }

    async fn handshake(&self, tcp: TcpStream, addr: &str) -> Result<Conn, NetError> {
        let stream: Box<dyn Stream> = match &self.tls {
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Box::new(
                    tls.connect(tcp, host)
                        .await
                        .map_err(|source| NetError::Tls {
                            addr: addr.into(),
                            source,
                        })?,
                )
            }
            None => Box::new(tcp),
        };
        let mut conn = Conn::new(stream);
        if let Some(c) = &self.credentials {
            let reply = conn.call(&c.command(), HANDSHAKE_TIMEOUT).await?;
            if let Some(text) = reply.as_error() {
                return Err(NetError::Auth {
                    addr: addr.into(),
                    text: text.into(),
                });
            }
        }
        Ok(conn)
    }
}

/// One open connection.
pub(crate) struct Conn {
    stream: Box<dyn Stream>,
    /// Bytes read and not yet handed out.
    buf: BytesMut,
    /// Where the next reply ends.
    scanner: ReplyScanner,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl Conn {
    fn new(stream: Box<dyn Stream>) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            scanner: ReplyScanner::new(),
        }
    }

    /// Writes `bytes` (whole command frames) by `deadline`.
    pub(crate) async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), NetError> {
        timeout_at(deadline, self.stream.write_all(bytes))
            .await
            .map_err(|_| NetError::Timeout)??;
        Ok(())
    }

    /// The next whole reply frame, by `deadline`.
    pub(crate) async fn reply(&mut self, deadline: Instant) -> Result<Bytes, NetError> {
        loop {
            match self.scanner.next(&self.buf) {
                Ok(Some(info)) => return Ok(self.buf.split_to(info.len).freeze()),
                Ok(None) => {}
                Err(_) => return Err(NetError::Protocol),
            }
            self.buf.reserve(READ_CHUNK);
            let n = timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| NetError::Timeout)??;
            if n == 0 {
                return Err(NetError::Closed);
            }
        }
    }

    /// Sends one command and decodes its reply, within `limit`.
    pub(crate) async fn call_args<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        limit: Duration,
    ) -> Result<Reply, NetError> {
        let deadline = Instant::now() + limit;
        self.send(Request::from_args(args).bytes(), deadline)
            .await?;
        let frame = self.reply(deadline).await?;
        match decode(Proto::Resp2, &frame) {
            Ok(Some((reply, _))) => Ok(reply),
            _ => Err(NetError::Protocol),
        }
    }

    /// [`call_args`](Self::call_args) with text arguments.
    pub(crate) async fn call(&mut self, args: &[&str], limit: Duration) -> Result<Reply, NetError> {
        self.call_args(args, limit).await
    }
}
